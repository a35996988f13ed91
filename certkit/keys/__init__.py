"""CA key backends, chosen by the scheme of the key's URI (step-ca's ``kms`` model).

A CA key is held by one backend.  With no URI it is ``ca-key.pem`` in the
store (:mod:`certkit.keys.file`, maybe passphrase-encrypted); ``--key-uri
SCHEME:...`` picks the backend registered for ``SCHEME`` and the store keeps
only that URI (``ca-key.uri``).  Every backend implements :class:`KeyBackend`:
create the CA key, open it to sign, make the next key for a rotation,
describe it (``certkit ca show``) and check it (``certkit doctor``).  The key
it returns is a cryptography private-key object, so the one
:class:`certkit.ca.Signer` signs with every backend.

Adding a backend is one module that defines ``BACKEND`` plus one line in
:data:`BACKENDS`; it is imported only for a CA whose key it holds, so
``certkit --help`` never loads a backend's library.  A program (or a test)
can also :func:`register` a backend object under a scheme of its own.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import UsageError

if TYPE_CHECKING:
    import datetime as dt

    from cryptography import x509

    from ..certs import PrivateKey
    from ..defaults import KeyType

KEY_FILE = "ca-key.pem"  # the file backend's key, in the CA folder
KEY_URI_FILE = "ca-key.uri"  # any other backend: the key's URI, in the CA folder
DEFAULT_SCHEME = "file"

# scheme -> (module defining BACKEND, what --key-uri help shows).
BACKENDS: dict[str, tuple[str, str]] = {
    "file": ("certkit.keys.file", "no --key-uri: ca-key.pem in the store (--encrypt: passphrase)"),
    "pkcs11": (
        "certkit.keys.pkcs11",
        "pkcs11:token=LABEL;object=KEY?module-path=/path/module.so (HSM, YubiKey, SoftHSM; "
        "PIN: $CERTKIT_PKCS11_PIN, pin-source=file:PATH in the URI, or asked)",
    ),
    "openbao-transit": (
        "certkit.keys.openbao",
        "openbao-transit://MOUNT/KEY (a non-exportable transit key; BAO_ADDR, BAO_TOKEN)",
    ),
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_registered: dict[str, KeyBackend] = {}


@dataclass(frozen=True)
class HeldKey:
    """Where one CA's key is: its CA folder (``cas/NAME``, ``previous/``, an archive) and URI."""

    directory: Path
    uri: str | None  # the URI kept in ca-key.uri; None: the key is ca-key.pem there

    @property
    def file(self) -> Path:
        """The file in the CA folder that holds the key or its URI."""
        return self.directory / (KEY_FILE if self.uri is None else KEY_URI_FILE)


@dataclass
class NewKey:
    """A CA key a backend made (or found): the signing object and what the store keeps."""

    key: PrivateKey
    uri: str | None  # kept in ca-key.uri; None: ``pem`` is ca-key.pem
    created: bool = True  # False: an existing key named by the URI, used as is
    pem: bytes | None = None  # the file backend's ca-key.pem (encrypted when asked)

    def stored(self) -> tuple[str, bytes]:
        """The file name in the CA folder and its contents (both are 0600)."""
        if self.uri is not None:
            return KEY_URI_FILE, (self.uri + "\n").encode()
        assert self.pem is not None, "a key without a URI is kept as a PEM file"
        return KEY_FILE, self.pem


@dataclass
class KeyInfo:
    """How ``certkit ca show`` describes a CA key."""

    backend: str  # the scheme: file, pkcs11, ...
    location: str  # the key file's path, or the URI
    encrypted: bool = False  # a passphrase guards the key file
    lives: str = ""  # for people: "on a PKCS#11 token, it never leaves it" ("" for a file)
    short: str = ""  # for ``ca list``: "key on a PKCS#11 token"


class KeyBackend(Protocol):
    """What a CA key backend does; each method raises UsageError with one sentence."""

    scheme: str

    def create(
        self, uri: str | None, key_type: KeyType, *, encrypt: bool, passphrase: bytes | None
    ) -> NewKey:
        """The new CA key (or an existing one the URI names).

        ``encrypt`` is ``init-ca --encrypt``, with ``passphrase`` or asking for
        one; a backend that has no use for a passphrase refuses it.
        """
        ...

    def open(self, held: HeldKey, cert: x509.Certificate) -> PrivateKey:
        """The key that signs for ``cert`` (asks for a passphrase or a PIN if needed)."""
        ...

    def next_key(self, held: HeldKey, key_type: KeyType, now: dt.datetime) -> NewKey:
        """The next CA's key for ``rotate-ca start``; the old one is left as it is."""
        ...

    def describe(self, held: HeldKey) -> KeyInfo: ...

    def check(self, held: HeldKey, cert: x509.Certificate) -> tuple[bool, str]:
        """For ``certkit doctor``, without asking anything: (usable, one sentence)."""
        ...


def register(scheme: str, backend: KeyBackend) -> None:
    """Make ``backend`` hold the keys whose URI starts with ``scheme:``."""
    _registered[scheme.lower()] = backend


def unregister(scheme: str) -> None:
    """Forget a backend :func:`register` added (a built-in one loads again when used)."""
    _registered.pop(scheme.lower(), None)


def scheme_of(uri: str | None) -> str:
    """The scheme that picks the backend of ``uri`` (``file`` for no URI)."""
    if uri is None:
        return DEFAULT_SCHEME
    m = _SCHEME.match(uri)
    if m is None:
        raise UsageError(
            f"{uri!r} is not a key URI: it must start with a scheme "
            f"({', '.join(s + ':' for s in schemes() if s != DEFAULT_SCHEME)})."
        )
    return m.group(1).lower()


def schemes() -> list[str]:
    """Every scheme a key URI may have."""
    return sorted({*BACKENDS, *_registered})


def backend_for(uri: str | None) -> KeyBackend:
    """The backend that holds the key ``uri`` names (the file backend for None)."""
    scheme = scheme_of(uri)
    if scheme not in _registered:
        if scheme not in BACKENDS:
            raise UsageError(
                f"No CA key backend for {scheme}: URIs; certkit knows {', '.join(schemes())}."
            )
        module = importlib.import_module(BACKENDS[scheme][0])
        _registered[scheme] = module.BACKEND
    return _registered[scheme]


def held_in(directory: Path) -> HeldKey:
    """The key of the CA folder ``directory``: the URI in its ``ca-key.uri``, else its file."""
    from .. import files

    text = files.read_text(directory / KEY_URI_FILE)
    return HeldKey(directory, text.strip() if text is not None else None)


def backend_of(held: HeldKey) -> KeyBackend:
    return backend_for(held.uri)
