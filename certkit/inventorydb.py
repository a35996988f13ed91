"""Each CA's inventory in SQLite: the schema, the queries, and the migration from JSON.

``cas/<name>/inventory.sqlite3`` (WAL, ``synchronous=FULL``, 0600) holds one
row per certificate; this module is the only code that knows its schema.
Writers change it in ``BEGIN IMMEDIATE`` transactions, so concurrent certkit
processes neither lose a record nor reuse a serial (a ``UNIQUE`` constraint);
``list`` and ``status`` read through a read-only connection.

The first command that opens a CA still holding ``inventory.json`` (written by
certkit before this database, any version of its records) migrates it in one
transaction and renames the JSON file aside to
``inventory.json.migrated-TIMESTAMP``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import signal
import sqlite3
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import files, sqlitefiles
from .errors import OperationError
from .records import Record, read_json_inventory

if TYPE_CHECKING:  # certkit.origins loads when an origin is used (records.py says why)
    from .origins import Origin

DB_NAME = "inventory.sqlite3"
LEGACY_NAME = "inventory.json"
SCHEMA_VERSION = 2  # PRAGMA user_version
BUSY_SECONDS = 60.0  # how long a writer waits for another one before giving up

SCHEMA_V1 = (  # the first schema; _UPGRADES says what each later version added
    # id keeps the order records were added in (the order inventory.json's list had).
    """CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        serial TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('ca', 'server', 'client', 'ci')),
        name TEXT NOT NULL,
        subject TEXT NOT NULL,
        sans TEXT NOT NULL CHECK (json_valid(sans) AND json_type(sans) = 'array'),
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        key_type TEXT NOT NULL,
        issuer_fingerprint TEXT NOT NULL,
        created TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (json_valid(origin) AND json_type(origin) = 'object'),
        superseded_by TEXT
    )""",
    """CREATE TABLE installed (
        serial TEXT NOT NULL REFERENCES records (serial) ON DELETE CASCADE,
        path TEXT NOT NULL,
        PRIMARY KEY (serial, path)
    ) WITHOUT ROWID""",
    "CREATE INDEX installed_by_path ON installed (path)",
    "CREATE INDEX records_by_kind_name ON records (kind, name)",
    # The certificates in use (_NEWEST's probe): list, status, renew, rotation.
    """CREATE INDEX records_active ON records (kind, name, created DESC, not_after DESC)
        WHERE superseded_by IS NULL""",
    "CREATE INDEX records_active_by_expiry ON records (not_after) WHERE superseded_by IS NULL",
    """CREATE TABLE migrations (
        source TEXT NOT NULL, sha256 TEXT NOT NULL, records INTEGER NOT NULL, at TEXT NOT NULL
    )""",
)
# Each version's changes from the one before: a version-1 inventory is upgraded in place
# (in one transaction, under the store's lock) the first time this certkit opens it.
_UPGRADES: dict[int, tuple[str, ...]] = {
    2: (  # certkit revoke, roles, and the hosts enforcing them (certkit.revoke)
        "ALTER TABLE records ADD COLUMN revoked_at TEXT",
        "ALTER TABLE records ADD COLUMN revoked_reason TEXT",
        # status counts them on every run: found without reading the table
        "CREATE INDEX records_revoked ON records (id) WHERE revoked_at IS NOT NULL",
        """CREATE TABLE roles (
            kind TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL, set_at TEXT NOT NULL,
            PRIMARY KEY (kind, name)
        ) WITHOUT ROWID""",
        """CREATE TABLE authz_hosts (
            host TEXT PRIMARY KEY,
            ref TEXT NOT NULL CHECK (json_valid(ref) AND json_type(ref) = 'object'),
            digest TEXT NOT NULL,
            pushed_at TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
}
_FULL_SCHEMA = (*SCHEMA_V1, *(s for v in sorted(_UPGRADES) for s in _UPGRADES[v]))
_FIELDS = (
    "serial, kind, name, subject, sans, not_before, not_after, fingerprint, key_type, "
    "issuer_fingerprint, created, origin, superseded_by, revoked_at, revoked_reason"
)
_NFIELDS = _FIELDS.count(",") + 1
_SELECT = f"SELECT {_FIELDS} FROM records"
_INSTALLED = "SELECT serial, path FROM installed"
_INSERT = f"INSERT INTO records ({_FIELDS}) VALUES ({', '.join('?' * _NFIELDS)})"
# The record in use of its (kind, name): not superseded, and no other such record was
# created later, or as late and ends later, or as late, ending as late, and added first.
_NEWEST = (
    "superseded_by IS NULL AND NOT EXISTS (SELECT 1 FROM records n "
    "WHERE n.superseded_by IS NULL AND n.kind = records.kind AND n.name = records.name "
    "AND (n.created > records.created OR (n.created = records.created "
    "AND (n.not_after > records.not_after "
    "OR (n.not_after = records.not_after AND n.id < records.id)))))"
)
_KIND_ORDER = "CASE kind WHEN 'ca' THEN 0 WHEN 'server' THEN 1 WHEN 'client' THEN 2 ELSE 3 END"
_Row = tuple[Any, ...]


