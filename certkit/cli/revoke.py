"""``certkit revoke`` and ``certkit policy show|push|configure`` (``ca crl``: :mod:`.crl`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from . import reach
from .output import CA_OPTION, JSON_OPTION, emit
from .root import app

if TYPE_CHECKING:
    from ..store import CAStore

policy_app = typer.Typer(
    help="The access policy certkit's authorization plugin enforces on each Docker host.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")

NO_PUSH = typer.Option(False, "--no-push", help="Record it only; push later (policy push).")


def _push_lines(report: object) -> tuple[list[str], bool]:
    from ..revoke import PushReport

    assert isinstance(report, PushReport)
    lines = [
        f"  {p.host}: policy {p.digest} in force"
        + (" (plugin registered, dockerd reloaded with SIGHUP)" if p.registered else "")
        for p in report.pushed
    ]
    lines += [f"  {h}: NOT updated: {why}" for h, why in report.failed.items()]
    return lines, not report.failed


@app.command("revoke")
def revoke(
    what: str = typer.Argument(..., help="The certificate's name (see certkit list) or serial."),
    reason: str = typer.Option(
        None,
        "--reason",
        help="Why (one line; RFC 5280 names such as keyCompromise also go into the CRL).",
    ),
    kind: str = typer.Option(
        None, "--kind", help="client | ci | server, when the name is used by several kinds."
    ),
    ca: str = CA_OPTION,
    no_push: bool = NO_PUSH,
    identity: str = reach.IDENTITY,
    ssh_option: list[str] = reach.SSH_OPTIONS,
    json_out: bool = JSON_OPTION,
) -> None:
    """Revoke a certificate: every host running certkit's plugin denies it from now on.

    dockerd itself cannot revoke (it still completes the TLS handshake): the
    plugin installed by `certkit policy push HOST` is the gate.  Renewal never
    re-issues a revoked certificate.  For a CA bound to OpenBao, every unexpired
    certificate OpenBao issued to that person (client or CI name) is revoked
    there too: its CRL and OCSP say so, and her renewal login is refused.

    Example: certkit revoke alice --reason keyCompromise

    Exit codes: 0 revoked (and pushed), 1 a host could not be updated, 2 bad input.
    """
    from ..openbao.binding import is_openbao
    from ..revoke import push_policy
    from ..store import CAStore

    store = CAStore(ca)
    data, lines = _revoke_recorded(store, what, reason, kind, bound=is_openbao(store))
    ok = True
    if no_push:
        lines.append(f"Not pushed. Next: certkit policy push HOST{_flag(ca)} for each host.")
    else:
        report = push_policy(store, identity=identity, ssh_options=tuple(ssh_option or ()))
        data["push"] = report.to_json()
        more, ok = _push_lines(report)
        lines += more or ["No host runs certkit's plugin yet. Next: certkit policy push HOST"]
    emit(json_out, data, lines)
    if not ok:
        raise typer.Exit(1)


def _revoke_recorded(
    store: CAStore, what: str, reason: str | None, kind: str | None, *, bound: bool
) -> tuple[dict[str, Any], list[str]]:
    """Revoke ``what`` in the inventory and, for a CA bound to OpenBao, the person's
    certificates in OpenBao (a name only OpenBao knows is revoked there alone); the JSON
    document and the lines to print."""
    from ..errors import UsageError
    from ..revoke import revoke as _revoke

    try:
        done = _revoke(store, what, reason, kind)
    except UsageError:
        if not bound or kind == "server":
            raise
        done = None
    data: dict[str, Any] = {"ca": store.name, "name": what}
    lines = []
    if done is not None:
        rec = done.record
        data = done.to_json()
        lines.append(
            f"{rec.kind} {rec.name} (serial {rec.serial}) "
            + ("was already revoked" if done.already else "revoked")
            + f" on {(rec.revoked_at or '')[:19]}"
            + (f": {rec.revoked_reason}" if rec.revoked_reason else "")
            + "."
        )
    if bound and (done is None or done.record.kind != "server"):
        from ..openbao.revoke import revoke_identity

        person = done.record.subject if done is not None else what
        serials = revoke_identity(store, person)
        if done is None and not serials:
            raise UsageError(
                f"Neither CA {store.name!r}'s inventory nor its OpenBao mount has an unexpired "
                f"certificate for {what!r}; see `certkit list`."
            )
        from ..revoke import mark_revoked

        also = mark_revoked(store, serials, reason)  # her other certificates, in the policy too
        data["openbao"] = {"identity": person, "revoked": serials, "also_recorded": also}
        lines.append(
            f"OpenBao: revoked {len(serials)} certificate(s) of {person!r} (CRL and OCSP; "
            "the cert login got the new CRL)."
        )
    return data, lines


def _flag(ca: str) -> str:
    return "" if ca == "default" else f" --ca {ca}"


@policy_app.command("show")
def show(
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """The policy built from the inventory, and the hosts enforcing it (behind or current).

    Example: certkit policy show --json
    """
    from ..revoke import build_policy, hosts_behind
    from ..store import CAStore

    store = CAStore(ca)
    policy = build_policy(store)
    behind = set(hosts_behind(store))
    hosts = store.inventory().authz_hosts()
    data = {
        "policy": policy,
        "hosts": {
            h: {"digest": d, "pushed_at": at, "behind": h in behind}
            for h, (_, d, at) in hosts.items()
        },
    }
    lines = [
        f"Policy {policy['digest']} of CA {ca!r}: default role {policy['default_role']}, "
        f"{len(policy['identities'])} identities, {len(policy['revoked'])} revoked.",
        *(f"  {ident:24} {role}" for ident, role in policy["identities"].items()),
        *(
            f"  REVOKED {r['identity']} serial {r['serial']} on {r['at'][:10]}"
            for r in policy["revoked"]
        ),
    ]
    for h, (_, d, at) in hosts.items():
        state = (
            f"BEHIND (has {d}): certkit policy push {h}{_flag(ca)}" if h in behind else "current"
        )
        lines.append(f"  host {h}: {state}, pushed {at[:19]}")
    if not hosts:
        lines.append("No host enforces it yet. Next: certkit policy push HOST --ssh root@HOST")
    emit(json_out, data, lines)


@policy_app.command("push")
def push(
    host: str = typer.Argument(
        ..., help="The host's name (as recorded; new hosts: with --ssh or --root)."
    ),
    ssh: str = reach.SSH,
    sudo: bool = reach.SUDO,
    root: str = reach.ROOT,
    plugin: str = typer.Option(
        "certkit-authz",
        "--plugin",
        help="The plugin's name (its socket: /run/docker/plugins/NAME.sock).",
    ),
    identity: str = reach.IDENTITY,
    ssh_option: list[str] = reach.SSH_OPTIONS,
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Install or update certkit's authorization plugin and its policy on a Docker host.

    Writes the plugin, its policy (/etc/docker/certkit/authz.json), the
    certkit-authz.socket and .service units, adds the plugin to daemon.json's
    authorization-plugins and sends dockerd SIGHUP: no restart, no container stops.
    Later `certkit revoke` pushes to every host pushed to here.

    Example: certkit policy push docker1 --ssh root@docker1.example.com

    Exit codes: 0 in force, 1 the host could not be updated, 2 bad input.
    """
    from .. import targets
    from ..authz.install import check_plugin_name
    from ..errors import UsageError
    from ..revoke import push_policy
    from ..store import CAStore

    store = CAStore(ca).require()
    recorded = store.inventory().authz_hosts().get(host)
    if ssh is None and root is None and recorded is not None:
        ref_json = recorded[0]
        ref = targets.ref_from_json({k: v for k, v in ref_json.items() if k != "plugin"})
        plugin = ref_json.get("plugin", plugin)
    elif ssh is None and root is None and host not in ("localhost", "local"):
        raise UsageError(
            f"{host!r} is not a recorded host: say how to reach it with --ssh [USER@]HOST "
            "(or --root DIR for a sandbox; HOST localhost for this machine)."
        )
    else:
        ref = targets.from_reach(reach.group(ssh, sudo, root=root))
    check_plugin_name(plugin)
    report = push_policy(
        store, {host: (ref, plugin)}, identity=identity, ssh_options=tuple(ssh_option or ())
    )
    lines, ok = _push_lines(report)
    emit(json_out, report.to_json(), lines)
    if not ok:
        raise typer.Exit(1)


@policy_app.command("configure")
def configure(
    roles: str = typer.Option(
        None,
        "--roles",
        help="A JSON file of custom roles: "
        '{"roles": {"deployer": ["GET /containers/json", '
        '"POST /containers/*/start"]}} (* one segment, ** several).',
    ),
    default: str = typer.Option(
        None,
        "--default",
        help="The role of identities the policy does not know: full (today's behaviour) or deny.",
    ),
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Set the custom roles and the default role of a CA's policy (checked before saving).

    Example: certkit policy configure --roles roles.json --default deny
    """
    from ..revoke import configure as _configure
    from ..store import CAStore

    settings = _configure(CAStore(ca), roles, default)
    emit(
        json_out,
        settings.to_json(),
        [
            f"Default role {settings.default_role}; custom roles: "
            + (", ".join(sorted(settings.roles)) or "none")
            + ".",
            f"Next: certkit policy push HOST{_flag(ca)} (or client-context NAME --role ROLE)",
        ],
    )
