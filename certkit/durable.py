"""The system-call layer of writing files: the umask, whole writes, durable batches.

A batch of new files is made durable with one ``syncfs(2)`` for the lot, or
one fsync each.

:func:`certkit.files.atomic_write_many` writes every temporary file of a
batch, makes them durable, renames them all into place, then makes the
renames durable.  "Durable" is one of two strategies, chosen in one place,
:func:`choose`:

``syncfs``
    ``syncfs(fd)`` flushes the whole filesystem holding ``fd``: every temp
    file at once (a few journal commits instead of one per file), then every
    rename at once.  It is trustworthy only on Linux 5.8 and later, where it
    reports the writeback errors seen since *that descriptor was opened*; so
    the descriptor is opened before the first temp file is written.  Older
    kernels return 0 even when a page failed to reach the disk.
``fsync``
    The portable way: each temp file, then each directory touched (and its
    parent), is fsynced; a large batch fsyncs from a few threads at once.

``fsync`` is chosen when ``syncfs`` is missing (no ctypes, no libc symbol),
when the kernel is older than 5.8, when the batch spans several filesystems
(one syncfs would not cover them), when the machine already has more than
:data:`DIRTY_LIMIT` of dirty page cache (syncfs would wait for everybody's
data to reach the disk, not just ours: per-file fsync is then faster and
fairer), or when ``$CERTKIT_SYNC=fsync`` asks for it (tests and benchmarks;
``$CERTKIT_SYNC=syncfs`` skips only the dirty-data heuristic, never a
correctness check).  A ``syncfs`` the system refuses (ENOSYS, EPERM,
EOPNOTSUPP: a seccomp filter, a sandbox) makes the batch fall back to fsync
there and then; any other error (EIO: a write failed) is raised, as an
fsync's would be.  :func:`last_choice` tells which strategy the last batch of
this process used, and why.

Either way the guarantee is the same: after a power loss each file of the
batch is complete (new) or absent (or still the old one), never partial
under its final name.
"""

from __future__ import annotations

import _thread
import errno
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

SYNC_ENV = "CERTKIT_SYNC"
MIN_KERNEL = (5, 8)
DIRTY_LIMIT = 256 * 1024 * 1024
"""Above this much dirty page cache (``/proc/meminfo`` ``Dirty:``), a batch fsyncs file by file."""

REFUSED = frozenset({errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP})
"""syncfs errors that say the call is not allowed (seccomp, a sandbox), not that a write failed:
the batch falls back to fsync instead of failing."""

# From this many files on, fsyncs run in parallel (below, threads cost more than they save).
PARALLEL_MIN = 16
_FSYNC_THREADS = 16

_last: tuple[str, str] = ("", "no batch written yet")
_syncfs_fn: list[Callable[[int], int] | None] = []  # loaded once: [] not yet, [None] missing


_umask: list[int] = []
_umask_lock = _thread.allocate_lock()


def umask() -> int:
    """The process umask, read once per process.

    Reading it with ``os.umask()`` means setting it for a moment, which races
    with any other thread creating a file; Linux (4.7+) shows it in
    ``/proc/self/status`` instead, so that is read, and ``os.umask`` is the
    fallback (under a lock).  certkit never changes its umask; a program that
    changes it after certkit wrote a file gets modes that are at worst
    tighter than asked (the mode given to ``open``/``mkdir`` is the final one,
    the umask only takes bits away), until it calls :func:`forget_umask`.
    """
    if not _umask:
        with _umask_lock:
            if not _umask:
                _umask.append(_read_umask())
    return _umask[0]


def forget_umask() -> None:
    """Read the umask again at the next write (after changing it in-process)."""
    _umask.clear()


def _read_umask() -> int:
    for line in _read_proc("/proc/self/status"):
        if line.startswith(b"Umask:") and line[6:].strip().isdigit():
            return int(line[6:].strip(), 8)
    old = os.umask(0o077)
    os.umask(old)
    return old


def needs_chmod(mode: int) -> bool:
    """True when the umask takes bits from ``mode`` (mkdir/open did not give it)."""
    return bool(mode & umask())


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def last_choice() -> tuple[str, str]:
    """``(strategy, reason)`` of the last batch this process made durable."""
    return _last


def kernel_reports_errors(release: str | None = None) -> bool:
    """True on Linux 5.8 or later (this kernel, or ``release``): syncfs reports write errors."""
    if release is None:
        uname = os.uname()
        if uname.sysname != "Linux":
            return False
        release = uname.release
    m = re.match(r"(\d+)\.(\d+)", release)
    return m is not None and (int(m[1]), int(m[2])) >= MIN_KERNEL


def dirty_bytes() -> int:
    """How much page cache waits to be written back, machine-wide (0 when unknown)."""
    for line in _read_proc("/proc/meminfo"):
        words = line.split()
        if words[:1] == [b"Dirty:"] and len(words) > 1 and words[1].isdigit():
            return int(words[1]) * 1024
    return 0


