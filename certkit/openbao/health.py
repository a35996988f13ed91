"""``doctor``'s OpenBao checks: the mount, certkit's profile on it, the token, login contexts.

Called through :func:`certkit.openbao.readout.doctor_checks` only when the store has an
OpenBao-backed CA or a login context.  Each check is one line: ``openbao`` (the mount
answers), ``openbao-profile`` (roles, policies and the cert login as ``init-ca`` wrote
them: :mod:`.check`), ``openbao-token`` (BAO_TOKEN's remaining lifetime), ``login``
(each ``certkit login`` context: valid, due for renewal, or ended).
"""

from __future__ import annotations

import datetime as dt

from .. import certs, defaults, dockercli
from ..checks import FAIL, PASS, WARN, Checklist
from ..errors import CertkitError
from ..store import CAStore
from .binding import require_binding
from .client import Bao, Missing, Refused, settings

READ_RETRY_SECONDS = 2.0
TOKEN_WARN_SECONDS = 3600  # a token that ends within the hour: the next issuance may fail


def _bao(addresses: list[str]) -> Bao:
    bao = Bao(settings(None, recorded=addresses))
    bao.retry_seconds = READ_RETRY_SECONDS
    return bao


def ca_checks(report: Checklist, store: CAStore) -> None:
    """The mount answers (unauthenticated ``<mount>/cert/ca``); then certkit's profile."""
    from .check import check

    binding = require_binding(store)
    where = f"CA {store.name!r}, mount {binding.mount}"
    try:
        _bao(binding.addresses).read(f"{binding.mount}/cert/ca")
    except Missing:
        report.add("openbao", FAIL, f"{where}: OpenBao has no such mount any more; "
                                    "run certkit init-ca --issuer openbao again.")  # fmt: skip
        return
    except CertkitError as e:
        report.add("openbao", FAIL, f"{where}: {e.message}")
        return
    report.add("openbao", PASS, f"{where}: answers at {', '.join(binding.addresses)}")
    try:
        found = check(store, retry_seconds=READ_RETRY_SECONDS)
    except Refused as e:
        report.add("openbao-profile", WARN, f"{where}: roles not read ({e.message.rstrip('.')}); "
                                            "run doctor with the admin's BAO_TOKEN.")  # fmt: skip
        return
    for level, message in found:
        report.add("openbao-profile", FAIL if level == "FAIL" else WARN, f"{where}: {message}")
    if not found:
        report.add("openbao-profile", PASS, f"{where}: issuer, roles, policies and the cert "
                                            "login are certkit's profile")  # fmt: skip


def token_check(report: Checklist) -> None:
    """BAO_TOKEN (when set): still valid, and for how long."""
    config = None
    try:
        config = settings(None, recorded=_first_addresses())
    except CertkitError:
        return
    if not config.token:
        return
    bao = Bao(config)
    bao.retry_seconds = READ_RETRY_SECONDS
    try:
        data = bao.read("auth/token/lookup-self")["data"]
    except Refused:
        report.add("openbao-token", FAIL, "BAO_TOKEN is not valid any more (expired or "
                                          "revoked): log in to OpenBao again.")  # fmt: skip
        return
    except CertkitError as e:
        report.add("openbao-token", WARN, f"BAO_TOKEN not checked: {e.message}")
        return
    ttl = int(data.get("ttl") or 0)
    if ttl == 0:
        report.add("openbao-token", PASS, "BAO_TOKEN does not expire")
    elif ttl < TOKEN_WARN_SECONDS:
        report.add("openbao-token", WARN, f"BAO_TOKEN ends in {ttl // 60} min: renew it "
                                          "(bao token renew) or log in again.")  # fmt: skip
    else:
        report.add("openbao-token", PASS, f"BAO_TOKEN valid for {ttl / 3600:.1f} h more")


def _first_addresses() -> list[str]:
    from .readout import bound_cas

    for name in bound_cas(None):
        return require_binding(CAStore(name)).addresses
    return []


def login_checks(report: Checklist) -> None:
    """Each ``certkit login`` context: valid, past 2/3 (renew), or ended (log in again)."""
    from .login import list_states

    now = dt.datetime.now(dt.UTC)
    for state in list_states():
        try:
            info = dockercli.read_context(state.context, state.docker_config)
            cert = certs.load_cert(info.tls_file("cert.pem").read_bytes())
        except CertkitError as e:
            report.add("login", WARN, f"context {state.context!r}: {e.message}")
            continue
        life = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400
        due = cert.not_valid_before_utc + dt.timedelta(days=defaults.renew_after_days(life))
        end = cert.not_valid_after_utc.isoformat()[:16]
        who = f"context {state.context!r} ({state.identity})"
        if now >= cert.not_valid_after_utc:
            report.add(
                "login", WARN, f"{who} ended on {end}: certkit login --context {state.context}"
            )
        elif now >= due:
            report.add(
                "login", WARN, f"{who} is past 2/3 of its lifetime: certkit renew --contexts"
            )
        else:
            report.add(
                "login", PASS, f"{who} valid until {end}, renewed from {due.isoformat()[:16]}"
            )
