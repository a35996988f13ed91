"""CA operations: create a CA, describe it, issue leaf certificates, rotate its files.

This is the layer every command builds on: it joins the pure certificate
logic (:mod:`certkit.certs`) with the store (:mod:`certkit.store`), and it is
the only code that signs or writes CA files.  Signing goes through one
:class:`Signer` (the CA certificate and the private-key object its key
backend gives, see :mod:`certkit.keys`), opened by :func:`open_signer`.
Issuing always goes through :func:`issue` (or :func:`issue_many` for
batches), which picks a serial unused by this CA, records the certificate in
the inventory, and keeps a copy of the certificate and key in the store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from . import certs, constraints, defaults, files, keys
from .certs import PrivateKey
from .errors import UsageError
from .inventorydb import crash_point
from .names import SubjectNames
from .origins import CAOrigin, Origin, empty_origin
from .store import OPENBAO_FILE, CAStore, Record, list_ca_names


@dataclass
class CAInfo:
    """What ``certkit ca show`` prints."""

    name: str
    subject: str
    fingerprint: str
    key_type: str
    encrypted: bool
    not_before: str
    not_after: str
    cert_path: str
    bundle_path: str | None = None
    error: str | None = None  # set by list_cas for a CA whose files cannot be read
    replaced: str | None = None  # set by init_ca --force: where the previous CA was kept
    key_uri: str | None = None  # the key is held by a backend (--key-uri): its URI
    key_path: str | None = None  # the key file, when there is no key URI
    key_created: bool | None = None  # init_ca --key-uri: generated now (False: it was there)
    key_backend: str = keys.DEFAULT_SCHEME  # the backend holding the key: file, pkcs11, ...
    key_lives: str = ""  # where the key is, for people ("on a PKCS#11 token, ...")
    key_short: str = ""  # the same for `ca list`
    permitted: list[str] = field(default_factory=list)  # name constraints ([]: any name)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp() -> str:
    return _now().strftime("%Y%m%dT%H%M%SZ")


def describe_ca(store: CAStore) -> CAInfo:
    cert = store.load_cert()
    held = keys.held_in(store.dir)
    if (store.dir / OPENBAO_FILE).exists():  # the CA signs in OpenBao's PKI engine
        key = keys.KeyInfo(
            "openbao", str(store.dir / OPENBAO_FILE), lives="in OpenBao's PKI mount",
            short="CA in OpenBao",
        )  # fmt: skip
    else:
        key = keys.backend_of(held).describe(held)
    return CAInfo(
        name=store.name,
        subject=cert.subject.rfc4514_string(),
        fingerprint=certs.fingerprint(cert),
        key_type=certs.cert_key_type(cert),
        encrypted=key.encrypted,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        cert_path=str(store.cert_path),
        bundle_path=str(store.bundle_path) if store.bundle_path.exists() else None,
        key_uri=held.uri,
        key_path=None if held.uri else str(held.file),
        key_backend=key.backend,
        key_lives=key.lives,
        key_short=key.short,
        permitted=constraints.permitted(cert),
    )


def _present(path: Path) -> bool:
    return os.path.lexists(path)


def _key_present(store: CAStore) -> bool:
    """``ca-key.pem``, the URI of a key a backend holds (``ca-key.uri``), or the binding
    of a CA that issues through OpenBao's PKI engine (``openbao.json``)."""
    return (
        _present(store.key_path)
        or _present(store.key_uri_path)
        or _present(store.dir / OPENBAO_FILE)
    )


def ca_files_present(store: CAStore) -> bool:
    """True when either CA file is there (a CA with its key moved offline still exists)."""
    return _present(store.cert_path) or _key_present(store)


def require_ca(store: CAStore) -> CAStore:
    """``store``, when both CA files are there; UsageError naming the missing one otherwise."""
    cert, key = _present(store.cert_path), _key_present(store)
    if cert and not key:
        raise UsageError(
            f"CA {store.name!r} has its certificate but no key: {store.key_path} is missing "
            "(moved offline?); put the key back to sign with this CA."
        )
    if key and not cert:
        raise UsageError(
            f"CA {store.name!r} has its key but no certificate: {store.cert_path} is missing; "
            "put it back (a copy is in every installed ca.pem)."
        )
    return store.require()


