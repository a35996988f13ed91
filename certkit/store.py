"""The on-disk CA store: named CAs, their keys, and the inventory of what they issued.

Layout under the store root (``CERTKIT_HOME`` or the platform data dir)::

    cas/<name>/ca.pem           CA certificate (0644)
    cas/<name>/ca-key.pem       CA private key, maybe encrypted (0600)
    cas/<name>/ca-key.uri       instead of ca-key.pem: the URI of the key a backend
                                holds (pkcs11:..., see certkit.keys), no secret (0600)
    cas/<name>/openbao.json     instead of a key: the CA issues through an OpenBao PKI mount
                                (0600, certkit/openbao/binding.py); ca.pem is its root
    cas/<name>/bundle.pem       trust bundle while a CA rotation is under way
                                (new CA certificate first, then the previous one)
    cas/<name>/previous/        the previous CA (ca.pem, ca-key.pem or .uri) during a rotation
    cas/<name>/retired/<UTC timestamp>-<fingerprint prefix>/
                                each CA retired by ``rotate-ca finish`` (kept, never deleted)
    cas/<name>/inventory.sqlite3
                                everything this CA issued (see :mod:`certkit.inventorydb`)
    cas/<name>/issued/<serial>/ cert.pem + key.pem of each issued certificate
    cas/<name>/.lock            serialises writers of the CA files (flock)

Directories are 0700.  Inventory writers work in SQLite transactions
(``BEGIN IMMEDIATE``), so concurrent certkit processes neither lose records
nor reuse a serial.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from . import files, inventorydb
from .errors import UsageError
from .inventorydb import Inventory as Inventory  # re-exported: callers ask the store
from .keys import KEY_FILE, backend_of, held_in
from .keys import KEY_URI_FILE as KEY_URI_FILE  # re-exported
from .paths import DEFAULT_CA, store_root
from .records import Record as Record  # re-exported

if TYPE_CHECKING:
    from cryptography import x509

    from .certs import PrivateKey

PASSPHRASE_ENV = "CERTKIT_CA_PASSPHRASE"
OPENBAO_FILE = "openbao.json"
_CA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # fullmatch: "$" takes "a\n"


def check_ca_name(name: str) -> str:
    if not _CA_NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a valid CA name: use letters, digits, '_' and '-' "
            "(starting with a letter or digit)."
        )
    return name


def key_reference(directory: Path) -> str | None:
    """The key URI in ``directory/ca-key.uri`` (a CA dir, ``previous/``, an archive), or None."""
    return held_in(directory).uri


def get_passphrase(confirm: bool = False) -> bytes:
    """The CA passphrase: ``$CERTKIT_CA_PASSPHRASE``, else asked on the terminal (hidden)."""
    # The bytes as the environment holds them: a passphrase in another encoding than
    # UTF-8 (a Latin-1 shell) is still that passphrase, never an encoding error.
    env = os.environb.get(PASSPHRASE_ENV.encode())
    if env:
        return env
    import sys

    if not sys.stdin.isatty():
        raise UsageError(
            f"The CA key needs a passphrase: set {PASSPHRASE_ENV} or run on a terminal."
        )
    import getpass

    try:
        first = getpass.getpass("CA passphrase: ")
        if not first:
            raise UsageError("The passphrase must not be empty.")
        if confirm and getpass.getpass("Repeat the passphrase: ") != first:
            raise UsageError("The two passphrases differ; nothing was written.")
    except EOFError:  # Ctrl-D at the prompt
        raise UsageError("No passphrase given; nothing was written.") from None
    return first.encode("utf-8", "surrogateescape")  # the terminal's bytes, as typed


class CAStore:
    """One named CA in the store."""

    def __init__(self, name: str = DEFAULT_CA, root: Path | None = None) -> None:
        self.name = check_ca_name(name)
        self.root = root or store_root()
        self.dir = self.root / "cas" / name

    # ---- paths
    @property
    def cert_path(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def key_path(self) -> Path:
        return self.dir / KEY_FILE

    @property
    def key_uri_path(self) -> Path:
        """The URI of the CA key when a backend holds it (not a file in the store)."""
        return self.dir / KEY_URI_FILE

    def key_uri(self) -> str | None:
        """The URI of the CA key, or None when the key is ``ca-key.pem``."""
        return key_reference(self.dir)

    @property
    def bundle_path(self) -> Path:
        return self.dir / "bundle.pem"

    @property
    def previous_dir(self) -> Path:
        """The CA being replaced, from ``rotate-ca start`` until ``rotate-ca finish``."""
        return self.dir / "previous"

    @property
    def retired_dir(self) -> Path:
        """Where ``rotate-ca finish`` archives replaced CAs, one timestamped dir each."""
        return self.dir / "retired"

    @property
    def inventory_path(self) -> Path:
        """The inventory database (``inventory.json`` before it, migrated on first open)."""
        return self.dir / inventorydb.DB_NAME

    @property
    def lock_path(self) -> Path:
        return self.dir / ".lock"

    def issued_dir(self, serial: str) -> Path:
        return self.dir / "issued" / serial

    def issued_pair(self, serial: str) -> tuple[bytes, bytes] | None:
        """The certificate and key the store keeps for ``serial`` (None: not kept here).

        The one reader of ``issued/<serial>/``: renewal, setup and the install record
        ask it rather than opening the files themselves.
        """
        d = self.issued_dir(serial)
        try:
            return (d / "cert.pem").read_bytes(), (d / "key.pem").read_bytes()
        except OSError:
            return None

    def rotation_under_way(self) -> bool:
        """True between ``rotate-ca start`` and ``rotate-ca finish``."""
        return (self.previous_dir / "ca.pem").exists()

    def exists(self) -> bool:
        key = self.key_path, self.key_uri_path, self.dir / OPENBAO_FILE
        return self.cert_path.exists() and any(p.exists() for p in key)

    def require(self) -> CAStore:
        if not self.exists():
            hint = "certkit init-ca" + ("" if self.name == DEFAULT_CA else f" --ca {self.name}")
            raise UsageError(f"No CA named {self.name!r} in {self.root}; create it with `{hint}`.")
        return self

    # ---- reading
    def cert_pem(self) -> bytes:
        try:
            return self.require().cert_path.read_bytes()
        except OSError as e:
            raise UsageError(f"Cannot read {self.cert_path}: {e.strerror}.") from None

    def load_cert(self) -> x509.Certificate:
        from .certs import load_cert

        try:
            return load_cert(self.cert_pem())
        except UsageError:
            raise UsageError(f"The CA certificate {self.cert_path} is corrupted.") from None

    def key_encrypted(self) -> bool:
        """True when a passphrase guards the CA key (a key file made with --encrypt)."""
        if (self.dir / OPENBAO_FILE).exists():
            return False  # the CA issues through OpenBao: no key here, no passphrase
        held = held_in(self.dir)
        return backend_of(held).describe(held).encrypted

    def load_key(self) -> PrivateKey:
        """The CA key as its backend opens it (asks for a passphrase or a PIN if needed)."""
        held = held_in(self.require().dir)
        return backend_of(held).open(held, self.load_cert())

    def trust_bundle_pem(self) -> bytes:
        """What servers and clients must trust: ``bundle.pem`` in a rotation, else ``ca.pem``."""
        if self.bundle_path.exists():
            return self.bundle_path.read_bytes()
        return self.cert_pem()

    # ---- writing
    def ensure_dirs(self) -> None:
        try:
            files.ensure_dir(self.root)
            files.ensure_dir(self.root / "cas")
            files.ensure_dir(self.dir)
        except OSError as e:
            raise UsageError(
                f"The certkit store cannot be created at {e.filename or self.root} "
                f"({e.strerror}): set CERTKIT_HOME to a writable directory."
            ) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.ensure_dirs()
        with files.locked(self.lock_path):
            yield

    def inventory(self) -> Inventory:
        """The inventory through a read-only connection (a consistent view per query)."""
        return inventorydb.reader(self.dir)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Inventory]:
        """A ``BEGIN IMMEDIATE`` transaction on the inventory, committed when the block ends."""
        self.ensure_dirs()
        with inventorydb.transaction(self.dir) as inv:
            yield inv


def list_ca_names(root: Path | None = None) -> list[str]:
    base = (root or store_root()) / "cas"
    if not base.is_dir():
        return []
    return sorted(
        p.name
        for p in base.iterdir()
        if p.is_dir() and (p / "ca.pem").exists() and "." not in p.name
    )
