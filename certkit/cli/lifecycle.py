"""``certkit renew`` and ``certkit rotate-ca``: renewal and CA rotation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import typer

from ..defaults import CA_DAYS, RENEW_AT_FRACTION
from . import reach
from .installflags import KEEP_CONTAINERS, KEEP_INSECURE, REMOVE_INSECURE, REPLACE_CA
from .output import CA_OPTION, CERT_DIR_OPTION, JSON_OPTION, RESTART_OPTION, emit, warn
from .root import app

if TYPE_CHECKING:
    from ..due import DueReport
    from ..renew import Renewed
    from ..rotation import RotationReport
    from ..targets import Reach

renew_app = typer.Typer(
    help=(
        "Re-issue certificates the way they were issued and put them where the old ones were.\n\n"
        "Example: certkit renew --expiring-within 30"
    ),
)
app.add_typer(renew_app, name="renew")

rotate_app = typer.Typer(
    help="Replace a CA without locking anyone out: start, status, finish.",
    no_args_is_help=True,
)
app.add_typer(rotate_app, name="rotate-ca")

REUSE_KEY = typer.Option(
    False, "--reuse-key", help="Keep the current private key (default: a new key)."
)
DAYS = typer.Option(None, "--days", help="Validity in days (default: as first issued).")
BUNDLE_ONLY = typer.Option(
    False,
    "--bundle-only",
    help="Issue nothing: re-install the current certificate with the current trust bundle "
    "(the CA-rotation step for tlscacert and the context's ca.pem).",
)


# ---------------------------------------------------------------- renew


@renew_app.callback(invoke_without_command=True)
def renew_main(
    ctx: typer.Context,
    expiring_within: float = typer.Option(
        None,
        "--expiring-within",
        metavar="DAYS",
        help="Renew every certificate that is expired or expires within DAYS days.",
    ),
    due: bool = typer.Option(
        False,
        "--due",
        help="Renew every certificate past 2/3 of its lifetime (--renew-at): what "
        "`certkit schedule install` runs twice a day.",
    ),
    renew_at: float = typer.Option(
        None,
        "--renew-at",
        metavar="FRACTION",
        help="With --due: the fraction of the lifetime after which a certificate is due "
        f"(default {RENEW_AT_FRACTION:.3g}, i.e. 2/3).",
    ),
    restart: bool = typer.Option(
        False, "--restart", help="With --due/--expiring-within: restart dockerd after installing."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --due/--expiring-within: list what is due, change nothing."
    ),
    keep_containers: bool = typer.Option(
        False,
        "--keep-containers",
        help="With --restart: turn live-restore on first on each server renewed (daemon.json, "
        "then SIGHUP), so its running containers survive; recorded, so later runs keep it.",
    ),
    ca: str = typer.Option(
        None,
        "--ca",
        help="With --due/--expiring-within: only this CA (default: every CA in the store).",
    ),
    contexts: bool = typer.Option(
        False, "--contexts", help="Renew certkit login's contexts past 2/3, through OpenBao."
    ),
    identity: str = reach.IDENTITY,
    ssh_option: list[str] = reach.SSH_OPTIONS,
    json_out: bool = JSON_OPTION,
) -> None:
    """Renew one certificate (renew server|client|ci NAME) or everything due.

    Servers are reached as they were installed (over SSH with the recorded key
    file and options, through Ansible for a fleet host): a cron job needs no flag.
    --identity and --ssh-option replace the recorded ones for servers installed
    over SSH.

    Example: certkit renew --due --restart

    Example: certkit renew --expiring-within 30
    """
    from ..errors import UsageError

    if ctx.invoked_subcommand is not None:
        if (
            expiring_within is not None
            or due
            or renew_at is not None
            or restart
            or dry_run
            or keep_containers
            or identity
            or ssh_option
        ):
            raise UsageError(
                f"Put the options after the subcommand: certkit renew {ctx.invoked_subcommand} "
                "NAME [OPTIONS] (--due or --expiring-within renews everything due)."
            )
        return
    if contexts:  # certkit login's contexts: OpenBao's cert login (cli/team.py, docs/team.md)
        if due or expiring_within is not None:
            raise UsageError("Run certkit renew --contexts on its own (not with --due).")
        from .team import renew_contexts

        return renew_contexts(None, False, json_out)
    if due and expiring_within is not None:
        raise UsageError("Give --due (by lifetime) or --expiring-within DAYS, not both.")
    if renew_at is not None and not due:
        raise UsageError("--renew-at goes with --due: add it.")
    if not due and expiring_within is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    if keep_containers and not restart:
        raise UsageError(
            "--keep-containers turns live-restore on just before certkit's restart: add --restart."
        )
    ssh = reach.group(None, False, identity, ssh_option)
    fraction = None
    if due:
        from ..records import check_renew_at

        fraction = check_renew_at(RENEW_AT_FRACTION if renew_at is None else renew_at)
    rule = Due(expiring_within or 0.0, fraction, keep_containers)
    _renew_due(ca, rule, restart, dry_run, json_out, ssh)


class Due(NamedTuple):
    """Which rule selects what is due: ``within`` days of the end, or past ``renew_at``
    (and whether servers keep their containers across the restart)."""

    within: float
    renew_at: float | None
    keep_containers: bool = False

    def rule(self) -> str:
        if self.renew_at is None:
            return f"expires within {self.within:g} days"
        return f"is past {self.renew_at:.3g} of its lifetime"

    def heading(self) -> str:
        if self.renew_at is None:
            return f"Due within {self.within:g} days"
        return f"Due (past {self.renew_at:.3g} of their lifetime)"


def _renew_due(
    only_ca: str | None,
    due: Due,
    restart: bool,
    dry_run: bool,
    json_out: bool,
    ssh: Reach | None = None,
) -> None:
    """Renew what is due in every CA of the store (or only ``only_ca``), like ``status`` checks."""
    from ..due import DueReport
    from ..store import CAStore, list_ca_names

    names = [only_ca] if only_ca else list_ca_names()
    if not names:
        CAStore().require()  # no CA at all: its error says how to create one
    merged = DueReport(due.within, [], [], [], [], dry_run, due.renew_at)
    lines: list[str] = []
    for name in names:
        report, ca_lines = _renew_due_in(name, due, restart, dry_run, ssh)
        lines += ca_lines
        merged.due += report.due
        merged.renewed += report.renewed
        merged.failed += report.failed
        merged.ca_due += report.ca_due
    if not merged.due:
        lines.insert(0, f"Nothing {due.rule()}.")
    emit(json_out, merged.to_json(), lines)
    if not merged.ok:
        raise typer.Exit(1)


def _renew_due_in(
    ca: str, due: Due, restart: bool, dry_run: bool, ssh: Reach | None = None
) -> tuple[DueReport, list[str]]:
    from ..due import renew_due
    from ..store import CAStore

    report = renew_due(
        CAStore(ca),
        due.within,
        restart=restart,
        dry_run=dry_run,
        renew_at=due.renew_at,
        ssh=ssh,
        keep_containers=due.keep_containers,
    )
    lines: list[str] = []
    if dry_run and report.due:
        lines.append(f"{due.heading()} (dry run, nothing changed):")
        lines += [
            f"  {d['kind']:6} {d['name']:24} {d['not_after'][:10]}  {d['command']}"
            for d in report.due
        ]
    for r in report.renewed:
        lines += _renewed_lines(r)
        if r.kind == "ci":
            lines.append(f"  The secret was not printed. Next: {_ci_fetch(ca, r.name)}")
    for f in report.failed:
        lines.append(f"FAILED {f['kind']} {f['name']}: {f['error']}")
    for c in report.ca_due:
        lines.append(
            f"The CA itself expires on {c['not_after'][:10]}: rotate it with `{c['command']}`."
        )
    return report, lines


def _renewed_lines(r: Renewed) -> list[str]:
    from ..renew import RESTART_NOTE

    if r.dry_run:
        head = f"Dry run: {r.kind} {r.name}"
    elif r.bundle_only:
        head = f"Re-installed {r.kind} {r.name} (serial {r.serial}) with the current trust bundle"
    else:
        key = "same key" if r.reused_key else "new key"
        head = (
            f"Renewed {r.kind} {r.name}: serial {r.old_serial} -> {r.serial} ({key}), "
            f"valid until {r.not_after[:10]}"
        )
    lines = [head + "."]
    verb = "would write" if r.dry_run else "wrote"
    lines += [f"  {verb} {p}" for p in r.written]
    lines += [f"  {n}" for n in r.notes]
    if r.restarted:
        lines.append("  dockerd restarted and answers on its TLS port.")
    elif r.restart_needed and r.dry_run:
        lines.append(f"  A restart would be needed: {RESTART_NOTE}.")
    elif r.restart_needed:
        lines.append(
            f"  Restart needed: {RESTART_NOTE}; run `sudo systemctl restart docker` "
            "(next time, --restart does it and rolls back if dockerd does not come back)."
        )
    elif r.kind == "server" and r.installed and not r.written:
        lines.append("  No restart needed: no dockerd file changed.")
    return lines


def _hazards(ca: str, kind: str, bundle_only: bool, json_out: bool) -> list[str]:
    """What renewing a ``kind`` now would lock out in a CA rotation: warned on stderr before
    anything is written (dry runs too); the JSON carries them as ``warnings``."""
    from ..rotation import rotation_hazards
    from ..store import CAStore

    hazards = rotation_hazards(CAStore(ca), kind, bundle_only)
    for hazard in [] if json_out else hazards:
        warn(hazard.removeprefix("Warning: "))
    return hazards


def _ci_fetch(ca: str, name: str) -> str:
    """The command that prints the CI secret in use without issuing again."""
    from ..renew import renew_command
    from ..store import CAStore

    again = renew_command(CAStore(ca), "ci", name, " --bundle-only --format bundle")
    return f"{again} | gh secret set CERTKIT_BUNDLE"


@renew_app.command("server")
def renew_server(
    host: str = typer.Argument(..., help="The server's name, as in `certkit list`."),
    san: list[str] = typer.Option(
        None,
        "--san",
        metavar="NAME_OR_IP",
        help="Add a DNS name or IP address (repeatable); existing ones are kept.",
    ),
    reuse_key: bool = REUSE_KEY,
    days: int = DAYS,
    bundle_only: bool = BUNDLE_ONLY,
    install: bool = typer.Option(
        None,
        "--install/--no-install",
        help="Re-install into daemon.json's paths (default: when it was installed).",
    ),
    root: Path = reach.ROOT,
    cert_dir: str = CERT_DIR_OPTION,
    restart: bool = RESTART_OPTION,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would change, change nothing."
    ),
    ssh: str = reach.SSH,
    sudo: bool = reach.SUDO,
    identity: str = reach.IDENTITY,
    ssh_option: list[str] = reach.SSH_OPTIONS,
    allow_from: list[str] = typer.Option(
        None,
        "--allow-from",
        metavar="CIDR",
        help="Open the TLS port in the host's firewall to these sources only (repeatable; "
        "'any' for everyone), replacing the recorded ones: certkit's rules for sources left "
        "out are removed (default: keep the recorded sources).",
    ),
    keep_containers: bool = KEEP_CONTAINERS,
    keep_insecure: bool = KEEP_INSECURE,
    remove_insecure: bool = REMOVE_INSECURE,
    replace_ca: bool = REPLACE_CA,
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Renew a server certificate and replace the installed files atomically.

    A server is re-installed the way it was installed: over SSH on the same host
    (with the recorded --identity and --ssh-option), through Ansible for a host
    `fleet apply` installed, or on this machine.

    Example: certkit renew server docker1.example.com --san 10.0.0.5 --restart
    """
    from ..host.firewall import check_sources
    from ..renew import ServerInstall, renew
    from ..store import CAStore

    srv = ServerInstall(
        install=install,
        reach=reach.group(ssh, sudo, identity, ssh_option, root),
        cert_dir=cert_dir,
        restart=restart,
        dry_run=dry_run,
        allow_from=check_sources(allow_from) if allow_from else None,
        keep_containers=keep_containers,
        keep_insecure=keep_insecure,
        remove_insecure=remove_insecure,
        replace_ca=replace_ca,
    )
    if keep_containers and not restart:
        from ..errors import UsageError

        raise UsageError(
            "--keep-containers turns live-restore on just before certkit's restart: add --restart."
        )
    hazards = _hazards(ca, "server", bundle_only, json_out)
    result = renew(
        CAStore(ca),
        "server",
        host,
        add_names=list(san or []),
        reuse_key=reuse_key,
        days=days,
        bundle_only=bundle_only,
        server=srv,
    )
    result.warnings = hazards
    emit(json_out, {"ok": True, **result.to_json()}, _renewed_lines(result))


