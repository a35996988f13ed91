"""``certkit login``: a person's own client certificate from OpenBao, as a docker context.

The key is made on the laptop; OpenBao's person role signs its CSR with the common name
forced to the name she logged in as, for 8 hours by default (the role caps it).
``cert.pem`` holds the leaf and the issuer's chain, ``ca.pem`` the root.  What renewal
needs is kept in the store as ``logins/<context>.json`` (0600, no secret): renewal logs
in with the current certificate through the ``cert`` auth method, no password, once 2/3
of its lifetime has passed (:data:`certkit.defaults.RENEW_AT_FRACTION`).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import certs, defaults, dockercli, files, names, paths
from ..errors import OperationError, UsageError
from . import profile
from .client import Bao, Refused, settings

PASSWORD_ENV = "CERTKIT_BAO_PASSWORD"
JWT_ENV = "CERTKIT_BAO_JWT"  # --method jwt: the token itself (CI: the job's OIDC token)
JWT_MOUNT = "jwt"
METHODS = ("userpass", "token", "cert", "jwt")


@dataclass
class LoginState:
    """What a login context needs to be renewed: where, how, and as whom."""

    context: str
    identity: str
    host: str
    port: int
    addresses: list[str]
    mount: str
    docker_config: str
    ttl: str = profile.PERSON_TTL
    role: str = profile.PERSON_ROLE
    cert_auth: str = "cert"
    cert_role: str = profile.CERT_AUTH_ROLE


@dataclass
class LoginResult:
    context: str
    identity: str
    host: str
    serial: str
    not_after: str
    renew_after: str
    method: str
    used: bool = False
    renewed: bool = False
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, **asdict(self)}


def logins_dir() -> Path:
    return paths.store_root() / "logins"


def state_path(context: str) -> Path:
    return logins_dir() / f"{dockercli.validate_context_name(context)}.json"


def read_state(context: str) -> LoginState | None:
    text = files.read_text(state_path(context))
    if text is None:
        return None
    try:
        return LoginState(**json.loads(text))
    except (ValueError, TypeError):
        raise UsageError(f"{state_path(context)} is damaged; run certkit login again.") from None


def is_login_context(name: str) -> bool:
    """True when ``name`` is a context ``certkit login`` made; any other name is False (never
    an error: ``renew client NAME`` asks this of certificate names too)."""
    try:
        return state_path(name).exists()
    except UsageError:
        return False


def list_states() -> list[LoginState]:
    base = logins_dir()
    found = sorted(base.glob("*.json")) if base.is_dir() else []
    return [s for p in found if (s := read_state(p.stem)) is not None]


def _save_state(state: LoginState) -> None:
    files.ensure_dir(paths.store_root())
    files.ensure_dir(logins_dir())
    text = json.dumps(asdict(state), indent=2) + "\n"
    files.atomic_write(state_path(state.context), text, files.PRIVATE_FILE)


def _password(username: str) -> str:
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        raise UsageError(f"No password for {username!r}: set {PASSWORD_ENV} or run on a terminal.")
    try:
        return getpass.getpass(f"OpenBao password for {username}: ")
    except EOFError:
        raise UsageError("No password given; nothing was written.") from None


def authenticate(
    bao: Bao,
    method: str,
    username: str | None,
    state: LoginState | None,
    jwt_role: str = profile.PERSON_ROLE,
) -> str:
    """Log in with ``method``; ``bao`` then carries the token.  Returns the identity (CN)."""
    if method == "jwt":
        return _jwt_login(bao, jwt_role)
    if method == "userpass":
        user = username or os.environ.get("USER") or ""
        if not user:
            raise UsageError("Give --username for a userpass login.")
        auth = bao.write(f"auth/userpass/login/{user}", {"password": _password(user)})["auth"]
        bao.token = auth["client_token"]
        return user
    if method == "token":
        if not bao.token:
            raise UsageError("--method token needs BAO_TOKEN (or VAULT_TOKEN).")
        data = bao.read("auth/token/lookup-self")["data"]
        who = username or (data.get("meta") or {}).get("username") or data.get("display_name")
        return str(who)
    if state is None:
        raise UsageError("--method cert renews an existing login: give its --context.")
    return _cert_login(bao, state)


def _jwt_login(bao: Bao, role: str) -> str:
    """``auth/jwt/login`` with the JWT in ``$CERTKIT_BAO_JWT`` (signed by the identity
    provider OpenBao's jwt method trusts); the identity is the role's user claim, which
    OpenBao names the token after (``jwt-<name>``)."""
    token = os.environ.get(JWT_ENV, "").strip()
    if not token:
        raise UsageError(f"--method jwt needs the JWT in {JWT_ENV}.")
    auth = bao.write(f"auth/{JWT_MOUNT}/login", {"role": role, "jwt": token})["auth"]
    bao.token = auth["client_token"]
    shown = str(bao.read("auth/token/lookup-self")["data"].get("display_name") or "")
    prefix = JWT_MOUNT.replace("/", "-") + "-"
    if not shown.startswith(prefix) or shown == prefix:
        raise OperationError(f"OpenBao's jwt login gave no user name ({shown!r}); set the "
                             f"role's user_claim (auth/{JWT_MOUNT}/role/{role}).")  # fmt: skip
    return shown[len(prefix) :]


def _cert_login(bao: Bao, state: LoginState) -> str:
    """Log in with the context's current certificate (no password): the ``cert`` method."""
    info = dockercli.read_context(state.context, state.docker_config)
    bao.cert = (str(info.tls_file("cert.pem")), str(info.tls_file("key.pem")))
    try:
        auth = bao.write(f"auth/{state.cert_auth}/login", {"name": state.cert_role})["auth"]
    except Refused as e:
        raise OperationError(
            f"OpenBao no longer accepts the certificate of context {state.context!r} "
            f"({e.message.rstrip('.')}); log in again: certkit login --context {state.context}."
        ) from None
    finally:
        bao.cert = None  # the signing request goes out without it
    bao.token = auth["client_token"]
    return state.identity


def login(
    host: str | None = None,
    port: int = names.DOCKER_TLS_PORT,
    *,
    issuer: str | None = None,
    method: str = "userpass",
    username: str | None = None,
    context: str | None = None,
    mount: str = "pki-docker",
    ttl: str = profile.PERSON_TTL,
    docker_config: str | None = None,
    use: bool = False,
    jwt_role: str = profile.PERSON_ROLE,
) -> LoginResult:
    """Log in to OpenBao, get one's own certificate, write (or refresh) the docker context."""
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {method!r}.")
    name = context or (dockercli.default_name_for(host) if host else None)
    if name is None:
        raise UsageError("Give the Docker host (--host HOST) or the --context of a login.")
    state = read_state(name)
    if host is None and state is None:
        raise UsageError(f"No login for context {name!r} yet: give --host HOST the first time.")
    config_dir = paths.docker_config_dir(docker_config or (state.docker_config if state else None))
    if state is None and dockercli.context_exists(name, config_dir):
        raise UsageError(
            f"A docker context named {name!r} exists and was not made by certkit login; "
            "choose another --context."
        )
    bao = Bao(settings(issuer, recorded=state.addresses if state else None))
    identity = authenticate(bao, method, username, state, jwt_role)
    new = LoginState(
        context=name,
        identity=identity,
        host=host if host is not None else state.host if state else "",
        port=port if host is not None or state is None else state.port,
        addresses=list(bao.config.addresses),
        mount=mount if state is None or issuer else state.mount,
        docker_config=str(config_dir),
        ttl=ttl,
    )
    return _issue_and_write(bao, new, method, use)


def _issue_and_write(bao: Bao, state: LoginState, method: str, use: bool) -> LoginResult:
    from .binding import Binding
    from .issue import sign

    default = bao.read(f"{state.mount}/issuer/default/json")["data"]
    pems = [p.strip() + "\n" for p in default.get("ca_chain") or [default["certificate"]]]
    key = certs.generate_key(defaults.DEFAULT_KEY_TYPE)
    signed = sign(bao, Binding(state.addresses, state.mount, "default", []), state.role, key,
                  state.identity, None, state.ttl)  # fmt: skip
    # The chain of the issuer that signed (during a rotation the role's, not the default);
    # ca.pem trusts its root and the default's: both roots while a rotation is under way.
    chain = signed.ca_chain or pems
    signed.chain_pem = "".join(chain[:-1]).encode()
    roots = chain[-1] + ("" if pems[-1] == chain[-1] else pems[-1])
    info = dockercli.write_context(
        state.context, state.host, state.port, roots.encode(), signed.full_pem, certs.key_pem(key),
        description=f"certkit login: {state.identity} via OpenBao", force=True,
        docker_config=state.docker_config,
    )  # fmt: skip
    _save_state(state)
    cert = signed.cert
    lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400
    due = cert.not_valid_before_utc + dt.timedelta(days=defaults.renew_after_days(lifetime))
    result = LoginResult(
        state.context, state.identity, names.format_host(state.host, state.port),
        certs.serial_hex(cert), cert.not_valid_after_utc.isoformat(), due.isoformat(), method,
        renewed=method == "cert", files={f: str(info.tls_dir / f) for f in dockercli.TLS_FILES},
    )  # fmt: skip
    if use:
        dockercli.set_current_context(state.context, info.config_dir)
        result.used = True
    dockercli.ensure_config_file(info.config_dir)
    return result


def renew_due(context: str | None = None, *, force: bool = False) -> list[LoginResult]:
    """Renew every login context (or ``context``) past 2/3 of its certificate's lifetime,
    logging in with the current certificate; ``force`` renews now."""
    states = [s for s in list_states() if context is None or s.context == context]
    if context is not None and not states:
        raise UsageError(f"No login for context {context!r}: run certkit login --host HOST.")
    done = []
    for state in states:
        if force or _due(state):
            bao = Bao(settings(None, recorded=state.addresses))
            _cert_login(bao, state)
            done.append(_issue_and_write(bao, state, "cert", use=False))
    return done


def _due(state: LoginState) -> bool:
    info = dockercli.read_context(state.context, state.docker_config)
    cert = certs.load_cert(info.tls_file("cert.pem").read_bytes())
    lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400
    due = cert.not_valid_before_utc + dt.timedelta(days=defaults.renew_after_days(lifetime))
    return dt.datetime.now(dt.UTC) >= due
