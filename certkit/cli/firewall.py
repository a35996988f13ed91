"""``certkit firewall show|remove``: the rules certkit added to a server's host firewall."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from . import reach
from .output import CA_OPTION, JSON_OPTION, emit
from .root import app

if TYPE_CHECKING:
    from ..fwrules import FirewallReport
    from ..renew import ServerInstall

firewall_app = typer.Typer(
    help=(
        "The rules certkit added to a server's host firewall (--allow-from): show or remove.\n\n"
        "Example: certkit firewall show docker1.example.com"
    ),
    no_args_is_help=True,
)
app.add_typer(firewall_app, name="firewall")

NAME = typer.Argument(..., help="The server's name, as in `certkit list`.")


def _where(
    root: str | None,
    ssh: str | None,
    sudo: bool,
    identity: str | None,
    ssh_option: list[str] | None,
) -> ServerInstall:
    from ..renew import ServerInstall

    return ServerInstall(reach=reach.group(ssh, sudo, identity, ssh_option, root))


def _lines(r: FirewallReport) -> list[str]:
    if r.manager is None:
        return [
            f"The firewall of {r.host} was not checked (a --root sandbox, or not root there).",
            "Next: run this as root on the host, or with --ssh root@HOST.",
        ]
    where = f"{r.manager}" + (f", zone {r.zone}" if r.zone else "")
    asked = ", ".join(r.recorded) or "none (renewal leaves the firewall alone)"
    head = [f"{r.name} on {r.host}: firewall {where}; --allow-from recorded: {asked}."]
    if not r.rules:
        return [*head, f"No rule of certkit's for port {r.port}/tcp."]
    rules = [f"  {r.port}/tcp from {s}" for s in r.rules]
    if r.removed:
        return [*head, "Removed certkit's rules:", *rules, *[f"  ran {c}" for c in r.commands]]
    verb = "would run" if r.dry_run else "remove with"
    return [
        *head,
        "certkit's rules:",
        *rules,
        *[f"  {verb}: {c}" for c in r.commands],
        *([] if r.dry_run else [f"Next: certkit firewall remove {r.name}"]),
    ]


@firewall_app.command("show")
def firewall_show(
    name: str = NAME,
    root: str = reach.ROOT,
    ssh: str = reach.SSH,
    sudo: bool = reach.SUDO,
    identity: str = reach.IDENTITY,
    ssh_option: list[str] = reach.SSH_OPTIONS,
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the host firewall's rules that certkit added for server NAME (read-only).

    The host is the one NAME was installed on (over SSH when it was installed
    with --ssh); ufw's rules are those commented `certkit`, firewalld's the rich
    rules certkit recorded adding.

    Example: certkit firewall show docker1.example.com
    """
    from ..fwrules import show_rules
    from ..store import CAStore

    report = show_rules(CAStore(ca), name, _where(root, ssh, sudo, identity, ssh_option))
    emit(json_out, report.to_json(), _lines(report))


@firewall_app.command("remove")
def firewall_remove(
    name: str = NAME,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the commands, run nothing."),
    root: str = reach.ROOT,
    ssh: str = reach.SSH,
    sudo: bool = reach.SUDO,
    identity: str = reach.IDENTITY,
    ssh_option: list[str] = reach.SSH_OPTIONS,
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Remove the host firewall's rules that certkit added for server NAME (never others).

    The record then asks for no source, so renewal leaves the firewall alone;
    `renew server NAME --allow-from CIDR` opens the port again.

    Exit codes: 0 done (or nothing to remove), 1 a rule could not be removed
    (the error gives the commands to run), 2 bad input.

    Example: certkit firewall remove docker1.example.com --dry-run
    """
    from ..fwrules import remove_rules_of
    from ..store import CAStore

    where = _where(root, ssh, sudo, identity, ssh_option)
    report = remove_rules_of(CAStore(ca), name, where, dry_run=dry_run)
    emit(json_out, report.to_json(), _lines(report))