def _refuse_existing(store: CAStore) -> None:
    """UsageError when any CA material of ``store`` is there (init-ca without --force)."""
    if not ca_files_present(store):
        return
    missing = [] if _present(store.cert_path) else [store.cert_path.name]
    missing += [] if _key_present(store) else [store.key_path.name]
    state = f" (incomplete: {missing[0]} is missing)" if missing else ""
    raise UsageError(
        f"CA {store.name!r} already exists at {store.dir}{state}; pass --force to replace "
        "it (the old folder is kept aside, not deleted)."
    )


def init_ca(
    name: str = "default",
    common_name: str | None = None,
    key_type: str = defaults.DEFAULT_KEY_TYPE,
    days: int = defaults.CA_DAYS,
    *,
    encrypt: bool = False,
    passphrase: bytes | None = None,
    force: bool = False,
    root: Path | None = None,
    key_uri: str | None = None,
    permit: list[str] | None = None,
) -> CAInfo:
    """Create the CA ``name`` in the store and return its description.

    An existing CA is never replaced unless ``force``; then the old one is
    renamed aside (``cas/<name>.replaced-<timestamp>``), not deleted.  With
    ``encrypt`` the key is stored encrypted with ``passphrase`` (or the one
    from ``$CERTKIT_CA_PASSPHRASE`` / the terminal).  With ``key_uri`` the
    backend of its scheme holds the key (``pkcs11:``: made on the token unless
    it exists) and the store keeps only the URI (see :mod:`certkit.keys`).
    ``permit`` (DNS suffixes, CIDRs) limits the names the CA may sign for
    (:mod:`certkit.constraints`).  Without ``common_name`` the subject tells
    this CA apart: ``certkit CA NAME <date> <key id>``.

    >>> info = init_ca("prod", key_type="ec-p256")
    >>> info.cert_path  # doctest: +SKIP
    '/home/me/.local/share/certkit/cas/prod/ca.pem'
    """
    backend = keys.backend_for(key_uri)
    kt = certs.check_key_type(key_type)
    certs.check_days(days)
    name_constraints = constraints.build(permit or [])
    store = CAStore(name, root)
    if not force:
        _refuse_existing(store)
    new = backend.create(key_uri, kt, encrypt=encrypt, passphrase=passphrase)
    kt = certs.key_type_of(new.key)
    cn = common_name or distinct_common_name(f"certkit CA {name}", new.key)
    cert = certs.make_ca(new.key, cn, days, constraints=name_constraints)
    store.ensure_dirs()
    aside: Path | None = None
    with store.lock():
        if ca_files_present(store):
            if not force:
                _refuse_existing(store)
            aside = _free_name(store.dir.with_name(f"{name}.replaced-{_stamp()}"))
            staging = store.dir.with_name(f".{name}.new-{os.getpid()}")
            files.ensure_dir(staging)
            try:
                _write_ca_files(staging, cert, new)
                os.rename(store.dir, aside)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            os.rename(staging, store.dir)
        else:
            _write_ca_files(store.dir, cert, new)
    try:
        with store.transaction() as inv:
            inv.add(make_record(cert, "ca", name, kt, cert))
    except BaseException:  # e.g. a full disk: no CA without its inventory
        with store.lock():
            _undo_new_ca(store, cert, new, aside)
        raise
    info = describe_ca(store)
    info.replaced = str(aside) if aside else None
    info.key_created = new.created if new.uri is not None else None
    return info


def distinct_common_name(base: str, key: PrivateKey, now: dt.datetime | None = None) -> str:
    """``certkit CA prod 2026-12-07 a1b2c3``: ``base``, the day and the key's id.

    Two CAs named alike (two stores, a rotation) then differ in every error
    a client prints ("signed by unknown authority" names the subject).
    """
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest.hex()
    return f"{base[:45]} {(now or _now()):%Y-%m-%d} {ski[:6]}"


def _free_name(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``... : the first that does not exist yet."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _undo_new_ca(
    store: CAStore, cert: x509.Certificate, new: keys.NewKey, aside: Path | None
) -> None:
    """Take back a CA whose inventory could not be made: the replaced CA comes back from
    ``aside``; otherwise the files just written go (a rerun then starts clean)."""
    if aside is not None:
        shutil.rmtree(store.dir, ignore_errors=True)
        os.rename(aside, store.dir)
        return
    for path, _, _ in (_key_file(store.dir, new), (store.dir / "ca.pem", b"", 0)):
        path.unlink(missing_ok=True)


def _write_ca_files(directory: Path, cert: x509.Certificate, new: keys.NewKey) -> None:
    files.atomic_write_many(
        [
            _key_file(directory, new),
            (directory / "ca.pem", certs.cert_pem(cert), files.PUBLIC_FILE),
        ]
    )


