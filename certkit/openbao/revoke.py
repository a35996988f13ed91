"""Someone leaves: revoke every unexpired certificate OpenBao issued to her name.

OpenBao lists issued serials (``<mount>/certs``); each certificate is read back and
revoked when its common name is the person's.  The CRL and the OCSP responder then say
so, and the ``cert`` auth method gets the new CRL (:func:`push_crl`): her renewal is refused.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from .. import certs
from ..store import CAStore
from .binding import require_binding
from .client import Bao
from .issue import open_bao


def revoke_identity(store: CAStore, identity: str) -> list[str]:
    """The serials revoked (colon-separated hex, as OpenBao names them)."""
    binding = require_binding(store)
    bao = open_bao(binding)
    listed = bao.request("LIST", f"{binding.mount}/certs") or {}
    now = dt.datetime.now(dt.UTC)
    revoked = []
    for serial in (listed.get("data") or {}).get("keys", []):
        data = bao.read(f"{binding.mount}/cert/{serial}")["data"]
        if data.get("revocation_time"):
            continue
        cert = certs.load_cert(str(data["certificate"]).encode())
        if certs.common_name(cert) != identity or cert.not_valid_after_utc <= now or _is_ca(cert):
            continue
        bao.write(f"{binding.mount}/revoke", {"serial_number": serial})
        revoked.append(str(serial))
    push_crl(bao, binding.mount, binding.auth.get("cert", "cert"))
    return revoked


def push_crl(bao: Bao, mount: str, cert_auth: str = "cert") -> None:
    """Give the ``cert`` auth method the mount's current CRL: a revoked certificate logs
    in no more (no OCSP round trip from OpenBao to itself on every renewal)."""
    crl = bao.read(f"{mount}/cert/crl")["data"]["certificate"]
    bao.write(f"auth/{cert_auth}/crls/certkit-{mount}", {"crl": crl})


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
