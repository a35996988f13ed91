"""Writing files that matter: atomically, with the right mode from the start.

The permissions policy lives here and nowhere else:

* private directories 0700, private files (keys, anything holding a key) 0600,
* public files (certificates, metadata) 0644.

Every write goes to a temporary file in the target directory, created with
its final mode (so it is never briefly world-readable, whatever the umask),
is fsynced, then renamed over the target, and the directory is fsynced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

PRIVATE_DIR = 0o700
PUBLIC_DIR = 0o755
PRIVATE_FILE = 0o600
PUBLIC_FILE = 0o644

StrPath = str | os.PathLike[str]


def ensure_dir(path: StrPath, mode: int = PRIVATE_DIR) -> Path:
    """Create ``path`` (and parents) if missing; set ``mode`` on the ones created.

    Existing directories keep their mode, except the leaf which is set to
    ``mode`` when it is a private directory (tighten, never loosen).
    """
    p = Path(path)
    missing: list[Path] = []
    cur = p
    while not cur.exists():
        missing.append(cur)
        cur = cur.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, mode)
        os.chmod(d, mode)  # mkdir honours the umask; chmod does not
    if mode == PRIVATE_DIR and p.stat().st_mode & 0o077:
        os.chmod(p, mode)
    return p


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes, mode: int, *, fsync: bool = True) -> Path:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def atomic_write(path: StrPath, data: bytes | str, mode: int = PUBLIC_FILE) -> Path:
    """Write ``data`` to ``path`` atomically with ``mode``; the directory must exist."""
    p = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = _write_temp(p, raw, mode)
    try:
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(p.parent)
    return p


def atomic_write_many(items: Iterable[tuple[StrPath, bytes | str, int]]) -> list[Path]:
    """Write many files atomically with one fsync per file and one per directory.

    All temporary files are written and fsynced first, then renamed, then
    each directory touched is fsynced once: the same guarantee as
    :func:`atomic_write` for every file, without an fsync storm per rename.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data, mode in items:
            p = Path(path)
            raw = data.encode() if isinstance(data, str) else data
            staged.append((_write_temp(p, raw, mode), p))
        for tmp, p in staged:
            os.replace(tmp, p)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for d in {p.parent for _, p in staged}:
        _fsync_dir(d)
    return [p for _, p in staged]


def read_text(path: StrPath) -> str | None:
    """Return the file's text, or None when it does not exist."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def locked(lock_path: StrPath) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on ``lock_path`` for the block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
