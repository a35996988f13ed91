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
import errno
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
    if not p.is_dir():  # never chmod (or write under) a file standing where the dir goes
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(p))
    if mode == PRIVATE_DIR and p.stat().st_mode & 0o077:
        os.chmod(p, mode)
    return p


def _through_link(path: StrPath) -> Path:
    """The file to replace: a symlink's target, so the link itself survives.

    Configuration managers often link ``/etc/docker/daemon.json`` to a file
    they own; renaming over the link would silently cut it.
    """
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


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
    p = _through_link(path)
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

    All temporary files are written first and made durable, then renamed,
    then each directory touched (and its parent) is made durable once: no target ever holds a
    partial file, and once this returns every file is on disk.  A large batch
    (bulk issuance: thousands of files) does its fsyncs from a few threads at
    once instead of one after the other; the filesystem commits them together,
    which is about ten times faster on ext4 and flushes nothing but these files.
    """
    batch = [(_through_link(path), data, mode) for path, data, mode in items]
    bulk = len(batch) >= _PARALLEL_MIN
    staged: list[tuple[Path, Path]] = []
    try:
        for p, data, mode in batch:
            raw = data.encode() if isinstance(data, str) else data
            staged.append((_write_temp(p, raw, mode, fsync=not bulk), p))
        if bulk:
            _fsync_all([tmp for tmp, _ in staged])
        for tmp, p in staged:
            os.replace(tmp, p)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    # Each directory, and its parent: a directory made for this batch must be durable too.
    _fsync_all(sorted({d for _, p in staged for d in (p.parent, p.parent.parent)}))
    return [p for _, p in staged]


# From this many files on, fsyncs run in parallel (below, threads cost more than they save).
_PARALLEL_MIN = 16
_FSYNC_THREADS = 16


def _fsync_path(path: Path) -> None:
    """fsync a file or directory by path (Linux flushes through a read-only descriptor)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: list[Path]) -> None:
    """fsync every path; many at once from a few threads; the first error is raised."""
    if len(paths) < _PARALLEL_MIN:
        for p in paths:
            _fsync_path(p)
        return
    import threading  # already loaded by the interpreter in practice; costs nothing

    pending = iter(paths)
    take = threading.Lock()
    errors: list[OSError] = []

    def worker() -> None:
        while not errors:
            with take:
                p = next(pending, None)
            if p is None:
                return
            try:
                _fsync_path(p)
            except OSError as e:
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(min(_FSYNC_THREADS, len(paths)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def tls_files(
    directory: StrPath, names: tuple[str, str, str], ca_pem: bytes, cert_pem: bytes, key_pem: bytes
) -> list[tuple[StrPath, bytes | str, int]]:
    """The writes of a TLS directory for :func:`atomic_write_many`: only the key is private.

    ``names`` is one of :data:`certkit.paths.CLIENT_FILES` or ``SERVER_FILES``.
    """
    d = Path(directory)
    ca_name, cert_name, key_name = names
    return [
        (d / ca_name, ca_pem, PUBLIC_FILE),
        (d / cert_name, cert_pem, PUBLIC_FILE),
        (d / key_name, key_pem, PRIVATE_FILE),
    ]


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
