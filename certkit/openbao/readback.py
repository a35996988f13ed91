"""Read back what an OpenBao-backed CA issued: every certificate the mount keeps.

People's logins never reach the admin's inventory (they run on laptops); OpenBao keeps
each certificate it signed (the roles set ``no_store=false``), so the mount is the list
of who holds what.  :func:`issued` lists them (``certkit team list``); ``list`` and
``status`` can show the same rows for an OpenBao-backed CA.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .. import certs
from ..store import CAStore
from .binding import require_binding
from .issue import open_bao


@dataclass
class IssuedCert:
    """One certificate the mount holds."""

    serial: str
    kind: str  # server, person, client
    name: str
    not_after: str
    revoked: bool
    subject: str = ""
    revoked_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _kind(cert: x509.Certificate) -> str:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "ca"
    if ExtendedKeyUsageOID.SERVER_AUTH in eku:
        return "server"
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return "person" if any(a.value == "certkit-person" for a in ous) else "client"


def issued(
    store: CAStore, *, include_expired: bool = False, retry_seconds: float | None = None
) -> list[IssuedCert]:
    """The leaves the mount of ``store``'s CA holds, newest last (needs a token that may
    list ``<mount>/certs``: the admin's).  ``retry_seconds``: how long to try the nodes."""
    binding = require_binding(store)
    bao = open_bao(binding)
    if retry_seconds is not None:
        bao.retry_seconds = retry_seconds
    listed = bao.request("LIST", f"{binding.mount}/certs") or {}
    out = []
    for serial in (listed.get("data") or {}).get("keys", []):
        data = bao.read(f"{binding.mount}/cert/{serial}")["data"]
        cert = certs.load_cert(str(data["certificate"]).encode())
        kind = _kind(cert)
        if kind == "ca" or (certs.days_left(cert) <= 0 and not include_expired):
            continue
        when = int(data.get("revocation_time") or 0)
        at = dt.datetime.fromtimestamp(when, dt.UTC).isoformat() if when else None
        out.append(IssuedCert(str(serial), kind, certs.common_name(cert),
                              cert.not_valid_after_utc.isoformat(), bool(when),
                              cert.subject.rfc4514_string(), at))  # fmt: skip
    return sorted(out, key=lambda c: c.not_after)
