"""The PKCS#11 CA key backend: a key on an HSM, a YubiKey or SoftHSM (``pkcs11:`` URIs).

The token work is :mod:`certkit.pkcs11`; this module says what it means for
a CA: the key is made on the token and never leaves it, the store keeps only
its RFC 7512 URI, a rotation makes the next key on the same token, and the
PIN (not a passphrase) guards it.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from .. import pkcs11
from ..certs import PrivateKey
from ..defaults import KeyType
from ..errors import UsageError
from . import HeldKey, KeyInfo, NewKey


class PKCS11Backend:
    scheme = "pkcs11"

    def create(
        self, uri: str | None, key_type: KeyType, *, encrypt: bool, passphrase: bytes | None
    ) -> NewKey:
        if encrypt:
            raise UsageError("--encrypt is for key files; a token key is guarded by its PIN.")
        assert uri is not None
        key = pkcs11.generate_or_open(uri, key_type)
        return NewKey(key, key.uri, created=key.created)

    def open(self, held: HeldKey, cert: x509.Certificate) -> PrivateKey:
        assert held.uri is not None
        return pkcs11.open_key(held.uri, cert)

    def next_key(self, held: HeldKey, key_type: KeyType, now: dt.datetime) -> NewKey:
        assert held.uri is not None
        key = pkcs11.generate_next(held.uri, key_type, now)
        return NewKey(key, key.uri)

    def describe(self, held: HeldKey) -> KeyInfo:
        assert held.uri is not None
        return KeyInfo(
            "pkcs11",
            held.uri,
            lives="on a PKCS#11 token, it never leaves it",
            short="key on a PKCS#11 token",
        )

    def check(self, held: HeldKey, cert: x509.Certificate) -> tuple[bool, str]:
        assert held.uri is not None
        return pkcs11.check_token(held.uri)


BACKEND = PKCS11Backend()