def _key_file(directory: Path, new: keys.NewKey) -> tuple[Path, bytes, int]:
    """What keeps the CA key: ``ca-key.pem``, or ``ca-key.uri`` when a backend holds it."""
    file_name, data = new.stored()
    return (directory / file_name, data, files.PRIVATE_FILE)


def list_cas(root: Path | None = None) -> list[CAInfo]:
    """Every CA in the store; one whose files are unreadable comes with ``error`` set."""
    out = []
    for name in list_ca_names(root):
        store = CAStore(name, root)
        try:
            out.append(describe_ca(store))
        except (UsageError, OSError) as e:
            message = e.message if isinstance(e, UsageError) else str(e)
            out.append(CAInfo(name, "", "", "", False, "", "", str(store.cert_path), error=message))
    return out


# ---------------------------------------------------------------- issuing


@dataclass
class Issued:
    """A freshly issued certificate: the objects, the PEMs and its inventory record."""

    cert: x509.Certificate
    key: PrivateKey
    record: Record
    ca_pem: bytes  # the trust bundle to hand out with it
    cert_path: Path
    key_path: Path
    paths: list[str] = field(default_factory=list)
    issuer_not_after: dt.datetime | None = None

    @functools.cached_property
    def cert_pem(self) -> bytes:
        return certs.cert_pem(self.cert)

    @functools.cached_property
    def key_pem(self) -> bytes:
        return certs.key_pem(self.key)

    @property
    def capped(self) -> str | None:
        """One sentence when the validity was cut to the CA's own end, else None."""
        return capped_note(self.cert, self.issuer_not_after)


def make_record(
    cert: x509.Certificate,
    kind: str,
    name: str,
    key_type: str,
    issuer: x509.Certificate,
    origin: Origin | None = None,
    *,
    no_sans: bool = False,
    subject: str | None = None,
) -> Record:
    """The inventory record of ``cert``, issued by ``issuer``.

    A batch knows what it signed: ``no_sans`` (``cert`` has no SAN extension) and
    ``subject`` (its common name) spare parsing them back out of each certificate.
    """
    return Record(
        serial=certs.serial_hex(cert),
        kind=kind,
        name=name,
        subject=subject if subject is not None else certs.common_name(cert),
        sans=[] if no_sans else certs.san_names(cert),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        fingerprint=certs.fingerprint(cert),
        key_type=key_type,
        issuer_fingerprint=_fingerprint_of(issuer),
        created=_now().isoformat(),
        origin=origin if origin is not None else empty_origin(kind),
    )


@functools.lru_cache(maxsize=8)
def _fingerprint_of(issuer: x509.Certificate) -> str:
    """The issuer's fingerprint: once per CA, not once per leaf of a batch."""
    return certs.fingerprint(issuer)


@dataclass
class LeafRequest:
    """What to issue: used by :func:`issue_many` for batches."""

    kind: certs.Kind
    name: str
    common_name: str
    names: SubjectNames | None = None
    days: int = defaults.CLIENT_DAYS
    key_type: str = defaults.DEFAULT_KEY_TYPE
    key: PrivateKey | None = None  # reuse this key instead of making one
    not_after: dt.datetime | None = None
    origin: Origin | None = None  # how it was issued (None: every default)
    installed: list[str] = field(default_factory=list)  # where its files will be written
    # records.INSTALLING for a server about to be installed: not in use until
    # certkit.placement records the install (in the same transaction as the issuance).
    superseded_by: str | None = None


@dataclass(frozen=True)
class Signer:
    """The CA that signs: its certificate and a private-key object.

    ``key`` is any implementation of cryptography's private-key interface,
    as the CA's key backend (:mod:`certkit.keys`) opens it: the key read from
    ``ca-key.pem``, or one held elsewhere that implements ``sign()`` and
    ``public_key()``.  Nothing is signed for a name outside the CA's name
    constraints (:func:`certkit.constraints.check`).
    """

    cert: x509.Certificate
    key: PrivateKey

    def sign(self, public_key: certs.PublicKey, req: LeafRequest) -> x509.Certificate:
        """A leaf certificate for ``public_key`` as ``req`` describes it.

        A leaf never outlives its CA: its notAfter is capped at the CA's
        (clients would refuse it past that date anyway); :func:`capped_note`
        says so.
        """
        constraints.check(self.cert, req.names)
        ca_end = self.cert.not_valid_after_utc
        wanted = req.not_after or _now() + dt.timedelta(days=req.days)
        return certs.make_leaf(
            self.cert,
            self.key,
            public_key,
            req.kind,
            req.common_name,
            req.names,
            req.days,
            not_after=ca_end if wanted > ca_end else req.not_after,
        )


