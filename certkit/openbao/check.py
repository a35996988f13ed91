"""Doctor for an OpenBao-backed CA: the mount, its issuer, certkit's roles, policies, login.

Each finding is ``(level, sentence)``, level ``FAIL`` or ``WARN``; none means the profile
is the one ``init-ca --issuer openbao`` wrote.  Reads only (an admin token, or one that
may read the mount's roles and ``sys/policies``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import certs
from ..store import CAStore
from . import profile
from .binding import Binding, require_binding
from .client import Bao, Missing
from .issue import open_bao

Finding = tuple[str, str]
ISSUER_WARN_DAYS = 90


def check(store: CAStore, retry_seconds: float | None = None) -> list[Finding]:
    """Every way the binding of ``store`` differs from certkit's profile (``retry_seconds``:
    how long to try the nodes; default the client's)."""
    binding = require_binding(store)
    bao = open_bao(binding)
    if retry_seconds is not None:
        bao.retry_seconds = retry_seconds
    found: list[Finding] = []
    mounts = bao.read("sys/mounts")
    if f"{binding.mount}/" not in (mounts.get("data") or mounts):
        return [("FAIL", f"OpenBao has no mount {binding.mount!r} any more.")]
    found += _issuer(bao, binding)
    for kind, eku in (("server", "ServerAuth"), ("client", "ClientAuth"), ("person", "ClientAuth")):
        found += _role(bao, binding, binding.roles.for_kind(kind), eku, kind == "person")
    for policy in (profile.ADMIN_POLICY, profile.PERSON_POLICY):
        if not _exists(bao, f"sys/policies/acl/{policy}"):
            found.append(("FAIL", f"The policy {policy!r} is missing: run init-ca again."))
    if not _exists(bao, f"auth/{binding.auth.get('cert', 'cert')}/certs/{profile.CERT_AUTH_ROLE}"):
        found.append(("WARN", "The cert login for renewal is missing: people must log in again."))
    return found


def _exists(bao: Bao, path: str) -> bool:
    try:
        bao.read(path)
    except Missing:
        return False
    return True


def _issuer(bao: Bao, binding: Binding) -> list[Finding]:
    data = bao.read(f"{binding.mount}/config/issuers").get("data") or {}
    out: list[Finding] = []
    if data.get("default") != binding.issuer_id:
        out.append(("WARN", f"The mount's default issuer is no longer {binding.issuer_id}: "
                            "run init-ca again to record the new one."))  # fmt: skip
    pem = bao.read(f"{binding.mount}/issuer/{binding.issuer_id}")["data"]["certificate"]
    left = certs.days_left(certs.load_cert(str(pem).encode()), dt.datetime.now(dt.UTC))
    if left < ISSUER_WARN_DAYS:
        out.append(("WARN", f"The issuer ends in {left:.0f} days: rotate it in OpenBao."))
    return out


def _role(bao: Bao, binding: Binding, role: str, eku: str, person: bool) -> list[Finding]:
    try:
        data: dict[str, Any] = bao.read(f"{binding.mount}/roles/{role}")["data"]
    except Missing:
        return [("FAIL", f"The role {role!r} is missing: run init-ca --issuer openbao again.")]
    out: list[Finding] = []
    usage = sorted(data.get("key_usage") or [])
    if usage != ["DigitalSignature"]:
        out.append(("FAIL", f"The role {role!r} puts {', '.join(usage)} in key usage: "
                            "EC keys allow DigitalSignature only (pkilint error)."))  # fmt: skip
    if data.get("ext_key_usage") != [eku]:
        out.append(("FAIL", f"The role {role!r} gives EKU {data.get('ext_key_usage')}, not {eku}."))
    if person and (data.get("allow_any_name") or not data.get("allowed_domains_template")):
        out.append(("FAIL", f"The role {role!r} lets a person ask for any name: it must "
                            "allow only her login name (an identity template)."))  # fmt: skip
    return out