@renew_app.command("client")
def renew_client(
    name: str = typer.Argument(..., help="The context name, as in `certkit list`."),
    reuse_key: bool = REUSE_KEY,
    days: int = DAYS,
    bundle_only: bool = BUNDLE_ONLY,
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Renew a client certificate and rewrite its docker context in place.

    Example: certkit renew client laptop
    """
    from ..openbao.login import is_login_context

    if is_login_context(name) and not bundle_only:  # made by certkit login: OpenBao
        from .team import renew_contexts

        return renew_contexts(name, True, json_out)
    from ..renew import renew
    from ..store import CAStore

    hazards = _hazards(ca, "client", bundle_only, json_out)
    result = renew(
        CAStore(ca), "client", name, reuse_key=reuse_key, days=days, bundle_only=bundle_only,
    )  # fmt: skip
    result.warnings = hazards
    emit(json_out, {"ok": True, **result.to_json()}, _renewed_lines(result))


@renew_app.command("ci")
def renew_ci(
    name: str = typer.Argument(..., help="The CI name, as in `certkit list`."),
    reuse_key: bool = REUSE_KEY,
    days: int = DAYS,
    bundle_only: bool = typer.Option(
        False,
        "--bundle-only",
        help="Issue nothing: render the current CI certificate with the current trust bundle.",
    ),
    fmt: str = typer.Option(
        None,
        "--format",
        help="Print the new secret: bundle | env | json (default: print no secret).",
    ),
    out: Path = typer.Option(
        None, "--out", help="Write the new secret to this file (created 0600)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace the --out file if it exists."),
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Renew a CI certificate; the new secret is printed only with --format or --out.

    Example: certkit renew ci deploy --format bundle | gh secret set CERTKIT_BUNDLE
    """
    from ..ci import check_format, check_out, write_out
    from ..errors import UsageError
    from ..renew import renew
    from ..store import CAStore

    if fmt is not None and check_format(fmt) in ("github", "gitlab"):
        raise UsageError("renew ci prints a secret: use --format bundle, env or json.")
    show = fmt is not None or out is not None
    if out is not None:
        check_out(out, force=force)  # before renewing: nothing is issued for a bad --out
    store = CAStore(ca)
    hazards = _hazards(ca, "ci", bundle_only, json_out)
    result = renew(
        store,
        "ci",
        name,
        reuse_key=reuse_key,
        days=days,
        bundle_only=bundle_only,
        ci_format=fmt or "bundle",
    )
    result.warnings = hazards
    secret, result.secret = result.secret or "", None
    data = {"ok": True, **result.to_json()}
    lines = _renewed_lines(result)
    if out is not None:
        data["out"] = str(write_out(out, secret, force=force))
        lines.append(f"  Secret written to {data['out']} (mode 0600).")
    elif not show:
        lines.append(f"  The secret was not printed. Next: {_ci_fetch(ca, name)}")
    if show and out is None:
        if json_out:
            data["secret"] = secret
        else:
            sys.stdout.write(secret if secret.endswith("\n") else secret + "\n")
            for line in lines:  # stdout carries the secret: messages go to stderr
                typer.echo(line, err=True)
            return
    emit(json_out, data, lines)


# ---------------------------------------------------------------- rotate-ca


def _rotation_lines(r: RotationReport) -> list[str]:
    lines: list[str] = []
    if r.state == "started":
        assert r.previous is not None
        lines.append(f"New CA {r.current.subject!r} signs from now on ({r.current.key_type}).")
        lines.append(f"Old CA {r.previous.subject!r} kept at {r.previous.path}.")
        if r.previous.key_uri:
            lines.append(f"Old CA key left where it is: {r.previous.key_uri}")
            lines.append(f"New CA key made beside it: {r.current.key_uri}")
        lines.append(f"Trust bundle (new + old CA): {r.bundle_path}")
    elif r.state == "rotating":
        assert r.previous is not None
        lines.append(f"Rotation of CA {r.ca!r} under way.")
        lines.append(f"  new: {r.current.subject}  {r.current.fingerprint[:23]}...")
        lines.append(f"  old: {r.previous.subject}  {r.previous.fingerprint[:23]}...")
    elif r.state == "finished":
        assert r.previous is not None
        lines.append(f"Old CA {r.previous.subject!r} dropped from the trust bundle.")
        lines.append(f"Archived (not deleted) at {r.archived}.")
        if r.previous.key_uri:
            lines.append(
                f"Its key is still where it was (certkit deletes none): {r.previous.key_uri}"
            )
        lines.append(
            "No dockerd file changed yet: each server trusts the old CA until its tlscacert "
            "is re-installed and dockerd restarted."
        )
        if r.dependents:
            lines.append(f"Cut off by --force ({len(r.dependents)}; renew them now):")
            lines += [f"  {d.line()}" for d in r.dependents]
    else:
        lines.append(f"No rotation of CA {r.ca!r} under way ({r.current.subject}).")
    if r.state in ("started", "rotating"):
        if r.dependents:
            lines.append(f"Still signed by the old CA ({len(r.dependents)}):")
            lines += [f"  {d.kind:6} {d.name:24} {d.why}" for d in r.dependents]
        else:
            lines.append("Nothing in use is signed by the old CA any more.")
    if r.steps:
        lines.append("Next steps:" if r.state != "none" else "Still trusting the old CA:")
        lines += [f"  {s}" for s in r.steps]
    if r.restart_needed:
        lines.append(
            "dockerd needs a restart after each server step (it never reloads TLS files); "
            "certkit restarts it only with --restart."
        )
    elif r.state == "started":
        lines.append("No dockerd needs a restart yet.")
    return lines


@rotate_app.command("start")
def rotate_start(
    ca: str = CA_OPTION,
    key_type: str = typer.Option(
        None, "--key-type", help="Key type of the new CA (default: the old CA's)."
    ),
    cn: str = typer.Option(None, "--cn", help="Common name of the new CA (default: old + date)."),
    days: int = typer.Option(CA_DAYS, "--days", help="Validity of the new CA in days."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Make the next CA; servers and clients trust both CAs until `rotate-ca finish`.

    Example: certkit rotate-ca start --ca prod
    """
    from ..rotation import start_rotation
    from ..store import CAStore

    report = start_rotation(CAStore(ca), key_type=key_type, common_name=cn, days=days)
    emit(json_out, {"ok": True, **report.to_json()}, _rotation_lines(report))


@rotate_app.command("status")
def rotate_status(ca: str = CA_OPTION, json_out: bool = JSON_OPTION) -> None:
    """What is still signed by the old CA, with the command that renews each.

    Example: certkit rotate-ca status
    """
    from ..rotation import rotation_status
    from ..store import CAStore

    report = rotation_status(CAStore(ca))
    emit(json_out, {"ok": True, **report.to_json()}, _rotation_lines(report))


@rotate_app.command("finish")
def rotate_finish(
    ca: str = CA_OPTION,
    force: bool = typer.Option(
        False, "--force", help="Finish even though certificates still depend on the old CA."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Drop the old CA from the trust bundle and archive it (refused while it is still used).

    Example: certkit rotate-ca finish
    """
    from ..rotation import finish_rotation
    from ..store import CAStore

    report = finish_rotation(CAStore(ca), force=force)
    if report.dependents:
        warn(f"{len(report.dependents)} certificate(s) signed by the old CA no longer get in.")
    emit(json_out, {"ok": True, **report.to_json()}, _rotation_lines(report))
