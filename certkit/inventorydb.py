"""Each CA's inventory in SQLite: the records, the queries, and the transactions.

``cas/<name>/inventory.sqlite3`` (WAL, ``synchronous=FULL``, 0600) holds one
row per certificate.  Writers change it in ``BEGIN IMMEDIATE`` transactions,
so concurrent certkit processes neither lose a record nor reuse a serial (a
``UNIQUE`` constraint); ``list`` and ``status`` read through a read-only
connection.

The file itself (schema, versions, creation, the migration from
``inventory.json``, backups) is :mod:`certkit.inventory_schema`'s; what a failed
SQLite call means is :mod:`certkit.inventory_errors`'.  Their public names are
re-exported here, the module callers import.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import sqlitefiles
from .inventory_errors import BUSY_SECONDS as BUSY_SECONDS
from .inventory_errors import InventoryError as InventoryError
from .inventory_errors import corrupted as corrupted
from .inventory_errors import translate as _translate
from .inventory_schema import DB_NAME as DB_NAME
from .inventory_schema import LEGACY_NAME as LEGACY_NAME
from .inventory_schema import SCHEMA_V1 as SCHEMA_V1
from .inventory_schema import SCHEMA_VERSION as SCHEMA_VERSION
from .inventory_schema import backup_to as backup_to
from .inventory_schema import integrity_problems as integrity_problems
from .inventory_schema import open_db as open_db
from .records import Record

if TYPE_CHECKING:  # certkit.origins loads when an origin is used (records.py says why)
    from .origins import Origin

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
_KINDS = ("ca", "server", "client", "ci")  # the schema's CHECK, in _KIND_ORDER's order
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
        installed = "(SELECT json_group_array(path) FROM installed i WHERE i.serial = r.serial)"
        # One kind at a time, in name order: SQLite walks the (kind, name) index and sorts
        # each name's few records, so the first row comes before the last is read.
        sql = (
            f"SELECT {_FIELDS}, id, {installed} FROM records r WHERE kind = ? "
            "ORDER BY name, not_after, id"
        )
        for one_kind in [kind] if kind is not None else _KINDS:
            group: list[tuple[Record, _Row]] = []
            try:
                for row in self._conn.execute(sql, (one_kind,)):
                    if group and row[2] != group[0][1][2]:
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
