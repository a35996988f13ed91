"""The on-disk CA store: named CAs, their keys, and the inventory of what they issued.

Layout under the store root (``CERTKIT_HOME`` or the platform data dir)::

    cas/<name>/ca.pem           CA certificate (0644)
    cas/<name>/ca-key.pem       CA private key, maybe encrypted (0600)
    cas/<name>/ca-key.uri       instead of ca-key.pem: where the key is on a PKCS#11
                                token, an RFC 7512 URI without PIN (0600)
    cas/<name>/bundle.pem       trust bundle while a CA rotation is under way
                                (new CA certificate first, then the previous one)
    cas/<name>/previous/        the previous CA (ca.pem, ca-key.pem or .uri) during a rotation
    cas/<name>/retired/<UTC timestamp>-<fingerprint prefix>/
                                each CA retired by ``rotate-ca finish`` (kept, never deleted)
    cas/<name>/inventory.json   everything this CA issued
    cas/<name>/issued/<serial>/ cert.pem + key.pem of each issued certificate
    cas/<name>/.lock            serialises writers (flock)

Directories are 0700.  Writers hold the lock for the whole
read-modify-write of the inventory, so concurrent certkit processes neither
lose records nor reuse a serial.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import files
from .errors import PassphraseError, UsageError
from .origins import CAOrigin, LeafOrigin, Origin, origin_from_json, origin_to_json
from .paths import DEFAULT_CA, store_root

if TYPE_CHECKING:
    from cryptography import x509

    from .certs import PrivateKey

PASSPHRASE_ENV = "CERTKIT_CA_PASSPHRASE"
KEY_URI_FILE = "ca-key.uri"
_CA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
INVENTORY_VERSION = 2  # 2: typed origins (1: an untyped options dictionary)


def check_ca_name(name: str) -> str:
    if not _CA_NAME.match(name):
        raise UsageError(
            f"{name!r} is not a valid CA name: use letters, digits, '_' and '-' "
            "(starting with a letter or digit)."
        )
    return name


@dataclass
class Record:
    """One certificate in the inventory.

    ``name`` is what the user calls it: the host of a server certificate, the
    context name of a client, the CI name.  ``installed`` lists every path the
    certificate (or its bundle) was written to.  ``origin`` keeps what is
    needed to issue it again the same way (see :mod:`certkit.origins`).
    """

    serial: str
    kind: str
    name: str
    subject: str
    sans: list[str]
    not_before: str
    not_after: str
    fingerprint: str
    key_type: str
    issuer_fingerprint: str
    created: str
    installed: list[str] = field(default_factory=list)
    origin: Origin = field(default_factory=CAOrigin)
    superseded_by: str | None = None

    @property
    def not_after_dt(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.not_after)

    def days_left(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after_dt - now).total_seconds() / 86400

    @property
    def lifetime_days(self) -> float:
        """The whole validity, notBefore to notAfter, in days."""
        span = self.not_after_dt - dt.datetime.fromisoformat(self.not_before)
        return span.total_seconds() / 86400

    def due_within(self, days: float, now: dt.datetime | None = None) -> bool:
        """True when it expires within ``days`` (``status`` and ``renew`` share this rule).

        CI certificates are short-lived by design (30 days by default): against
        a window as long as their whole life they would always be due, and
        renewed on every run, so they are due once a third of their validity
        is left, when that comes later than the window.
        """
        window = min(days, self.lifetime_days / 3) if self.kind == "ci" else days
        return self.days_left(now) <= window

    def status(self, warn_days: float = 30, now: dt.datetime | None = None) -> str:
        """``superseded``, ``expired``, ``expiring`` (see :meth:`due_within`) or ``valid``."""
        if self.superseded_by:
            return "superseded"
        if self.days_left(now) <= 0:
            return "expired"
        if self.due_within(warn_days, now):
            return "expiring"
        return "valid"

    @property
    def leaf_origin(self) -> LeafOrigin:
        """The origin of a leaf certificate (server, client or CI)."""
        if isinstance(self.origin, CAOrigin):
            raise TypeError(f"record {self.serial} is a CA, not a leaf certificate")
        return self.origin

    def to_dict(self) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "origin"}
        data["origin"] = origin_to_json(self.origin)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record as :meth:`to_dict` wrote it, or as inventory version 1 did (``options``)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        kind = str(data["kind"])
        if isinstance(data.get("origin"), dict):
            known["origin"] = origin_from_json(kind, data["origin"])
        else:
            known["origin"] = origin_from_json(kind, data.get("options") or {}, legacy=True)
        return cls(**known)


class Inventory:
    """The records of one CA, loaded inside :meth:`CAStore.transaction`."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records

    def serials(self) -> set[str]:
        return {r.serial for r in self.records}

    def add(self, record: Record) -> None:
        if record.serial in self.serials():
            raise RuntimeError(f"serial {record.serial} already in the inventory")
        self.records.append(record)

    def get(self, serial: str) -> Record | None:
        return next((r for r in self.records if r.serial == serial), None)

    def newest_active(self) -> dict[tuple[str, str], Record]:
        """The newest not-superseded record of each (kind, name): the one in use.

        Re-running ``issue-server`` or ``client-context --force`` replaces a
        certificate without marking the old record, so only the newest counts.
        """
        newest: dict[tuple[str, str], Record] = {}
        for r in self.records:
            if r.superseded_by:
                continue
            cur = newest.get((r.kind, r.name))
            if cur is None or (r.created, r.not_after) > (cur.created, cur.not_after):
                newest[(r.kind, r.name)] = r
        return newest

    def find(
        self, kind: str | None = None, name: str | None = None, active: bool = False
    ) -> list[Record]:
        return [
            r
            for r in self.records
            if (kind is None or r.kind == kind)
            and (name is None or r.name == name)
            and (not active or r.superseded_by is None)
        ]


