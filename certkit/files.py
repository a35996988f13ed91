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
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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
    """Write many files atomically: the guarantee of :func:`atomic_write` for each.

    All temporary files are written first, made durable, then renamed, then
    the directories touched are made durable.  A small batch fsyncs each file
    and each directory once.  A large batch (bulk issuance) does not fsync
    thousands of files one by one: one ``syncfs(2)`` per filesystem flushes
    every temporary file before any rename, and one more after the renames
    flushes the directory entries (Linux only; elsewhere per-file fsync).
    Either way no target ever holds a partial file, and once this returns
    every file is on disk.
    """
    batch = [(Path(path), data, mode) for path, data, mode in items]
    bulk = len(batch) >= _BULK_FILES and _syncfs() is not None
    staged: list[tuple[Path, Path]] = []
    try:
        for p, data, mode in batch:
            raw = data.encode() if isinstance(data, str) else data
            staged.append((_write_temp(p, raw, mode, fsync=not bulk), p))
        if bulk:
            _sync_filesystems({p.parent for p, _, _ in batch})
        for tmp, p in staged:
            os.replace(tmp, p)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    dirs = {p.parent for _, p in staged}
    if bulk and len(dirs) > 1:
        _sync_filesystems(dirs)
    else:
        for d in dirs:
            _fsync_dir(d)
    return [p for _, p in staged]


# From this many files on, one syncfs per filesystem beats one fsync per file.
_BULK_FILES = 16
_SYNCFS_UNSET: Any = object()
_syncfs_fn: Any = _SYNCFS_UNSET


def _syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs(fd)``, or None where it does not exist (not Linux/glibc/musl)."""
    global _syncfs_fn
    if _syncfs_fn is _SYNCFS_UNSET:
        _syncfs_fn = None
        if sys.platform.startswith("linux"):
            import ctypes  # only bulk writes pay for it

            try:
                fn = ctypes.CDLL(None, use_errno=True).syncfs
                fn.argtypes = [ctypes.c_int]
                _syncfs_fn = fn
            except (OSError, AttributeError):
                pass
    return _syncfs_fn  # type: ignore[no-any-return]


def _sync_filesystems(dirs: Iterable[Path]) -> None:
    """Flush every filesystem holding one of ``dirs``, waiting until it is on disk."""
    fn = _syncfs()
    assert fn is not None
    one_per_device = {os.stat(d).st_dev: d for d in dirs}
    for d in one_per_device.values():
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if fn(fd) != 0:
                import ctypes

                err = ctypes.get_errno()
                raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(d))
        finally:
            os.close(fd)


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
