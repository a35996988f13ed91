"""What a failed SQLite call on an inventory means, in one sentence for the user.

SQLite reports a full disk, a read-only directory, a lock held too long and a
damaged file each in its own way; :func:`translate` turns each into an
:class:`InventoryError` that says what to do (exit 1).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .errors import OperationError

BUSY_SECONDS = 60.0  # how long a writer waits for another one before giving up


class InventoryError(OperationError):
    """The inventory database cannot be read or written (exit 1)."""


def corrupted(path: Path, detail: str) -> InventoryError:
    return InventoryError(
        f"The inventory {path} is unreadable ({detail}): restore it from a backup "
        "(`certkit ca backup` makes one) or move it aside to start an empty inventory."
    )


# SQLite's primary result codes that are about the disk, not the database.
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 3, 8, 10, 13, 14


def disk_full(path: Path) -> bool:
    """True when the file system holding ``path`` is (nearly) full: SQLite reports a write
    that hit ENOSPC in its -wal or -shm file as a plain I/O error, and by the time it is
    reported the failed files are gone again, so "under 1 MiB left" is the sign."""
    try:
        st = os.statvfs(path.parent)
        return st.f_bavail * st.f_frsize < 1 << 20
    except OSError:
        return False


def translate(path: Path, e: sqlite3.Error) -> InventoryError:
    text = str(e)
    code = getattr(e, "sqlite_errorcode", 0) & 0xFF
    if isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return InventoryError(
            f"The inventory {path} stayed locked by another certkit process for "
            f"{BUSY_SECONDS:g} s; try again when it has finished."
        )
    if code == _SQLITE_FULL or (code == _SQLITE_IOERR and disk_full(path)):
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


def disk_refused(path: Path, e: sqlite3.Error) -> bool:
    """True when a reader failed only because it could not make its -shm file."""
    code = getattr(e, "sqlite_errorcode", 0) & 0xFF
    return code in (_SQLITE_CANTOPEN, _SQLITE_FULL, _SQLITE_READONLY) or (
        code == _SQLITE_IOERR and disk_full(path)
    )
