"""``certkit login`` (a person) and ``certkit team ...`` (the admin): team mode on OpenBao."""

from __future__ import annotations

import typer

from ..defaults import CLIENT_DAYS, DOCKER_TLS_PORT, SERVER_DAYS
from .output import CA_OPTION, DOCKER_CONFIG_OPTION, JSON_OPTION, emit
from .root import app

team_app = typer.Typer(
    help="Team mode: certificates from an OpenBao PKI mount (certkit init-ca --issuer openbao).",
    no_args_is_help=True,
)
app.add_typer(team_app, name="team")


@app.command("login")
def login(
    host: str = typer.Option(None, "--host", help="The Docker host (first login; then kept)."),
    port: int = typer.Option(DOCKER_TLS_PORT, "--port", help="The Docker host's TLS port."),
    issuer: str = typer.Option(
        None, "--issuer", help="OpenBao's URL(s), comma-separated (default: $BAO_ADDR)."
    ),
    method: str = typer.Option(
        "userpass",
        "--method",
        help="userpass (password: $CERTKIT_BAO_PASSWORD or asked), "
        "token ($BAO_TOKEN), jwt (the JWT in $CERTKIT_BAO_JWT) "
        "or cert (the current certificate, no password).",
    ),
    jwt_role: str = typer.Option(
        "certkit-person", "--jwt-role", help="jwt: the role of OpenBao's jwt auth method."
    ),
    username: str = typer.Option(None, "--username", help="userpass: the login (default $USER)."),
    context: str = typer.Option(None, "--context", help="Docker context (default: from --host)."),
    mount: str = typer.Option("pki-docker", "--mount", help="The team's PKI mount."),
    ttl: str = typer.Option("8h", "--ttl", help="Lifetime asked for (the role caps it)."),
    use: bool = typer.Option(False, "--use", help="Make the context the current one."),
    docker_config: str = DOCKER_CONFIG_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Log in to the team's OpenBao and get your own client certificate as a docker context.

    The key is made here; OpenBao signs it for the name you logged in as, for 8 hours.

    Example: certkit login --issuer https://bao.example.com:8200 --host docker1 --use

    Example (renew with the current certificate): certkit login --context docker1 --method cert

    Example (a JWT): CERTKIT_BAO_JWT=$TOKEN certkit login --method jwt --host docker1
    """
    from ..openbao.login import login as _login

    r = _login(host, port, issuer=issuer, method=method, username=username, context=context,
               mount=mount, ttl=ttl, docker_config=docker_config, use=use,
               jwt_role=jwt_role)  # fmt: skip
    used = "" if r.used else f" (docker --context {r.context} ps, or --use)"
    emit(
        json_out,
        r.to_json(),
        [
            f"Logged in as {r.identity!r}: context {r.context!r} for {r.host}{used}.",
            f"Certificate valid until {r.not_after[:16]}; renew after {r.renew_after[:16]} "
            "with certkit team renew (no password).",
        ],
    )


@team_app.command("renew")
def renew(
    context: str = typer.Option(None, "--context", help="One login context (default: all)."),
    force: bool = typer.Option(False, "--force", help="Renew now, not only when due."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Renew login contexts past 2/3 of their lifetime, logging in with the current certificate.

    Example: certkit team renew
    """
    renew_contexts(context, force, json_out)


def renew_contexts(context: str | None, force: bool, json_out: bool) -> None:
    """``team renew``, ``renew --contexts`` and ``renew client NAME`` of a login context:
    through OpenBao's cert login, never the local CA."""
    from ..openbao.login import renew_due

    done = renew_due(context, force=force)
    lines = [f"Renewed {r.context!r} ({r.identity}), valid until {r.not_after[:16]}." for r in done]
    emit(json_out, [r.to_json() for r in done], lines or ["No login context due for renewal."])


@team_app.command("issue-server")
def issue_server(
    host: str = typer.Argument(..., help="The Docker host's name (its certificate's CN)."),
    out: str = typer.Option(..., "--out", help="Directory for ca.pem, server-cert.pem, key."),
    san: list[str] = typer.Option(None, "--san", help="Another DNS name or IP (repeatable)."),
    days: int = typer.Option(SERVER_DAYS, "--days", help="Validity in days (the role caps it)."),
    ca: str = CA_OPTION,
    force: bool = typer.Option(False, "--force", help="Replace existing files in --out."),
    json_out: bool = JSON_OPTION,
) -> None:
    """A server certificate signed by the OpenBao-backed CA (key made here, CSR sent).

    Example: certkit team issue-server docker1.example.com --san 10.0.0.5 --out ./docker1
    """
    from ..openbao.issue import issue_server_files
    from ..store import CAStore

    r = issue_server_files(CAStore(ca), host, out, sans=san, days=days, force=force)
    emit(
        json_out,
        r.to_json(),
        [
            f"Issued server certificate {r.serial} for {', '.join(r.names)} through OpenBao, "
            f"valid until {(r.not_after or '')[:10]}.",
            f"Files: {r.out_files['ca']}, {r.out_files['cert']} (leaf and chain), "
            f"{r.out_files['key']}",
            f"Next: install them as dockerd's tlscacert, tlscert, tlskey; people: certkit login "
            f"--host {r.host}",
        ],
    )


@team_app.command("issue-client")
def issue_client(
    name: str = typer.Argument(None, help="The client's name (its certificate's CN)."),
    out: str = typer.Option(..., "--out", help="Directory (one subdirectory per client)."),
    count: int = typer.Option(None, "--count", help="Issue N clients named PREFIX-1..PREFIX-N."),
    prefix: str = typer.Option("client", "--prefix", help="Name prefix for --count."),
    days: int = typer.Option(CLIENT_DAYS, "--days", help="Validity in days (the role caps it)."),
    ca: str = CA_OPTION,
    force: bool = typer.Option(False, "--force", help="Replace existing files in --out."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Client certificates (CI, services) signed by the OpenBao-backed CA, as plain files.

    Example: certkit team issue-client --count 100 --prefix runner --out ./runners
    """
    from ..bulk import numbered_names
    from ..errors import UsageError
    from ..openbao.issue import issue_client_files
    from ..store import CAStore

    if (name is None) == (count is None):
        raise UsageError("Give exactly one of NAME or --count N.")
    names = [name] if name is not None else numbered_names(prefix, count)
    issued = issue_client_files(CAStore(ca), names, out, days=days, force=force)
    docs = [{"name": i.record.name, "serial": i.record.serial, "not_after": i.record.not_after}
            for i in issued]  # fmt: skip
    emit(
        json_out,
        {"ok": True, "issued": docs, "out": out},
        [
            f"Issued {len(issued)} client certificate(s) through OpenBao into {out}, valid until "
            f"{issued[0].record.not_after[:10]}."
        ],
    )


@team_app.command("revoke")
def revoke(
    identity: str = typer.Option(..., "--identity", help="The person (certificate CN)."),
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Revoke every unexpired certificate OpenBao issued to a person (someone leaves).

    Her certificates go on the CRL and OCSP; her next renewal is refused.

    Example: certkit team revoke --identity alice
    """
    from ..openbao.revoke import revoke_identity
    from ..store import CAStore

    serials = revoke_identity(CAStore(ca), identity)
    emit(
        json_out,
        {"ok": True, "identity": identity, "revoked": serials},
        [
            f"Revoked {len(serials)} certificate(s) of {identity!r} in OpenBao.",
            "Next: remove her OpenBao login (bao delete auth/userpass/users/NAME).",
        ],
    )


@team_app.command("doctor")
def doctor(ca: str = CA_OPTION, json_out: bool = JSON_OPTION) -> None:
    """Check an OpenBao-backed CA: mount, issuer, certkit's roles, policies, renewal login.

    Exit 1 when something is wrong (each finding one sentence).

    Example: certkit team doctor
    """
    from ..openbao.check import check
    from ..store import CAStore

    found = check(CAStore(ca))
    failed = any(level == "FAIL" for level, _ in found)
    emit(
        json_out,
        {"ok": not failed, "findings": [{"level": lv, "message": m} for lv, m in found]},
        [f"{lv}  {m}" for lv, m in found]
        or ["OK    the mount, issuer, roles and policies are certkit's profile."],
    )
    if failed:
        raise typer.Exit(1)


@team_app.command("list")
def list_(
    ca: str = CA_OPTION,
    expired: bool = typer.Option(False, "--expired", help="Show expired certificates too."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Every certificate the OpenBao mount issued: hosts, clients, and people's logins.

    Example: certkit team list
    """
    from ..openbao.readback import issued
    from ..store import CAStore

    rows = issued(CAStore(ca), include_expired=expired)
    lines = [
        f"{r.kind:7} {r.name:24} until {r.not_after[:16]}  {r.serial}"
        + ("  REVOKED" if r.revoked else "")
        for r in rows
    ]
    emit(json_out, [r.to_json() for r in rows], lines or ["No certificate issued yet."])