_passed: dict[str, int] = {}


def crash_point(step: str) -> None:
    """Die here, as a power cut would, when ``$CERTKIT_TEST_CRASH_AT`` names ``step``.

    ``STEP#N`` dies the N-th time the step is reached.  Only the durability
    tests set it (tests/test_inventory_db.py): they kill certkit at each step
    of an issuance and check what the crash left.
    """
    wanted = os.environ.get("CERTKIT_TEST_CRASH_AT")
    if not wanted:
        return
    _passed[step] = _passed.get(step, 0) + 1
    name, _, nth = wanted.partition("#")
    if name == step and _passed[step] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


@functools.lru_cache(maxsize=4096)
def _origin_text(origin: Origin) -> str:
    """An origin's JSON; origins are frozen, so a record's is encoded once when it is
    added and found again when the transaction's flush compares it."""
    from .origins import origin_to_json

    return json.dumps(origin_to_json(origin), sort_keys=True)


def _row_of(r: Record) -> _Row:
    try:
        origin = _origin_text(r.origin)
    except TypeError:  # a field that cannot be hashed (a list): no memo
        from .origins import origin_to_json

        origin = json.dumps(origin_to_json(r.origin), sort_keys=True)
    return (
        r.serial, r.kind, r.name, r.subject, json.dumps(list(r.sans)), r.not_before,
        r.not_after, r.fingerprint, r.key_type, r.issuer_fingerprint, r.created, origin,
        r.superseded_by, r.revoked_at, r.revoked_reason, tuple(sorted(set(r.installed))),
    )  # fmt: skip


def parse_origin(kind: str, text: str, serial: str, path: Path) -> Origin:
    from .origins import origin_from_json

    try:
        return origin_from_json(kind, json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise corrupted(path, f"the origin of record {serial}: {e}") from None


class StoredRecord(Record):
    """A record read by a reader: its origin is parsed when first used.

    ``list`` and ``status`` read every record and none of their origins.
    """

    stored_origin: tuple[str, Path] | None = None  # the origin's JSON, and the database

    @property
    def origin(self) -> Origin:
        if self.stored_origin is not None:
            text, path = self.stored_origin
            self._origin = parse_origin(self.kind, text, self.serial, path)
            self.stored_origin = None
        return self._origin

    @origin.setter
    def origin(self, value: Origin) -> None:
        self._origin = value
        self.stored_origin = None

    def __eq__(self, other: object) -> bool:
        # The dataclass's own __eq__ wants both sides of one class: compare the fields.
        if not isinstance(other, Record):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in Record.__dataclass_fields__)

    __hash__ = None  # type: ignore[assignment]  # mutable, like Record


class InventoryError(OperationError):
    """The inventory database cannot be read or written (exit 1)."""


def corrupted(path: Path, detail: str) -> InventoryError:
    return InventoryError(
        f"The inventory {path} is unreadable ({detail}): restore it from a backup "
        "(`certkit ca backup` makes one) or move it aside to start an empty inventory."
    )


# SQLite's primary result codes that are about the disk, not the database.
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 3, 8, 10, 13, 14


