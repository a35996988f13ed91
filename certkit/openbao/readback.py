"""Read back what an OpenBao-backed CA issued: every certificate the mount keeps.

People's logins never reach the admin's inventory (they run on laptops); OpenBao keeps
each certificate it signed (the roles set ``no_store=false``), so the mount is the list
of who holds what.  :func:`issued` lists them (``certkit team list``); ``list`` and
``status`` can show the same rows for an OpenBao-backed CA.
"""

from __future__ import annotations

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


def issued(store: CAStore, *, include_expired: bool = False) -> list[IssuedCert]:
    """The leaves the mount of ``store``'s CA holds, newest last (needs a token that may
    list ``<mount>/certs``: the admin's)."""
    binding = require_binding(store)
    bao = open_bao(binding)
    listed = bao.request("LIST", f"{binding.mount}/certs") or {}
    out = []
    for serial in (listed.get("data") or {}).get("keys", []):
        data = bao.read(f"{binding.mount}/cert/{serial}")["data"]
        cert = certs.load_cert(str(data["certificate"]).encode())
        kind = _kind(cert)
        if kind == "ca" or (certs.days_left(cert) <= 0 and not include_expired):
            continue
        revoked = bool(data.get("revocation_time"))
        out.append(IssuedCert(str(serial), kind, certs.common_name(cert),
                              cert.not_valid_after_utc.isoformat(), revoked))  # fmt: skip
    return sorted(out, key=lambda c: c.not_after)
