"""The inventory's file: its schema and versions, opening it, and migrating into it.

:func:`open_db` hands out a connection to ``cas/<name>/inventory.sqlite3``,
creating the database (0600, WAL, the whole schema) or upgrading an older
version in place first, under the store's lock; a CA still holding
``inventory.json`` has it migrated in the same step.  :func:`backup_to` and
:func:`integrity_problems` serve ``certkit ca backup`` and ``doctor``.
The queries are :mod:`certkit.inventorydb`'s.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import sys
import urllib.parse
from pathlib import Path

from . import files, sqlitefiles
from .errors import OperationError
from .inventory_errors import (
    BUSY_SECONDS,
    InventoryError,
    corrupted,
    disk_refused,
    translate,
)
from .records import Record, read_json_inventory

DB_NAME = "inventory.sqlite3"
LEGACY_NAME = "inventory.json"
SCHEMA_VERSION = 2  # PRAGMA user_version

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
FULL_SCHEMA = (*SCHEMA_V1, *(s for v in sorted(_UPGRADES) for s in _UPGRADES[v]))


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
    for statement in FULL_SCHEMA:
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
        if readonly and disk_refused(path, e):
            return _read_immutable(path)
        raise translate(path, e) from None
    return conn


def _read_immutable(path: Path) -> sqlite3.Connection:
    """A reader for a store on a full disk: no writer can commit there either, so the
    file cannot change under us (``list`` and ``status`` still work)."""
    try:
        conn = _connect(path, readonly=True, immutable=True)
        _check_version(conn, path)
    except sqlite3.Error as e:
        raise translate(path, e) from None
    return conn


def _initialise(path: Path, legacy: Path) -> None:
    """Create the database (0600, WAL, schema) and migrate ``inventory.json`` into it.

    The JSON file is read first: when it is unreadable, nothing is created.
    """
    source = read_json_inventory(legacy) if legacy.exists() else None
    schema = (*FULL_SCHEMA, f"PRAGMA user_version = {SCHEMA_VERSION}")
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
        from .inventorydb import crash_point

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
    from .inventorydb import Inventory  # the records' encoding lives with the queries

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
        raise translate(directory / DB_NAME, e) from None
    finally:
        source.close()