def _disk_full(path: Path) -> bool:
    """True when the file system holding ``path`` is (nearly) full: SQLite reports a write
    that hit ENOSPC in its -wal or -shm file as a plain I/O error, and by the time it is
    reported the failed files are gone again, so "under 1 MiB left" is the sign."""
    try:
        st = os.statvfs(path.parent)
        return st.f_bavail * st.f_frsize < 1 << 20
    except OSError:
        return False


def _translate(path: Path, e: sqlite3.Error) -> InventoryError:
    text = str(e)
    code = getattr(e, "sqlite_errorcode", 0) & 0xFF
    if isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return InventoryError(
            f"The inventory {path} stayed locked by another certkit process for "
            f"{BUSY_SECONDS:g} s; try again when it has finished."
        )
    if code == _SQLITE_FULL or (code == _SQLITE_IOERR and _disk_full(path)):
        return InventoryError(
            f"The disk holding the inventory {path} is full: free some space and run the "
            "command again (nothing was recorded)."
        )
    if code in (_SQLITE_READONLY, _SQLITE_PERM) or (
        code == _SQLITE_CANTOPEN and not os.access(path.parent, os.W_OK)
    ):
        return InventoryError(
            f"The inventory {path} cannot be written: its directory is read-only or not "
            "writable by this user (read-only commands such as `certkit list` still work)."
        )
    if code == _SQLITE_IOERR:
        return InventoryError(f"Reading or writing the inventory {path} failed ({text}).")
    return corrupted(path, text)