def _read_proc(path: str) -> list[bytes]:
    """The lines of a small /proc file (none when it cannot be read): one open, one read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        return os.read(fd, 1 << 16).splitlines()
    except OSError:
        return []
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    if not _syncfs_fn:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).syncfs
            fn.argtypes = [ctypes.c_int]
            fn.restype = ctypes.c_int
            _syncfs_fn.append(fn)
        except (ImportError, OSError, AttributeError):
            _syncfs_fn.append(None)
    return _syncfs_fn[0]


def syncfs(fd: int) -> None:
    """``syncfs(fd)``; OSError with the kernel's errno when it fails."""
    import ctypes

    fn = _load_syncfs()
    assert fn is not None
    if fn(fd) != 0:
        code = ctypes.get_errno() or errno.EIO
        raise OSError(code, os.strerror(code))


def choose(devices: set[int]) -> tuple[str, str]:
    """The strategy for a batch whose directories live on ``devices``, and why.

    The one place the fallback is decided; see the module docstring.
    """
    forced = os.environ.get(SYNC_ENV, "")
    if forced == "fsync":
        return "fsync", f"${SYNC_ENV}=fsync"
    if len(devices) != 1:
        return "fsync", "the files span several filesystems"
    if not kernel_reports_errors():
        return "fsync", "syncfs reports write errors only from Linux 5.8 on"
    if _load_syncfs() is None:
        return "fsync", "syncfs is not available (ctypes or libc lacks it)"
    if forced != "syncfs" and dirty_bytes() > DIRTY_LIMIT:
        return "fsync", "much dirty data is waiting: syncfs would flush it all"
    return "syncfs", "one filesystem, Linux >= 5.8"


class Sync:
    """How one batch becomes durable; open it before writing anything.

    ``dirs`` are the directories the batch writes into (an open descriptor of
    one of them may be given as ``fd``: it is used, not closed).  Call
    :meth:`temp` on each temp file's descriptor before closing it,
    :meth:`temps` once all are written, :meth:`renamed` after the renames,
    and :meth:`close` at the end.
    """

    def __init__(self, dirs: Sequence[Path], count: int, fd: int | None = None) -> None:
        global _last
        self.count = count
        self.dirs = dirs
        self._own = fd is None
        if fd is None:
            fd = os.open(dirs[0], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fd = fd
        try:
            devices = {os.fstat(self.fd).st_dev} | {os.stat(d).st_dev for d in dirs[1:]}
        except BaseException:
            self.close()
            raise
        self.strategy, why = choose(devices)
        _last = (self.strategy, why)

    @property
    def threaded(self) -> bool:
        """fsync strategy, large batch of paths (no ``fd`` given): temps are fsynced by path,
        from threads, once all are written."""
        return self.strategy == "fsync" and self._own and self.count >= PARALLEL_MIN

    def temp(self, fd: int) -> None:
        """A temp file is written (still open)."""
        if self.strategy == "fsync" and not self.threaded:
            os.fsync(fd)

    def temps(self, paths: Callable[[], list[Path]]) -> None:
        """Every temp file is written: make them durable before any rename."""
        if self.strategy == "syncfs":
            if not self._syncfs():
                fsync_all(paths())  # syncfs is refused here: fsync what syncfs would have
        elif self.threaded:
            fsync_all(paths())

    def renamed(self, dirs: Sequence[Path | int]) -> None:
        """Every rename is done: make them durable (``dirs``: paths or open descriptors)."""
        if self.strategy != "syncfs" or not self._syncfs():
            fsync_all(list(dirs))

    def _syncfs(self) -> bool:
        """syncfs; False (and fsync from now on) when the system refuses the call itself."""
        global _last
        try:
            syncfs(self.fd)
        except OSError as e:
            if e.errno in REFUSED:
                self.strategy = "fsync"
                _last = ("fsync", f"syncfs was refused ({e.strerror})")
                _syncfs_fn[:] = [None]  # the next batches choose fsync at once
                return False
            # A write error: name where the batch went, the files under this directory.
            raise OSError(e.errno, e.strerror, os.path.commonpath(self.dirs)) from None
        return True

    def close(self) -> None:
        if self._own and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def fsync_path(path: Path | int) -> None:
    """fsync a file or directory, by descriptor or path (a read-only open flushes on Linux)."""
    if isinstance(path, int):
        os.fsync(path)
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except IsADirectoryError:  # pragma: no cover - O_RDONLY opens directories on Linux
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_all(paths: Iterable[Path | int]) -> None:
    """fsync every path; many at once from a few threads; the first error is raised."""
    todo = list(paths)
    if len(todo) < PARALLEL_MIN:
        for p in todo:
            fsync_path(p)
        return
    import threading  # already loaded by the interpreter in practice; costs nothing

    pending = iter(todo)
    take = threading.Lock()
    errors: list[OSError] = []

    def worker() -> None:
        while not errors:
            with take:
                p = next(pending, None)
            if p is None:
                return
            try:
                fsync_path(p)
            except OSError as e:
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(min(_FSYNC_THREADS, len(todo)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
