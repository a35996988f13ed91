"""SQLite databases written cheaply: created in one durable step, kept open for a command.

:func:`create` builds a new WAL database in a temporary file without a sync
per statement, fsyncs it once and links it into place: other processes see
no database or a complete one (never a file without its schema), and
creating costs two syncs (the file, its directory) instead of seven.

:func:`kept_open` keeps write connections open for a whole command.
Closing the last connection to a WAL database checkpoints it (an fdatasync of
the WAL and one of the database) and deletes the WAL, which the next writer
creates again (an fdatasync of the directory): four syncs around each
transaction's one, its commit.  ``certkit setup`` makes five transactions;
inside :func:`kept_open` they share one connection per inventory, and the
checkpoint happens once, when the block ends.

Nothing else changes: each commit still syncs the WAL before it returns
(``synchronous=FULL``), other processes see it at once (they read the WAL),
SQLite's automatic checkpoint still bounds the WAL (1,000 pages), and no
``-wal`` file outlives the block.  A connection is only reused by the thread
and process that opened the block: another thread, or a forked child, opens
its own as it would without the block.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from .files import fsync_dir

_kept: dict[Path, sqlite3.Connection] | None = None
_owner = (0, 0)  # (pid, thread) that opened the block


def _mine() -> bool:
    return _kept is not None and _owner == (os.getpid(), threading.get_ident())


@contextlib.contextmanager
def kept_open() -> Iterator[None]:
    """Within the block, this thread's inventory transactions reuse one connection per database.

    The connections are closed (the WAL checkpointed and removed) when the block
    ends, even on an error.  An inner block changes nothing: the outer one closes.
    """
    global _kept, _owner
    if _kept is not None:
        yield
        return
    _kept, _owner = {}, (os.getpid(), threading.get_ident())
    try:
        yield
    finally:
        kept, _kept = _kept, None
        for conn in kept.values():
            conn.close()


def create(path: Path, statements: tuple[str, ...], mode: int) -> bool:
    """A new WAL database at ``path`` (file ``mode``) holding ``statements``' schema.

    False, and nothing changed, when ``path`` exists by then (the caller holds a lock,
    so only a file left by an older certkit).  A failure leaves nothing behind.
    """
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = OFF")  # the one fsync below covers it all
            conn.execute("PRAGMA journal_mode = WAL")  # kept in the file's header
            conn.execute("BEGIN IMMEDIATE")
            for statement in statements:
                conn.execute(statement)
            conn.execute("COMMIT")
        finally:
            conn.close()  # checkpoints into tmp, removes its -wal and -shm
        os.fsync(fd)
        os.link(tmp, path)  # never over a database another process made
    except FileExistsError:
        return False
    except BaseException:
        remove(tmp)
        raise
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)  # the new name is on disk
    return True


def remove(path: Path) -> None:
    """Delete the database at ``path`` with its ``-wal`` and ``-shm`` files (those present)."""
    for p in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
        p.unlink(missing_ok=True)


def take(path: Path) -> sqlite3.Connection | None:
    """The kept connection to ``path``, now the caller's (None: open one)."""
    return _kept.pop(path, None) if _mine() and _kept is not None else None


def give_back(path: Path, conn: sqlite3.Connection) -> None:
    """Keep ``conn`` for the next transaction on ``path`` inside the block, else close it."""
    if _mine() and _kept is not None and not conn.in_transaction and path not in _kept:
        _kept[path] = conn
    else:
        conn.close()
