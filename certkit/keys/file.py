"""The default CA key backend: ``ca-key.pem`` in the CA folder, maybe passphrase-encrypted.

The passphrase comes from ``$CERTKIT_CA_PASSPHRASE`` or the terminal
(:func:`certkit.store.get_passphrase`); the next key of a rotation is
encrypted with the same one, so one passphrase opens both CAs.
"""

from __future__ import annotations

import datetime as dt
import os
import stat

from cryptography import x509

from .. import certs
from ..certs import PrivateKey
from ..defaults import KeyType
from ..errors import PassphraseError, UsageError
from . import HeldKey, KeyInfo, NewKey


class FileBackend:
    scheme = "file"

    def create(
        self, uri: str | None, key_type: KeyType, *, encrypt: bool, passphrase: bytes | None
    ) -> NewKey:
        if uri is not None:
            raise UsageError(
                "A key file is ca-key.pem in the store: drop --key-uri to keep the key there."
            )
        if encrypt and passphrase is None:
            from ..store import get_passphrase

            passphrase = get_passphrase(confirm=True)
        key = certs.generate_key(key_type)
        return NewKey(key, None, pem=certs.key_pem(key, passphrase if encrypt else None))

    def open(self, held: HeldKey, cert: x509.Certificate) -> PrivateKey:
        data = _read(held)
        passphrase = _passphrase() if certs.is_encrypted_pem(data) else None
        try:
            return certs.load_key(data, passphrase)
        except PassphraseError:
            raise
        except UsageError:
            raise UsageError(f"The CA key {held.file} is corrupted.") from None

    def next_key(self, held: HeldKey, key_type: KeyType, now: dt.datetime) -> NewKey:
        data = _read(held)
        passphrase: bytes | None = None
        if certs.is_encrypted_pem(data):
            passphrase = _passphrase()
            certs.load_key(data, passphrase)  # a wrong passphrase stops here
        key = certs.generate_key(key_type)
        return NewKey(key, None, pem=certs.key_pem(key, passphrase))

    def describe(self, held: HeldKey) -> KeyInfo:
        return KeyInfo("file", str(held.file), encrypted=certs.is_encrypted_pem(_read(held)))

    def check(self, held: HeldKey, cert: x509.Certificate) -> tuple[bool, str]:
        if not held.file.exists():
            return True, f"{held.file} is not here (kept offline?): put it back to sign"
        try:
            data = _read(held)
            mode = stat.S_IMODE(os.stat(held.file).st_mode)
        except (UsageError, OSError) as e:
            return False, e.message if isinstance(e, UsageError) else str(e)
        if mode & 0o077:
            return False, f"{held.file} is mode {mode:04o}: others can read the CA key (chmod 600)"
        if certs.is_encrypted_pem(data):
            return True, f"{held.file} is there, mode {mode:04o}, encrypted (passphrase not tried)"
        try:
            key = certs.load_key(data)
        except UsageError:
            return False, f"{held.file} is not a readable private key"
        if not certs.key_matches_cert(key, cert):
            return False, f"{held.file} is not the key of the CA certificate beside it"
        return True, f"{held.file} is there, mode {mode:04o}, and belongs to the CA certificate"


def _read(held: HeldKey) -> bytes:
    try:
        return held.file.read_bytes()
    except OSError as e:
        raise UsageError(f"Cannot read {held.file}: {e.strerror}.") from None


def _passphrase() -> bytes:
    from ..store import get_passphrase

    return get_passphrase()


BACKEND = FileBackend()
