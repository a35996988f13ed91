"""The OpenBao transit CA key backend (``openbao-transit://MOUNT/KEY`` URIs).

The key is made in OpenBao's transit engine, not exportable, and every
signature is a transit ``sign`` call (:mod:`certkit.openbao.transit`): no key
material is on this machine.  A rotation makes the next key beside the old one
in the same mount.  OpenBao's address and token come from ``BAO_ADDR`` /
``BAO_TOKEN`` (or ``VAULT_*``), never from the store.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from ..certs import PrivateKey
from ..defaults import KeyType
from ..errors import CertkitError, UsageError
from . import HeldKey, KeyInfo, NewKey


class TransitBackend:
    scheme = "openbao-transit"

    def create(
        self, uri: str | None, key_type: KeyType, *, encrypt: bool, passphrase: bytes | None
    ) -> NewKey:
        from ..openbao import transit

        if encrypt:
            raise UsageError("--encrypt is for key files; a transit key never leaves OpenBao.")
        assert uri is not None
        key = transit.generate_or_open(uri, key_type)
        return NewKey(key, key.uri, created=key.created)

    def open(self, held: HeldKey, cert: x509.Certificate) -> PrivateKey:
        from ..openbao import transit

        assert held.uri is not None
        return transit.open_key(held.uri, cert)

    def next_key(self, held: HeldKey, key_type: KeyType, now: dt.datetime) -> NewKey:
        from ..openbao import transit

        assert held.uri is not None
        key = transit.generate_next(held.uri, key_type, now)
        return NewKey(key, key.uri)

    def describe(self, held: HeldKey) -> KeyInfo:
        assert held.uri is not None
        return KeyInfo(
            "openbao-transit",
            held.uri,
            lives="in OpenBao's transit engine, not exportable",
            short="key in OpenBao transit",
        )

    def check(self, held: HeldKey, cert: x509.Certificate) -> tuple[bool, str]:
        assert held.uri is not None
        try:
            self.open(held, cert)
        except CertkitError as e:
            return False, e.message
        return True, f"the transit key {held.uri} is there and is this CA's key"


BACKEND = TransitBackend()