class Inventory:
    """The records of one CA: queries, and inside :func:`transaction`, changes.

    In a transaction, records handed out by :meth:`get` and :meth:`find` may
    be changed in place (``rec.superseded_by = new``); the changes are written
    when the transaction commits.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, *, writable: bool = False) -> None:
        self._conn = conn
        self.path = path
        self._writable = writable
        self._loaded: dict[str, tuple[Record, _Row]] = {}

    def close(self) -> None:
        self._conn.close()

    def __del__(self) -> None:
        # sqlite3 connections sit in reference cycles: closing here, when the last
        # reference goes, removes the -wal and -shm files at once, not at the next
        # garbage collection (so a read leaves the store's files as they were).
        if not self._writable:
            self.close()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Inventory]:
        """Every query in the block sees the same state (one read transaction)."""
        if self._writable:  # a write transaction is one already
            yield self
            return
        self._query("BEGIN")
        try:
            yield self
        finally:
            self._query("COMMIT")

    # ---- reading
    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[_Row]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise _translate(self.path, e) from None

    def _records(
        self, where: str = "", args: tuple[Any, ...] = (), order: str = "id"
    ) -> list[Record]:
        rows = self._query(f"{_SELECT} {where} ORDER BY {order}", args)
        installed: dict[str, list[str]] = {}
        if len(rows) > 500:  # most of the table: one scan beats a lookup per record
            pairs = self._query(_INSTALLED)
        else:
            marks = ", ".join("?" * len(rows))
            pairs = self._query(
                f"{_INSTALLED} WHERE serial IN ({marks})", tuple(r[0] for r in rows)
            )
        for serial, path in pairs:
            installed.setdefault(serial, []).append(path)
        return [self._record(row, installed.get(row[0], [])) for row in rows]

    def _record(self, row: _Row, installed: list[str]) -> Record:
        serial = row[0]
        if serial in self._loaded:
            return self._loaded[serial][0]
        try:
            kind = row[1]
            rec = (Record if self._writable else StoredRecord)(
                serial=serial,
                kind=kind,
                name=row[2],
                subject=row[3],
                sans=json.loads(row[4]) if row[4] != "[]" else [],  # clients: none
                not_before=row[5],
                not_after=row[6],
                fingerprint=row[7],
                key_type=row[8],
                issuer_fingerprint=row[9],
                created=row[10],
                installed=sorted(installed),
                superseded_by=row[12],
                revoked_at=row[13],
                revoked_reason=row[14],
            )
        except (ValueError, TypeError) as e:
            raise corrupted(self.path, f"record {serial}: {e}") from None
        if isinstance(rec, StoredRecord):
            rec.stored_origin = (row[11], self.path)
        else:
            rec.origin = parse_origin(kind, row[11], serial, self.path)
            self._loaded[serial] = (rec, _row_of(rec))
        return rec

    def in_list_order(self, kind: str | None = None) -> Iterator[tuple[Record, str]]:
        """Each record of ``kind`` (None: all) in ``certkit list``'s order (CA, server,
        client, CI; then name, notAfter, issuance), with the serial of its (kind, name)'s
        record in use (:meth:`newest_serials`), read as it goes: memory stays flat."""
        clauses, args = _filters(kind, None)
        installed = "(SELECT json_group_array(path) FROM installed i WHERE i.serial = r.serial)"
        order = f"{_KIND_ORDER}, name, not_after, id"
        sql = f"SELECT {_FIELDS}, id, {installed} FROM records r {_where(clauses)} ORDER BY {order}"
        group: list[tuple[Record, _Row]] = []
        try:
            for row in self._conn.execute(sql, tuple(args)):
                if group and (row[1], row[2]) != (group[0][1][1], group[0][1][2]):
                    yield from _with_newest(group)
                    group = []
                group.append((self._record(row, json.loads(row[16])), row))
        except sqlite3.Error as e:
            raise _translate(self.path, e) from None
        yield from _with_newest(group)

    def __contains__(self, serial: object) -> bool:
        return bool(self._query("SELECT 1 FROM records WHERE serial = ?", (serial,)))

    def taken(self, serials: list[str]) -> set[str]:
        """Those of ``serials`` already in the inventory (a batch's check, 500 at a time)."""
        found: set[str] = set()
        for i in range(0, len(serials), 500):
            chunk = tuple(serials[i : i + 500])
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT serial FROM records WHERE serial IN ({marks})"
            found.update(row[0] for row in self._query(sql, chunk))
        return found

    def serials(self) -> set[str]:
        return {row[0] for row in self._query("SELECT serial FROM records")}

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM records")[0][0])

    def get(self, serial: str) -> Record | None:
        found = self._records("WHERE serial = ?", (serial,))
        return found[0] if found else None

    def find(
        self, kind: str | None = None, name: str | None = None, active: bool = False
    ) -> list[Record]:
        """The records of ``kind`` and ``name`` (either may be None: any), in issuance order."""
        clauses, args = _filters(kind, name)
        if name is None and kind is not None:
            # One kind is a large part of the table: reading it in order beats sorting
            # the index's matches (+ keeps SQLite from using the index).
            clauses[0] = "+kind = ?"
        if active:
            clauses.append("superseded_by IS NULL")
        return self._records(_where(clauses), tuple(args))

    def installed_at(self, path: str) -> list[Record]:
        """The records whose files were written to ``path``."""
        where = "WHERE serial IN (SELECT serial FROM installed WHERE path = ?)"
        return self._records(where, (path,))

    def newest_serials(self, kind: str | None = None) -> dict[tuple[str, str], str]:
        """The serial of the newest not-superseded record of each (kind, name)."""
        clauses, args = _filters(kind, None)
        sql = f"SELECT kind, name, serial FROM records {_where([_NEWEST, *clauses])}"
        return {(k, n): s for k, n, s in self._query(sql, tuple(args))}

    def newest_active(
        self,
        kind: str | None = None,
        name: str | None = None,
        *,
        ending_by: dt.datetime | None = None,
    ) -> dict[tuple[str, str], Record]:
        """The newest not-superseded record of each (kind, name): the one in use.

        Re-running ``issue-server`` or ``client-context --force`` replaces a
        certificate without marking the old record, so only the newest counts
        (the latest ``created``, then the latest ``not_after``, then the first added).
        ``ending_by`` keeps those that end by then, found through the expiry index
        (a few more, to the second: the caller applies its own rule).
        """
        clauses, args = _filters(kind, name)
        if ending_by is not None:  # ISO strings compare as dates, rounded up to the second
            clauses.append("not_after <= ?")
            cutoff = ending_by.astimezone(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
            args.append(cutoff.isoformat())
        found = self._records(_where([_NEWEST, *clauses]), tuple(args))
        return {(r.kind, r.name): r for r in found}

    def count_in_use(self) -> int:
        """How many records :meth:`newest_active` would return."""
        return int(self._query(f"SELECT count(*) FROM records WHERE {_NEWEST}")[0][0])

    def first_to_expire(self) -> Record | None:
        """The record in use that ends first (ties: CA, server, client, CI, then by name)."""
        order = f"not_after, {_KIND_ORDER}, name LIMIT 1"
        found = self._records(f"WHERE {_NEWEST}", (), order)
        return found[0] if found else None

    def revoked(self) -> list[Record]:
        """Every revoked record, in issuance order."""
        return self._records("WHERE revoked_at IS NOT NULL")

    def roles(self) -> dict[tuple[str, str], str]:
        """The role recorded for each (kind, name) (``client-context --role``)."""
        return {(k, n): r for k, n, r in self._query("SELECT kind, name, role FROM roles")}

    def authz_hosts(self) -> dict[str, tuple[dict[str, Any], str, str]]:
        """Each host enforcing this CA's policy: (how to reach it, policy digest, when pushed)."""
        rows = self._query("SELECT host, ref, digest, pushed_at FROM authz_hosts ORDER BY host")
        return {h: (json.loads(ref), digest, at) for h, ref, digest, at in rows}

    # ---- writing (inside a transaction)
    def set_role(self, kind: str, name: str, role: str, at: str) -> None:
        """Record ``role`` for the certificates of (kind, name), renewed ones included."""
        self._write(
            "INSERT OR REPLACE INTO roles (kind, name, role, set_at) VALUES (?, ?, ?, ?)",
            (kind, name, role, at),
        )

    def set_authz_host(self, host: str, ref: dict[str, Any], digest: str, at: str) -> None:
        """Record that ``host`` (reached through ``ref``) now enforces the policy ``digest``."""
        self._write(
            "INSERT OR REPLACE INTO authz_hosts (host, ref, digest, pushed_at) VALUES (?, ?, ?, ?)",
            (host, json.dumps(ref, sort_keys=True), digest, at),
        )

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        if not self._writable:
            raise RuntimeError("the inventory is read-only here; use CAStore.transaction()")
        try:
            self._conn.execute(sql, args)
        except sqlite3.Error as e:
            raise _translate(self.path, e) from None

    def add(self, record: Record) -> None:
        if not self._writable:
            raise RuntimeError("the inventory is read-only here; use CAStore.transaction()")
        row = _row_of(record)
        try:
            self._conn.execute(_INSERT, row[:_NFIELDS])
            self._set_installed(record.serial, row[_NFIELDS])
        except sqlite3.IntegrityError as e:
            if "UNIQUE" in str(e):
                raise RuntimeError(f"serial {record.serial} already in the inventory") from None
            raise
        except sqlite3.Error as e:
            raise _translate(self.path, e) from None
        self._loaded[record.serial] = (record, row)

    def flush(self) -> None:
        """Write back the records changed in place since they were read or added."""
        for serial, (rec, before) in list(self._loaded.items()):
            row = _row_of(rec)
            if row == before:
                continue
            if rec.serial != serial:
                raise RuntimeError(f"record {serial}: a serial cannot change")
            sets = ", ".join(f"{f.strip()} = ?" for f in _FIELDS.split(",")[1:])
            update = f"UPDATE records SET {sets} WHERE serial = ?"
            self._conn.execute(update, (*row[1:_NFIELDS], serial))
            if row[_NFIELDS] != before[_NFIELDS]:
                self._conn.execute("DELETE FROM installed WHERE serial = ?", (serial,))
                self._set_installed(serial, row[_NFIELDS])
            self._loaded[serial] = (rec, row)

    def _set_installed(self, serial: str, paths: tuple[str, ...]) -> None:
        rows = [(serial, p) for p in paths]
        self._conn.executemany("INSERT INTO installed (serial, path) VALUES (?, ?)", rows)


def _with_newest(group: list[tuple[Record, _Row]]) -> Iterator[tuple[Record, str]]:
    """The records of one (kind, name), each with the serial of the one in use: not
    superseded, the latest created, then the latest notAfter, then the first added
    (``_NEWEST``'s rule)."""
    live = [(rec, row) for rec, row in group if row[12] is None]
    if not live:
        yield from ((rec, "") for rec, _ in group)
        return
    # row[10]: created, row[6]: not_after, row[15]: id
    newest = max(live, key=lambda x: (x[1][10], x[1][6], -x[1][15]))[0].serial
    yield from ((rec, newest) for rec, _ in group)


def _filters(kind: str | None, name: str | None) -> tuple[list[str], list[str]]:
    clauses, args = [], []
    if kind is not None:
        clauses.append("kind = ?")
        args.append(kind)
    if name is not None:
        clauses.append("name = ?")
        args.append(name)
    return clauses, args


def _where(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


# ---------------------------------------------------------------- opening


def _connect(path: Path, *, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    # mode=rw: never create a database here (open_db creates it, 0600, under the lock).
    uri = f"file:{urllib.parse.quote(str(path))}?mode=rw"
    if readonly and (immutable or not os.access(path.parent, os.W_OK)):
        # A store on a read-only file system (or one this user may only read): SQLite
        # could not make the -shm file a WAL reader needs.  Nobody can write here, so
        # the file cannot change under us: read it as immutable.
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_SECONDS)
    if readonly:
        # Refuses every write.  Not mode=ro: a mode=ro connection leaves -wal and -shm
        # files behind, so a read would change the store's files; this one, closed
        # last, removes them like a writer does.
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk when it returns
        conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _empty() -> sqlite3.Connection:
    """An inventory with no record (a CA whose inventory was never written)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for statement in _FULL_SCHEMA:
        conn.execute(statement)
    return conn


def _check_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version; InventoryError when a newer certkit wrote it."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise InventoryError(
            f"The inventory {path} was written by a newer certkit (schema {version}); "
            "upgrade certkit to use it."
        )
    return version


def open_db(directory: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection to the inventory in ``directory``, created or migrated first if needed."""
    path = directory / DB_NAME
    legacy = directory / LEGACY_NAME
    if readonly and not path.exists() and not legacy.exists():
        return _empty()
    try:
        if legacy.exists() or not path.exists():
            with files.locked(directory / ".lock"):  # the lock certkit before SQLite held too
                _initialise(path, legacy)
        conn = (None if readonly else sqlitefiles.take(path)) or _connect(path, readonly=readonly)
        try:
            if 0 < _check_version(conn, path) < SCHEMA_VERSION:  # upgraded once, in place
                conn.close()
                with files.locked(directory / ".lock"):
                    _initialise(path, legacy)
                conn = (None if readonly else sqlitefiles.take(path)) or _connect(
                    path, readonly=readonly
                )
        except BaseException:
            conn.close()
            raise
    except sqlite3.Error as e:
        if readonly and _disk_refused(path, e):
            return _read_immutable(path)
        raise _translate(path, e) from None
    return conn


def _disk_refused(path: Path, e: sqlite3.Error) -> bool:
    """True when a reader failed only because it could not make its -shm file."""
    code = getattr(e, "sqlite_errorcode", 0) & 0xFF
    return code in (_SQLITE_CANTOPEN, _SQLITE_FULL, _SQLITE_READONLY) or (
        code == _SQLITE_IOERR and _disk_full(path)
    )


def _read_immutable(path: Path) -> sqlite3.Connection:
    """A reader for a store on a full disk: no writer can commit there either, so the
    file cannot change under us (``list`` and ``status`` still work)."""
    try:
        conn = _connect(path, readonly=True, immutable=True)
        _check_version(conn, path)
    except sqlite3.Error as e:
        raise _translate(path, e) from None
    return conn


def _initialise(path: Path, legacy: Path) -> None:
    """Create the database (0600, WAL, schema) and migrate ``inventory.json`` into it.

    The JSON file is read first: when it is unreadable, nothing is created.
    """
    source = read_json_inventory(legacy) if legacy.exists() else None
    schema = (*_FULL_SCHEMA, f"PRAGMA user_version = {SCHEMA_VERSION}")
    created = not path.exists() and sqlitefiles.create(path, schema, files.PRIVATE_FILE)
    try:
        conn = _connect(path, readonly=False)
        try:
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                raise corrupted(path, "it cannot be switched to WAL mode")
            _check_version(conn, path)
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:  # an older certkit's
                for statement in schema:
                    conn.execute(statement)
            else:
                _upgrade(conn, version)
            migrated = _migrate(conn, path, legacy, *source) if source else None
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        sqlitefiles.give_back(path, conn)  # kept for the next transaction, in kept_open()
    except BaseException:
        if created:  # leave the store as it was
            sqlitefiles.remove(path)
        raise
    if migrated is not None:
        crash_point("migration-committed")
        _set_aside(legacy, path, migrated)


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring a schema of ``version`` to :data:`SCHEMA_VERSION` (inside the caller's transaction)."""
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _UPGRADES[target]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _set_aside(legacy: Path, path: Path, migrated: int) -> None:
    aside = legacy.with_name(f"{LEGACY_NAME}.migrated-{_stamp()}")
    os.rename(legacy, aside)
    files.fsync_dir(aside.parent)
    print(
        f"certkit: migrated the inventory of CA {path.parent.name!r} ({migrated} records) "
        f"to {path.name}; the JSON file is kept as {aside.name}.",
        file=sys.stderr,
    )


def _migrate(
    conn: sqlite3.Connection, path: Path, legacy: Path, digest: str, records: list[Record]
) -> int:
    """Copy ``inventory.json``'s records in; how many (counted before, if a crash came between)."""
    done = conn.execute("SELECT records FROM migrations WHERE sha256 = ?", (digest,)).fetchone()
    if done:  # committed, then a crash came before the rename
        return int(done[0])
    if conn.execute("SELECT 1 FROM records LIMIT 1").fetchone():
        raise InventoryError(
            f"Both {legacy} and {path} hold an inventory: move {legacy.name} aside "
            "(the database is the current one) and run the command again."
        )
    inv = Inventory(conn, path, writable=True)
    for record in records:
        inv.add(record)
    at = dt.datetime.now(dt.UTC).isoformat()
    conn.execute(
        "INSERT INTO migrations VALUES (?, ?, ?, ?)", (legacy.name, digest, len(records), at)
    )
    return len(records)


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


@contextlib.contextmanager
def transaction(directory: Path) -> Iterator[Inventory]:
    """``BEGIN IMMEDIATE``: the block's reads and writes, committed when it ends.

    Inside :func:`certkit.sqlitefiles.kept_open` the connection is kept for the next one.
    """
    path = directory / DB_NAME
    conn = sqlitefiles.take(path) or open_db(directory, readonly=False)
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _translate(path, e) from None
        inv = Inventory(conn, path, writable=True)
        try:
            yield inv
            inv.flush()
            crash_point("before-commit")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            conn.rollback()
            raise _translate(path, e) from None
        except BaseException:
            conn.rollback()
            raise
    finally:
        sqlitefiles.give_back(path, conn)
    crash_point("after-commit")


def reader(directory: Path) -> Inventory:
    """The inventory through a read-only connection (created or migrated first if needed)."""
    return Inventory(open_db(directory, readonly=True), directory / DB_NAME)


def integrity_problems(directory: Path) -> list[str]:
    """``PRAGMA integrity_check``'s findings (empty: the database is sound)."""
    path = directory / DB_NAME
    if not path.exists():  # not migrated yet: can it be?
        try:
            if (directory / LEGACY_NAME).exists():
                read_json_inventory(directory / LEGACY_NAME)
        except OperationError as e:
            return [e.message]
        return []
    try:
        conn = _connect(path, readonly=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as e:
        return [str(e)]
    found = [str(r[0]) for r in rows]
    return [] if found == ["ok"] else found


def backup_to(directory: Path, dest: Path) -> None:
    """A consistent copy of the inventory database at ``dest`` (SQLite's backup API)."""
    source = open_db(directory, readonly=True)
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, files.PRIVATE_FILE)
        os.close(fd)
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            target.close()
    except sqlite3.Error as e:
        raise _translate(directory / DB_NAME, e) from None
    finally:
        source.close()