def capped_note(cert: x509.Certificate, ca_not_after: dt.datetime | None) -> str | None:
    """The note for a leaf whose validity was capped at its CA's notAfter (None: it was not)."""
    end = cert.not_valid_after_utc
    if ca_not_after is None or end != ca_not_after:
        return None
    return (
        f"valid only until {end.date().isoformat()}: a certificate cannot outlive its CA, which "
        "expires then; rotate the CA (certkit rotate-ca start) for longer certificates"
    )


_opened: dict[tuple[Path, bytes], Signer] | None = None  # inside one_signer()


@contextlib.contextmanager
def one_signer() -> Iterator[None]:
    """Within the block, :func:`open_signer` opens each CA's key once.

    A command that signs several times (``certkit setup``: the server's
    certificate, then the client's) asks for the passphrase or the PIN once
    and decrypts the key once.  A CA whose certificate changed in the block
    (replaced, rotated) is opened again.  The keys are dropped when it ends.
    """
    global _opened
    if _opened is not None:
        yield
        return
    _opened = {}
    try:
        yield
    finally:
        _opened = None


def open_signer(store: CAStore) -> Signer:
    """The signer of ``store``'s CA (asks for the key's passphrase or the token's PIN)."""
    require_ca(store)
    known = (store.dir, store.cert_pem())
    if _opened is not None and known in _opened:
        return _opened[known]
    cert = store.load_cert()
    signer = Signer(cert, store.load_key())  # the key as its backend opens it
    if _opened is not None:
        _opened[known] = signer
    return signer


Outputs = Callable[[list["Issued"]], list[tuple[files.StrPath, bytes | str, int]]]
"""What :func:`issue_many` hands out besides the store's copies: the files to write."""


def issue_many(
    store: CAStore,
    requests: list[LeafRequest],
    *,
    progress: Callable[[int], None] | None = None,
    outputs: Outputs | None = None,
) -> list[Issued]:
    """Issue several certificates with one CA key load and one inventory update.

    Keys are generated and certificates signed outside the lock; serials are
    re-drawn under the lock in the (astronomically unlikely) case of a clash.
    Each certificate and key is kept in ``issued/<serial>/`` in the store.
    ``progress(n)`` is called as certificates are made (``n`` more done).
    ``outputs(issued)`` (bulk issuance's ``--out``) names the files to hand
    out; it may create their directories.

    Files first, inventory last: the store's copies and the outputs are one
    durable batch (:func:`certkit.files.atomic_write_many`), written inside
    the inventory transaction, which commits only once every file is on
    disk.  A crash or a failed write before the commit leaves files that no
    record names (``issued/<serial>/`` of a serial the inventory does not
    know; outputs that ``certkit list`` does not show and that a rerun with
    ``--force`` replaces), never a record whose files are missing.
    """
    if (store.dir / OPENBAO_FILE).exists():  # the CA is an OpenBao PKI mount: it signs
        from .openbao.issue import issue_many as issue_many_in_openbao

        return issue_many_in_openbao(store, requests, progress=progress, outputs=outputs)
    signer = open_signer(store)
    ca_pem = store.trust_bundle_pem()
    for req in requests:
        certs.check_days(req.days) if req.not_after is None else None
    built: list[tuple[LeafRequest, PrivateKey, x509.Certificate]] = []
    for req in requests:
        key = req.key or certs.generate_key(certs.check_key_type(req.key_type))
        built.append((req, key, signer.sign(key.public_key(), req)))
        if progress is not None:
            progress(1)
    results: list[Issued] = []
    ca_end, issued_dir = signer.cert.not_valid_after_utc, store.issued_dir("")
    with store.transaction() as inv:
        writes: list[tuple[files.StrPath, bytes | str, int]] = []
        taken = inv.taken([certs.serial_hex(cert) for _, _, cert in built])
        for req, key, cert in built:
            while certs.serial_hex(cert) in taken:  # pragma: no cover - 2**-126 odds
                cert = signer.sign(key.public_key(), req)
            kt = certs.key_type_of(key)
            record = make_record(
                cert, req.kind, req.name, kt, signer.cert, req.origin,
                no_sans=req.names is None or not req.names.all(),  # as certs.make_leaf decides
                subject=certs.leaf_cn(req.common_name),
            )  # fmt: skip
            record.installed = sorted(req.installed)
            record.superseded_by = req.superseded_by
            inv.add(record)
            d = files.ensure_dir(issued_dir / record.serial)
            one = Issued(cert, key, record, ca_pem, d / "cert.pem", d / "key.pem",
                         issuer_not_after=ca_end)  # fmt: skip
            writes.append((one.cert_path, one.cert_pem, files.PUBLIC_FILE))
            writes.append((one.key_path, one.key_pem, files.PRIVATE_FILE))
            results.append(one)
        writes += outputs(results) if outputs is not None else []
        crash_point("before-files")
        # No links to keep: issued/<serial>/ is new, outputs are checked for links.
        files.atomic_write_many(writes, keep_links=False)
    return results


