"""``certkit issue-server``: a server certificate, handed out or installed into daemon.json."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from ..defaults import SERVER_DAYS
from . import reach
from .installflags import (
    ALLOW_FROM,
    KEEP_CONTAINERS,
    KEEP_INSECURE,
    REMOVE_INSECURE,
    REPLACE_CA,
    with_allow_from,
    with_keep_containers,
)
from .output import (
    CA_OPTION,
    CERT_DIR_OPTION,
    JSON_OPTION,
    KEY_TYPE_OPTION,
    RESTART_OPTION,
    emit,
    next_step,
    warn,
)
from .root import app

if TYPE_CHECKING:
    from ..install_options import InstallOptions
    from ..server import ServerResult

# Options that only mean something with --install (None: not given).
_INSTALL_ONLY = ("--root", "--listen", "--port", "--cert-dir", "--method")

HOST = typer.Argument(None, help="The name (or IP) clients use to reach the Docker host.")
SAN = typer.Option(
    None,
    "--san",
    metavar="NAME_OR_IP",
    help="Another DNS name or IP address for the certificate (repeatable).",
)
DAYS = typer.Option(SERVER_DAYS, "--days", help="Validity in days.")
OUT = typer.Option(
    None, "--out", help="Also write ca.pem, server-cert.pem, server-key.pem into this dir."
)
INSTALL = typer.Option(
    False, "--install", help="Install on this Docker host: cert files + daemon.json (root)."
)
LISTEN = typer.Option(
    None, "--listen", help="With --install: address dockerd listens on (default 0.0.0.0)."
)
PORT = typer.Option(None, "--port", help="With --install: TLS port (default 2376).")
METHOD = typer.Option(
    None,
    "--method",
    help="With --install: auto | systemd (-H flag in a drop-in) | daemon-json (hosts key) | "
    "socket (a docker.socket ListenStream: the port stays open while dockerd restarts).",
)
DRY_RUN = typer.Option(
    False, "--dry-run", help="Print the diff of daemon.json and the drop-in; write nothing."
)
FORCE = typer.Option(
    False,
    "--force",
    help="Replace files already in --out; take a name another host's active certificate "
    "holds (the name moved to this host).",
)
FROM_FILE = typer.Option(
    None,
    "--from-file",
    help="Issue one certificate per line of this file (HOST [SAN...], # comments), "
    "with --out one subdirectory per host.",
)


_NO_HOST = "give the Docker host's name, e.g. certkit issue-server docker1.example.com."


@app.command("issue-server")
def issue_server(
    host: str = HOST,  # optional: --from-file HOSTS replaces it
    san: list[str] = SAN,
    days: int = DAYS,
    key_type: str = KEY_TYPE_OPTION,
    ca: str = CA_OPTION,
    out: str = OUT,
    install: bool = INSTALL,
    root: str = reach.ROOT,
    listen: str = LISTEN,
    port: int = PORT,
    cert_dir: str = CERT_DIR_OPTION,
    method: str = METHOD,
    keep_insecure: bool = KEEP_INSECURE,
    remove_insecure: bool = REMOVE_INSECURE,
    restart: bool = RESTART_OPTION,
    dry_run: bool = DRY_RUN,
    ssh: str = reach.SSH,
    sudo: bool = reach.SUDO,
    identity: str = reach.IDENTITY,
    ssh_option: list[str] = reach.SSH_OPTIONS,
    rootless: bool = reach.ROOTLESS,
    from_file: str = FROM_FILE,
    force: bool = FORCE,
    allow_from: list[str] = ALLOW_FROM,
    replace_ca: bool = REPLACE_CA,
    keep_containers: bool = KEEP_CONTAINERS,
    json_out: bool = JSON_OPTION,
) -> None:
    """Issue a server certificate for HOST; with --install put it into daemon.json.

    Exit codes: 0 done, 1 failed (e.g. Docker did not come back; rolled back),
    2 bad input or a configuration certkit refuses to touch (nothing written).

    Example: sudo certkit issue-server docker1.example.com --san 10.0.0.5 --install

    Example (remote): certkit issue-server docker1.example.com --ssh root@docker1.example.com

    Example (fleet): certkit issue-server --from-file hosts.txt --out ./servers
    """
    from ..errors import UsageError
    from ..server import issue_server as _issue_server
    from ..store import CAStore

    where = reach.new_host(reach.group(ssh, sudo, identity, ssh_option, root, rootless))
    _check_ssh_flags(ssh, out)
    install = install or ssh is not None or rootless  # --ssh, --rootless: install there
    if from_file is not None:
        flags = (install, dry_run, restart, root, listen, port, cert_dir, method, keep_insecure)
        _refuse_install_with_from_file(host, san, any(flags) or remove_insecure)
        return _issue_from_file(from_file, out, ca, days, key_type, force, json_out)
    if not host:
        raise UsageError(_NO_HOST)
    _check_install_flags(install, restart, root, listen, port, cert_dir, method,
                         keep_insecure, remove_insecure)  # fmt: skip
    options = _install_options(listen, port, cert_dir, method, keep_insecure, remove_insecure)
    options = with_allow_from(options, allow_from, install)
    options = with_keep_containers(options, keep_containers, restart)
    if replace_ca:
        from dataclasses import replace

        options = replace(options, replace_ca=True)
    target = None
    if install:  # the install machinery (certkit.host and below) only when installing
        from ..targets import from_reach, open_target

        target = open_target(from_reach(where), cert_dir)
    result = _issue_server(
        CAStore(ca),
        host,
        target,
        sans=list(san or []),
        days=days,
        key_type=key_type,
        out=out,
        options=options,
        restart=restart,
        dry_run=dry_run,
        force=force,
        names_moved=force,
    )
    if result.install and not json_out:
        list(map(warn, result.install.plan.warnings))
    emit(json_out, result.to_json(), _lines(result, options.port))


def _issue_from_file(
    from_file: str, out: str, ca: str, days: int, key_type: str, force: bool, json_out: bool
) -> None:
    """``issue-server --from-file``: bulk issuance (certkit.cli.bulk, loaded only for it)."""
    from .bulk import issue_servers_from_file

    issue_servers_from_file(
        from_file, out=out, ca=ca, days=days, key_type=key_type, force=force, json_out=json_out
    )


def _refuse_install_with_from_file(host: str | None, san: list[str] | None, install: bool) -> None:
    """``--from-file`` issues certificates only: no HOST, --san or install options with it."""
    from ..errors import UsageError

    if host or san or install:
        raise UsageError(
            "--from-file issues the certificates only (no install): drop HOST, --san "
            "and the install options; the hosts and their names come from the file."
        )


def _install_options(
    listen: str | None,
    port: int | None,
    cert_dir: str | None,
    method: str | None,
    keep_insecure: bool,
    remove_insecure: bool,
) -> InstallOptions:
    from ..install_options import install_options

    return install_options(
        listen=listen,
        port=port,
        cert_dir=cert_dir,
        method=method,
        keep_insecure=keep_insecure,
        remove_insecure=remove_insecure,
    )


def firewall_lines(plan: Any, dry_run: bool) -> list[str]:
    """What the firewall step adds (or would add), from an install plan."""
    fw = plan.firewall
    if fw is None:  # the firewall warnings say the rest; unchecked (--root): the reminder
        said = dry_run or any("firewall" in w for w in plan.warnings)
        return (
            [] if said else [f"Firewall: port {plan.port}/tcp must be reachable from your clients."]
        )
    from ..host.firewall import describe

    return describe(fw, dry_run)


def _check_ssh_flags(ssh: str | None, out: str | None) -> None:
    from ..errors import UsageError

    if ssh is not None and out:
        raise UsageError("--out writes here and --ssh installs on the host: use one of them.")


def _check_install_flags(install: bool, restart: bool, *install_only: object) -> None:
    """Refuse the install options without --install (None / False: not given)."""
    from ..errors import UsageError

    if restart and not install:
        raise UsageError("--restart restarts dockerd after --install: add --install.")
    flags = [*_INSTALL_ONLY, "--keep-insecure", "--remove-insecure"]
    stray = [flag for flag, value in zip(flags, install_only, strict=True) if value]
    if stray and not install:
        raise UsageError(f"{', '.join(stray)} only applies with --install: add --install.")


def _lines(r: ServerResult, port: int) -> list[str]:
    lines: list[str] = []
    if r.dry_run:
        lines.append(
            f"Dry run: no certificate issued, nothing written (names: {', '.join(r.names)})."
        )
        if r.install:
            plan = r.install.plan
            diff = plan.diff()
            lines.append(f"Method: {plan.method}. Would write:")
            lines += [f"  {path}" for path in plan.written]
            if plan.backup:
                lines.append(f"Would back up {plan.backup[0]} to {plan.backup[1]}")
            lines += (
                [diff.rstrip("\n")] if diff else ["daemon.json and the drop-in are already set."]
            )
            lines += firewall_lines(plan, True)
            if plan.socket_offer:
                lines.append(
                    "This dockerd is socket-activated (-H fd://): --method socket would let "
                    "systemd hold the TLS port, so a renewal's restart refuses no connection."
                )
        return lines
    lines.append(
        f"Issued server certificate for {', '.join(r.names)} (serial {r.serial}), "
        f"valid until {(r.not_after or '')[:10]}."
    )
    lines += [f"Note: {note}." for note in r.notes]
    if r.out_files:
        lines.append(
            f"Wrote to {_dir_of(r.out_files)}: ca.pem, server-cert.pem, server-key.pem (0600)."
        )
    if r.install:
        from ..host.plan import RESTART_NOTE

        lines += _install_lines(r, RESTART_NOTE)
        lines += firewall_lines(r.install.plan, False)
    elif not r.out_files:
        lines.append(f"Kept in the store: {r.store_files.get('cert')}")
        lines.append(
            "Install it on the Docker host with --install, or copy it there with --out DIR."
        )
    lines.append(next_step(r.next_step + "   (on your machine)"))
    return lines


def _install_lines(r: ServerResult, restart_note: str) -> list[str]:
    assert r.install is not None
    plan = r.install.plan
    lines = [f"Installed ({plan.method} method, listening on {plan.tcp_host}):"]
    lines += [f"  wrote {path}" for path in plan.written]
    if plan.backup:
        lines.append(f"  backup {plan.backup[1]}")
    if r.install.restarted:
        lines.append(f"Docker restarted and listens on {plan.tcp_host}.")
    elif r.restart_needed:
        note = (
            "live-restore is on: containers keep running"
            if r.install.live_restore
            else restart_note
        )
        lines.append(f"Restart needed: {plan.restart_command} ({note}), or re-run with --restart.")
    else:
        lines.append("Nothing changed: no restart needed.")
    return lines


def _dir_of(files: dict[str, Any]) -> str:
    from pathlib import Path

    return str(Path(next(iter(files.values()))).parent)
