"""``certkit list``, ``status``, ``verify`` and ``doctor``: know where you stand."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ..defaults import RENEW_WINDOW_DAYS
from .output import DOCKER_CONFIG_OPTION, JSON_OPTION, emit, warn
from .root import app

if TYPE_CHECKING:
    from ..checks import Check
    from ..inventory import Item
    from ..verify import Credentials


def _names(item: Item) -> str:
    """What the certificate is for: SANs of a server, the context of a client, else the CN."""
    if item.kind == "server":
        return "names:   " + (", ".join(item.sans) or item.subject)
    if item.kind == "client":
        return f"context: {item.name}"
    return f"subject: {item.subject}"


@app.command("list")
def list_(
    ca: str = typer.Option(None, "--ca", help="Only this CA (default: every CA in the store)."),
    kind: str = typer.Option(None, "--kind", help="Only this kind: ca | server | client | ci."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Every certificate the store's CAs issued: names, expiry, where installed, status.

    Status is valid, expiring (within 30 days), expired, superseded or revoked.

    Example: certkit list --kind server
    """
    from ..inventory import iter_items, list_items
    from ..openbao.readout import bound_cas, merge_list
    from ..paths import store_root
    from ..store import list_ca_names

    bound = bound_cas(ca)  # one stat per CA: OpenBao's word is asked only when one is bound
    if json_out and not bound:  # streamed: the first record is out before the last is read
        from .output import emit_stream

        emit_stream(i.to_json() for i in iter_items(ca, kind))
        return
    items = list_items(ca, kind)
    if bound:  # OpenBao's word: people's logins, revocations (docs/team.md)
        items, notes = merge_list(items, ca, kind)
        for note in notes:
            warn(note)
    if json_out:
        emit(json_out, [i.to_json() for i in items])
        return
    lines = [f"{'CA':10} {'KIND':6} {'NAME':22} {'NOT AFTER':10} {'DAYS':>5}  {'STATUS':10} SERIAL"]
    for i in items:
        lines.append(
            f"{i.ca:10} {i.kind:6} {i.name:22} {i.expiry_date:10} {int(i.days_left):>5}  "
            f"{i.status:10} {i.serial}"
        )
        lines.append(f"{'':18}{_names(i)}")
        if i.installed:
            lines.append(f"{'':18}at:      {', '.join(i.installed)}")
    if not items and kind and list_ca_names():
        lines = [f"No {kind} certificate in the inventory. Next: certkit list (every kind)"]
    elif not items:
        lines = [f"Nothing issued yet in {store_root()}. Next: certkit init-ca"]
    emit(json_out, [], lines)