def key_reference(directory: Path) -> str | None:
    """The PKCS#11 URI in ``directory/ca-key.uri`` (a CA dir, ``previous/``, an archive)."""
    text = files.read_text(directory / KEY_URI_FILE)
    return text.strip() if text is not None else None


def get_passphrase(confirm: bool = False) -> bytes:
    """The CA passphrase: ``$CERTKIT_CA_PASSPHRASE``, else asked on the terminal (hidden)."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env.encode()
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
    return first.encode()


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
        return self.dir / "ca-key.pem"

    @property
    def key_uri_path(self) -> Path:
        """The reference to a key on a PKCS#11 token, when the key is not a file."""
        return self.dir / KEY_URI_FILE

    def key_uri(self) -> str | None:
        """The PKCS#11 URI of the CA key, or None when the key is ``ca-key.pem``."""
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
        return self.dir / "inventory.json"

    @property
    def lock_path(self) -> Path:
        return self.dir / ".lock"

    def issued_dir(self, serial: str) -> Path:
        return self.dir / "issued" / serial

    def rotation_under_way(self) -> bool:
        """True between ``rotate-ca start`` and ``rotate-ca finish``."""
        return (self.previous_dir / "ca.pem").exists()

    def exists(self) -> bool:
        return self.cert_path.exists() and (self.key_path.exists() or self.key_uri_path.exists())

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
        from .certs import is_encrypted_pem

        if self.key_uri_path.exists():
            return False  # on a token: a PIN guards it, not a passphrase
        return is_encrypted_pem(self.key_path.read_bytes())

    def load_key(self) -> PrivateKey:
        """The CA private key, asking for the passphrase when it is encrypted."""
        from .certs import is_encrypted_pem, load_key

        self.require()
        try:
            data = self.key_path.read_bytes()
        except OSError as e:
            raise UsageError(f"Cannot read {self.key_path}: {e.strerror}.") from None
        passphrase = get_passphrase() if is_encrypted_pem(data) else None
        try:
            return load_key(data, passphrase)
        except PassphraseError:
            raise
        except UsageError:
            raise UsageError(f"The CA key {self.key_path} is corrupted.") from None

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

    def _read_inventory(self) -> Inventory:
        text = files.read_text(self.inventory_path)
        if text is None:
            return Inventory([])
        try:
            data = json.loads(text)
            return Inventory([Record.from_dict(r) for r in data["records"]])
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"The inventory {self.inventory_path} is corrupted.") from None

    def inventory(self) -> Inventory:
        """A read-only snapshot of the inventory (no lock needed: writes are atomic)."""
        return self._read_inventory()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Inventory]:
        """Lock, load the inventory, let the block change it, save it atomically."""
        with self.lock():
            inv = self._read_inventory()
            yield inv
            payload = {"version": INVENTORY_VERSION, "records": [r.to_dict() for r in inv.records]}
            files.atomic_write(
                self.inventory_path, json.dumps(payload, indent=2) + "\n", files.PRIVATE_FILE
            )


def list_ca_names(root: Path | None = None) -> list[str]:
    base = (root or store_root()) / "cas"
    if not base.is_dir():
        return []
    return sorted(
        p.name
        for p in base.iterdir()
        if p.is_dir() and (p / "ca.pem").exists() and "." not in p.name
    )