def issue(
    store: CAStore,
    kind: certs.Kind,
    name: str,
    common_name: str,
    names: SubjectNames | None = None,
    days: int = defaults.CLIENT_DAYS,
    key_type: str = defaults.DEFAULT_KEY_TYPE,
    *,
    key: PrivateKey | None = None,
    not_after: dt.datetime | None = None,
    origin: Origin | None = None,
) -> Issued:
    """Issue one leaf certificate from ``store``'s CA and record it.

    >>> store = CAStore("default")
    >>> server = issue(store, "server", "docker1", "docker1", names.parse_names(["docker1"]))
    """
    req = LeafRequest(kind, name, common_name, names, days, key_type, key, not_after, origin)
    return issue_many(store, [req])[0]


def mark_installed(store: CAStore, serial: str, paths: list[str]) -> None:
    """Add ``paths`` to the record's ``installed`` list."""
    with store.transaction() as inv:
        rec = inv.get(serial)
        if rec is not None:
            rec.installed = sorted({*rec.installed, *paths})


# ---------------------------------------------------------------- CA rotation files


def begin_rotation(store: CAStore, new_cert: x509.Certificate, new_key: keys.NewKey) -> None:
    """Make ``new_cert`` the signing CA; keep the old one in ``previous/``; trust both.

    The old CA is safe in ``previous/`` before anything else changes; then
    ``bundle.pem`` (new CA first, then the old one), the new key and
    certificate replace the old ones.  The new key is kept as its backend
    made it (``ca-key.pem``, or ``ca-key.uri`` when a backend holds it; the
    old key's file or URI moves to ``previous/``, the old key is left as is).
    """
    old_key_file = keys.held_in(store.dir).file
    old_key = old_key_file.read_bytes()
    old_pem = store.cert_path.read_bytes()
    new_pem = certs.cert_pem(new_cert)
    with store.lock():
        if store.rotation_under_way():
            raise UsageError(f"A rotation of CA {store.name!r} started meanwhile; see its status.")
        files.ensure_dir(store.previous_dir)
        files.atomic_write_many(
            [
                (store.previous_dir / old_key_file.name, old_key, files.PRIVATE_FILE),
                (store.previous_dir / "ca.pem", old_pem, files.PUBLIC_FILE),
            ]
        )
        files.atomic_write_many(
            [
                (store.bundle_path, new_pem + old_pem, files.PUBLIC_FILE),
                _key_file(store.dir, new_key),
                (store.cert_path, new_pem, files.PUBLIC_FILE),
            ]
        )
    new = make_record(new_cert, "ca", store.name, certs.key_type_of(new_key.key), new_cert)
    old_fp = certs.fingerprint(certs.load_cert(old_pem))
    new.origin = CAOrigin(rotated_from=old_fp)
    with store.transaction() as inv:
        for r in inv.find(kind="ca", active=True):
            if r.fingerprint == old_fp:
                r.superseded_by = new.serial
        inv.add(new)


def retire_previous(store: CAStore) -> Path:
    """End a rotation: drop the old CA from the trust bundle, archive it (never delete it).

    Returns the archive, ``retired/<UTC timestamp>-<fingerprint prefix>/``.
    """
    prev = certs.load_cert((store.previous_dir / "ca.pem").read_bytes())
    fp = certs.fingerprint(prev).replace(":", "")[:16].lower()
    with store.lock():
        files.ensure_dir(store.retired_dir)
        archive = store.retired_dir / f"{_stamp()}-{fp}"
        # bundle.pem first: once it is gone, every ca.pem written is the new CA alone.
        store.bundle_path.unlink(missing_ok=True)
        os.rename(store.previous_dir, archive)
        files.ensure_dir(archive)  # tighten to 0700 if it ever was not
    return archive