@app.command("status")
def status(
    warn_days: int = typer.Option(
        int(RENEW_WINDOW_DAYS), "--warn-days", help="Report what expires within this many days."
    ),
    ca: str = typer.Option(None, "--ca", help="Only this CA (default: every CA in the store)."),
    fmt: str = typer.Option(
        "text",
        "--format",
        help="text | prometheus (node_exporter textfile format: expiry timestamps, rotation).",
    ),
    out: str = typer.Option(
        None, "--out", help="With --format prometheus: write this file atomically (0644)."
    ),
    verify_endpoints: bool = typer.Option(
        False,
        "--verify",
        help="With --format prometheus: also audit every installed server endpoint live.",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Exit 1 when a certificate is expired or expires within --warn-days, with its renew command.

    Superseded certificates are ignored.  Made for cron and monitoring checks:
    silent success is one line, exit 0.  With --format prometheus it exports
    the expiry of every certificate in use instead (exit 0 once written: the
    alert rules decide), e.g. every 15 minutes from cron or a systemd timer.

    Example: certkit status --warn-days 21 || mail -s "certkit" ops@example.com

    Example: certkit status --format prometheus --out /var/lib/node_exporter/textfile/certkit.prom
    """
    if fmt != "text" or out is not None or verify_endpoints:
        _prometheus(fmt, out, verify_endpoints, ca, json_out)
        return
    from ..inventory import status as _status

    report = _status(warn_days, ca)
    window = f"{warn_days:g} days"
    if report.ok:
        nxt = report.next_expiry
        lines = [
            f"OK: {report.checked} certificates, none needs renewal yet (window {window})"
            + (
                f"; next: {nxt.kind} {nxt.name}, {nxt.describe_expiry()}; {nxt.describe_renewal()}."
                if nxt
                else "."
            )
        ]
    else:
        n = len(report.attention)
        lines = [f"{n} certificate{'s need' if n > 1 else ' needs'} attention (window {window}):"]
        for i in report.attention:
            label = "EXPIRED" if i.status == "expired" else "EXPIRING"
            lines.append(f"  {label:8} {i.kind:6} {i.name} (CA {i.ca}): {i.describe_expiry()}")
            lines.append(f"           renew: {i.renew}")
    from ..revoke import status_lines

    data, extra = status_lines(report)
    from ..openbao.readout import status_lines as openbao_lines

    more, bao_lines = openbao_lines(report.cas)  # nothing when no CA is OpenBao-backed
    data, extra = {**data, **more}, extra + bao_lines
    emit(json_out, {**report.to_json(), **data}, lines + extra)
    if not report.ok:
        raise typer.Exit(1)


def _prometheus(
    fmt: str, out: str | None, verify_endpoints: bool, ca: str | None, json_out: bool
) -> None:
    """``status --format prometheus``: the metrics on stdout, or into --out FILE."""
    from ..errors import UsageError
    from ..metrics import check_out, collect, write

    if fmt not in ("text", "prometheus"):
        raise UsageError(f"--format is text or prometheus, not {fmt!r}.")
    if fmt != "prometheus":
        raise UsageError("--out and --verify go with --format prometheus: add it.")
    if json_out and out is None:
        raise UsageError("--json and --format prometheus both want stdout: add --out FILE.")
    path = check_out(out) if out is not None else None
    metrics = collect(ca, verify=verify_endpoints)
    if path is None:
        typer.echo(metrics.text, nl=False)
        return
    written = write(path, metrics)
    data = {**metrics.to_json(), "out": str(written)}
    lines = [f"Wrote {len(metrics.certificates)} certificates' expiry to {written} (0644)."]
    for e in metrics.endpoints:
        lines.append(f"  {'PASS' if e.ok else 'FAIL'}  {e.host}:{e.port}  {e.message}")
    emit(json_out, data, lines)
    if not written.name.endswith(".prom"):
        warn("node_exporter's textfile collector reads only *.prom files: rename --out.")


@app.command("verify")
def verify(
    endpoint: str = typer.Argument(
        None, metavar="HOST[:PORT]", help="The Docker endpoint (port 2376 by default)."
    ),
    context: str = typer.Option(
        None, "--context", help="Use this docker context's endpoint and TLS files."
    ),
    ca: str = typer.Option(None, "--ca", help="CA bundle file the server must chain to."),
    cert: str = typer.Option(None, "--cert", help="Client certificate file."),
    key: str = typer.Option(None, "--key", help="Client key file."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per network step."),
    insecure_port: int = typer.Option(
        2375, "--insecure-port", help="Port that must NOT serve plain HTTP (0 skips the check)."
    ),
    docker_config: str = DOCKER_CONFIG_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Audit a live Docker endpoint: one PASS/WARN/FAIL line per check, exit 1 on any FAIL.

    Checks the strict TLS chain, the names, that client certificates are
    required and foreign ones refused, the API, expiry dates, and that the
    plain-HTTP port is closed.  With only HOST[:PORT], the docker context
    pointing there supplies the TLS files.  Run on the Docker host itself
    (HOST is one of its addresses), it also reports who can reach the ports:
    the live listeners and the host firewall, as doctor does.

    Example: certkit verify --context docker1
    """
    from ..names import format_host
    from ..verify import add_exposure, resolve
    from ..verify import verify as _verify

    host, port, creds = resolve(endpoint, context, ca, cert, key, docker_config)
    report = _verify(host, port, creds, timeout, insecure_port or None)
    if not any(c.name == "connect" for c in report.checks):  # unreachable: said once is enough
        report.checks += _docker_py_checks(host, port, creds, timeout)
    add_exposure(report, insecure_port or None)
    from ..revoke import access_of

    access = access_of(creds.cert.read_bytes()) if creds.cert.is_file() else None
    if access is None and creds.cert.is_file():  # issued by OpenBao: its revocation state
        from ..openbao.readout import access_of as openbao_access

        access = openbao_access(creds.cert.read_bytes())
    if access is not None:  # what the inventory says: revoked, or the role it has
        report.add("access", *access)
    lines = [f"Verifying {format_host(host, port)} with {creds.source} ({creds.cert})"]
    lines += [f"{c.status}  {c.name:21} {c.message}" for c in report.checks]
    fails, warns = report.count("FAIL"), report.count("WARN")
    if fails:
        lines.append(f"{fails} check{'s' if fails > 1 else ''} FAILED, {warns} warning(s).")
    elif not report.proven:
        lines.append(
            f"No check failed, but the refusal of unauthorised clients is not proven "
            f"({warns} warning(s)): see the WARN lines."
        )
    else:
        lines.append(
            f"All {len(report.checks)} checks passed" + (f", {warns} warning(s)." if warns else ".")
        )
    emit(json_out, report.to_json(), lines)
    if not report.ok:
        raise typer.Exit(1)


def _docker_py_checks(host: str, port: int, creds: Credentials, timeout: float) -> list[Check]:
    """The docker-py lines: the same endpoint and files, through certkit.api.docker_client."""
    from ..dockerpy import Endpoint, check
    from ..names import format_host

    tls = (str(creds.ca), str(creds.cert), str(creds.key))
    return check(Endpoint(format_host(host, port), tls, creds.source), timeout)


@app.command("doctor")
def doctor(
    root: str = typer.Option(
        None, "--root", help="Read system files under this directory instead of /."
    ),
    docker_config: str = DOCKER_CONFIG_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Check this machine's Docker TLS setup without touching the network; exit 1 on any FAIL.

    Host: daemon.json, its TLS files and modes, key/certificate/CA agreement,
    hosts set both in the systemd unit and daemon.json, plain-TCP listeners;
    who can reach the Docker ports (live listeners and the host firewall):
    2375 listening beyond loopback FAILs, 2376 open to every network WARNs.
    Client: docker contexts' TLS files, DOCKER_HOST, REQUESTS_CA_BUNDLE.
    Store: SQLite's integrity check of every CA's inventory; issued files with no
    record (left by an interrupted run) WARN with the command that removes them.
    Access: an authorization plugin daemon.json names that does not answer FAILs
    (dockerd then denies everything) with the recovery; hosts enforcing an older
    policy WARN.

    Example: sudo certkit doctor
    """
    from ..authz.health import add_checks
    from ..doctor import doctor as _doctor
    from ..paths import system_paths

    report = _doctor(root, docker_config)
    add_checks(report, system_paths(root))  # authorization plugins, policies behind
    lines = [f"{c.status}  {c.name:21} {c.message}" for c in report.checks]
    fails, warns = report.count("FAIL"), report.count("WARN")
    if fails:
        lines.append(f"{fails} check{'s' if fails > 1 else ''} FAILED, {warns} warning(s).")
    else:
        lines.append("No problem found" + (f", {warns} warning(s)." if warns else "."))
    emit(json_out, report.to_json(), lines)
    if not report.ok:
        raise typer.Exit(1)
