"""Writing files that matter: atomically, with the right mode from the start.

The permissions policy lives here and nowhere else:

* private directories 0700, private files (keys, anything holding a key) 0600,
* public files (certificates, metadata) 0644.

Every write goes to a temporary file in the target directory, created with
its final mode (so it is never briefly world-readable, whatever the umask),
made durable, then renamed over the target, and the rename is made durable.
A batch (:func:`atomic_write_many`) is made durable as a whole: see
:mod:`certkit.durable` for the two strategies (one ``syncfs`` or an fsync per
file) and when each is used.

Each file and directory costs few system calls: ``O_CREAT`` and ``mkdir``
are given the final mode, and a ``chmod`` follows only when the process umask
took bits away from it (the umask is read once per process, see
:func:`certkit.durable.umask`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from . import durable
from .errors import OperationError, UsageError

PRIVATE_DIR = 0o700
PUBLIC_DIR = 0o755
PRIVATE_FILE = 0o600
PUBLIC_FILE = 0o644

StrPath = str | os.PathLike[str]


def ensure_dir(path: StrPath, mode: int = PRIVATE_DIR) -> Path:
    """Create ``path`` (and parents) if missing; set ``mode`` on the ones created.

    Existing directories keep their mode, except the leaf which is set to
    ``mode`` when it is a private directory (tighten, never loosen).  A new
    directory costs one ``mkdir`` (plus a ``chmod`` only under a umask that
    removes bits from ``mode``); an existing one a ``mkdir`` and a ``stat``.
    """
    p = Path(path)
    try:
        os.mkdir(p, mode)
    except FileNotFoundError:
        if p.parent == p:
            raise
        ensure_dir(p.parent, mode)
        return ensure_dir(p, mode)
    except FileExistsError:
        st = os.stat(p)
        # never chmod (or write under) a file standing where the dir goes
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(p)) from None
        if mode == PRIVATE_DIR and st.st_mode & 0o077:
            os.chmod(p, mode)
        return p
    if durable.needs_chmod(mode):
        os.chmod(p, mode)
    return p


def _through_link(path: StrPath) -> Path:
    """The file to replace: a symlink's target, so the link itself survives.

    Configuration managers often link ``/etc/docker/daemon.json`` to a file
    they own; renaming over the link would silently cut it.
    """
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def fsync_dir(path: StrPath) -> None:
    """fsync a directory: a rename or a new file in it is on disk once this returns."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# What the disk (not certkit) refused: said as one sentence instead of a traceback.
_DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}
)


def disk_failure(path: StrPath, e: OSError) -> OperationError | None:
    """One sentence for a write the file system refused (full, read-only, not allowed, I/O
    error), or None for anything else (a bug: it keeps its traceback)."""
    if e.errno not in _DISK_ERRNOS:
        return None
    reason = os.strerror(e.errno or 0).lower()
    advice = {
        errno.ENOSPC: "free some space and run the command again",
        errno.EDQUOT: "free some space and run the command again",
        errno.EROFS: "the file system is mounted read-only",
        errno.EIO: "check the disk (dmesg)",
    }.get(e.errno or 0, "run certkit as a user who may write there")
    return OperationError(f"Writing {path} failed ({reason}): {advice}; nothing was replaced.")


def _write_temp(path: Path, data: bytes, mode: int, sync: durable.Sync | None, tag: str) -> Path:
    """``data`` in a new temp file next to ``path``, created with ``mode``; ``sync`` is told."""
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as e:
        raise disk_failure(path, e) or e from None
    try:
        if durable.needs_chmod(mode):
            os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask
        durable.write_all(fd, data)
        if sync is None:
            os.fsync(fd)
        else:
            sync.temp(fd)
    except BaseException as e:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise disk_failure(path, e) or e from None
        raise
    os.close(fd)
    return tmp


def atomic_write(path: StrPath, data: bytes | str, mode: int = PUBLIC_FILE) -> Path:
    """Write ``data`` to ``path`` atomically with ``mode``; the directory must exist."""
    p = _through_link(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = _write_temp(p, raw, mode, None, os.urandom(4).hex())
    try:
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(p.parent)
    return p


def atomic_write_many(
    items: Iterable[tuple[StrPath, bytes | str, int]], *, keep_links: bool = True
) -> list[Path]:
    """Write many files atomically: the guarantee of :func:`atomic_write` for each.

    All temporary files are written first and made durable together, then
    renamed, then the renames are made durable (each directory touched, and
    its parent: a directory made for this batch must survive too).  No
    target ever holds a partial file, and once this returns every file is on
    disk; when it raises before the renames, nothing was replaced.
    :mod:`certkit.durable` decides how (one ``syncfs`` for the whole batch
    where that is safe, else an fsync per file from a few threads).

    ``keep_links`` (the default) replaces a symlink's target so the link
    survives; ``False`` replaces whatever is at the path (saves a ``stat``
    per file where the caller knows there are no links, as under freshly
    made or checked directories).
    """
    batch = [
        (_through_link(path) if keep_links else Path(path), data, mode)
        for path, data, mode in items
    ]
    if not batch:
        return []
    dirs = list(dict.fromkeys(d for p, _, _ in batch for d in (p.parent, p.parent.parent)))
    sync = durable.Sync(dirs, len(batch))
    tag = os.urandom(4).hex()
    staged: list[tuple[Path, Path]] = []
    renamed = 0
    try:
        for i, (p, data, mode) in enumerate(batch):
            raw = data.encode() if isinstance(data, str) else data
            staged.append((_write_temp(p, raw, mode, sync, f"{tag}-{i}"), p))
        sync.temps(lambda: [tmp for tmp, _ in staged])
        for tmp, p in staged:
            os.replace(tmp, p)
            renamed += 1
    except BaseException:
        for tmp, _ in staged[renamed:]:
            tmp.unlink(missing_ok=True)
        sync.close()
        raise
    try:
        sync.renamed(dirs)
    finally:
        sync.close()
    return [p for _, p in staged]


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


def tls_items(
    names: tuple[str, str, str], ca_pem: bytes, cert_pem: bytes, key_pem: bytes
) -> list[tuple[str, bytes | str, int]]:
    """The ``(name, data, mode)`` items of a TLS directory for :func:`write_output_dir`."""
    modes = (PUBLIC_FILE, PUBLIC_FILE, PRIVATE_FILE)
    return list(zip(names, (ca_pem, cert_pem, key_pem), modes, strict=True))


def read_text(path: StrPath) -> str | None:
    """Return the file's text, or None when it does not exist."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def locked_dir(directory: StrPath) -> Iterator[None]:
    """Hold an exclusive flock on an existing directory itself for the block: no lock file
    is created, so a command refused inside the block leaves nothing behind."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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


# ---------------------------------------------------------------- output paths the user names
#
# Every --out, --cert-dir and recorded output directory goes through these:
# the directory is opened without following a link (O_NOFOLLOW|O_DIRECTORY),
# it and its parents must belong to this user or root and be writable by
# nobody else (as sshd's StrictModes checks them: a sticky /tmp is fine), and
# files are created relative to that descriptor, exclusively, never through a
# link.  check_* validate without writing (run before anything is issued);
# write_* repeat the checks on the descriptors they write through.


class UnsafeOutput(UsageError):
    """An output path certkit refuses; the message is one sentence with the fix."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _check_dir_stat(st: os.stat_result, path: Path, flag: str, *, leaf: bool) -> None:
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafeOutput(
            f"{flag} {path} is owned by uid {st.st_uid}, not by you or root: certkit writes "
            "only into directories nobody else controls; choose another."
        )
    sticky = bool(st.st_mode & stat.S_ISVTX) and not leaf
    if st.st_mode & 0o022 and not sticky:
        raise UnsafeOutput(
            f"{flag} {path} is writable by other users (mode {st.st_mode & 0o7777:o}): make it "
            "writable by you only (chmod go-w), or choose another directory."
        )


def _lstat_at(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_child(fd: int, name: str, path: Path, flag: str, *, leaf: bool) -> int | None:
    """Directory ``name`` under ``fd``, or None when absent.

    The leaf is never reached through a link; a link among the parents is
    followed only when this user or root owns it (like /var/run -> /run).
    """
    st = _lstat_at(fd, name)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode) and (leaf or st.st_uid not in (0, os.geteuid())):
        raise UnsafeOutput(
            f"{flag} {path} is a symbolic link"
            + ("" if leaf else f" owned by uid {st.st_uid}")
            + ": certkit never writes through such links; give a real directory."
        )
    follow = 0 if stat.S_ISLNK(st.st_mode) else os.O_NOFOLLOW
    try:
        return os.open(name, _DIR_FLAGS | follow, dir_fd=fd)
    except FileNotFoundError:
        raise UnsafeOutput(f"{flag} {path} is a link to a missing directory; fix it.") from None
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            raise UnsafeOutput(
                f"{flag} {path} is not a directory; point {flag} at a directory."
            ) from None
        raise UnsafeOutput(f"{flag} {path}: {e.strerror}; choose another directory.") from None


def _walk(
    path: StrPath, flag: str, *, create: bool, mode: int, holds_file: bool = False
) -> tuple[int | None, Path]:
    """Open directory ``path`` safely: (its descriptor, or None when missing and not ``create``).

    Directories created on the way get ``mode``, set with fchmod.  With
    ``holds_file`` (the directory of one output file, like /tmp) a sticky
    directory is fine: nobody else can replace a file created there.
    """
    target = Path(os.path.abspath(Path(path).expanduser()))
    fd = os.open("/", _DIR_FLAGS)
    walked = Path("/")
    try:
        parts = target.parts[1:]
        for i, name in enumerate(parts):
            walked = walked / name
            leaf = i == len(parts) - 1
            child = _open_child(fd, name, walked, flag, leaf=leaf)
            if child is None and not create:
                if not os.access(f"/proc/self/fd/{fd}", os.W_OK | os.X_OK):
                    raise UnsafeOutput(
                        f"{flag} {walked} cannot be created: {walked.parent} is not writable; "
                        "choose another directory."
                    )
                os.close(fd)
                return None, target
            if child is None:
                child = _make_child(fd, name, walked, flag, mode)
            os.close(fd)
            fd = child
            _check_dir_stat(os.fstat(fd), walked, flag, leaf=leaf and not holds_file)
        return fd, target
    except BaseException:
        os.close(fd)
        raise


def _make_child(fd: int, name: str, path: Path, flag: str, mode: int) -> int:
    created = _mkdir_at(fd, name, path, flag, mode)
    child = _open_child(fd, name, path, flag, leaf=True)
    if child is None:  # pragma: no cover - removed between mkdir and open
        raise UnsafeOutput(f"{flag} {path} vanished while it was created; run again.")
    if not created:  # another process made it meanwhile
        os.fchmod(child, mode)
    return child


def _mkdir_at(fd: int, name: str, path: Path, flag: str, mode: int = PRIVATE_DIR) -> bool:
    """Make directory ``name`` with ``mode`` under ``fd``: True when made, False when it was
    there.  ``chmod`` only when the umask took bits from ``mode``."""
    try:
        os.mkdir(name, mode, dir_fd=fd)
    except FileExistsError:
        return False
    except OSError as e:
        raise UnsafeOutput(
            f"{flag} {path} cannot be created ({e.strerror}); choose another."
        ) from None
    if durable.needs_chmod(mode):
        os.chmod(name, mode, dir_fd=fd)
    return True


def _existing(fd: int, names: Iterable[str], where: Path, flag: str) -> list[str]:
    """Which of ``names`` are in ``fd``; links and non-files among them are refused."""
    existing = []
    for name in names:
        st = _lstat_at(fd, name)
        if st is None:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeOutput(
                f"{flag}: {where / name} is a symbolic link: certkit never writes through "
                "links, nor replaces them; remove it or choose another place."
            )
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeOutput(f"{flag}: {where / name} is not a regular file; move it away.")
        existing.append(name)
    return existing


def _clashes(fd: int, names: Iterable[str], where: Path, flag: str, force: bool) -> None:
    """Refuse links and non-files among ``names`` in ``fd``; existing files need ``force``."""
    existing = _existing(fd, names, where, flag)
    if existing and not force:
        raise UnsafeOutput(
            f"{flag}: {where} already holds {', '.join(existing)}; pass --force to replace "
            f"{'it' if len(existing) == 1 else 'them'}."
        )


def check_output_dir(
    path: StrPath, names: Iterable[str], *, force: bool, flag: str = "--out"
) -> Path:
    """Validate an output directory and the files to write there, writing nothing."""
    fd, target = _walk(path, flag, create=False, mode=PRIVATE_DIR)
    if fd is not None:
        try:
            _clashes(fd, names, target, flag, force)
        finally:
            os.close(fd)
    return target


def check_output_subdirs(
    base: StrPath, subdirs: Sequence[str], names: Sequence[str], *, flag: str = "--out"
) -> tuple[Path, list[Path]]:
    """:func:`check_output_dir` of ``base/SUB`` for each SUB ("" is ``base``), walking once.

    Returns ``base`` (absolute) and the files among ``names`` that already
    exist there; links and non-files are refused.  Writes nothing.
    """
    fd, target = _walk(base, flag, create=False, mode=PRIVATE_DIR)
    found: list[Path] = []
    if fd is None:
        return target, found
    try:
        for sub in subdirs:
            child = _open_checked(fd, sub, target / sub, flag)
            if child is not None:
                try:
                    found += [target / sub / n for n in _existing(child, names, target / sub, flag)]
                finally:
                    os.close(child)
    finally:
        os.close(fd)
    return target, found


def _open_checked(fd: int, sub: str, where: Path, flag: str) -> int | None:
    """Directory ``sub`` of ``fd`` ("": ``fd`` itself) opened and checked, or None if absent."""
    child = _open_child(fd, sub, where, flag, leaf=True) if sub else os.dup(fd)
    if child is not None:
        try:
            _check_dir_stat(os.fstat(child), where, flag, leaf=True)
        except BaseException:
            os.close(child)
            raise
    return child


def make_output_subdirs(
    base: StrPath, subdirs: Sequence[str], names: Sequence[str] = (), *, flag: str = "--out"
) -> None:
    """Create (0700) or open ``base`` and each ``base/SUB`` ("": ``base``), checked as
    :func:`write_output_dir` does; existing ones keep their mode.  A new SUB costs one
    ``mkdir``.

    In an existing one, the temp files an interrupted run left for ``names``
    (``.NAME.*.tmp``) are removed: the batch about to run replaces them.
    """
    fd, target = _walk(base, flag, create=True, mode=PRIVATE_DIR)
    assert fd is not None
    try:
        for sub in subdirs:
            if sub and _mkdir_at(fd, sub, target / sub, flag):
                continue
            child = _open_checked(fd, sub, target / sub, flag)  # it was there: check it
            if child is not None:
                _remove_stale_temps(child, names)
                os.close(child)
    finally:
        os.close(fd)


def _remove_stale_temps(fd: int, names: Sequence[str]) -> None:
    prefixes = tuple(f".{n}." for n in names)
    if not prefixes:
        return
    for entry in os.listdir(fd):
        if entry.startswith(prefixes) and entry.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry, dir_fd=fd)


def write_output_dir(
    path: StrPath,
    items: Iterable[tuple[str, bytes | str, int]],
    *,
    force: bool,
    flag: str = "--out",
    tighten: bool = True,
) -> list[Path]:
    """Write ``(name, data, mode)`` files into directory ``path`` (created 0700).

    With ``tighten`` an existing directory is made 0700 too (fchmod on its
    descriptor).  Each file is staged with O_CREAT|O_EXCL|O_NOFOLLOW relative
    to that descriptor and fsynced; then all are renamed in place.
    """
    batch = [(n, d.encode() if isinstance(d, str) else d, m) for n, d, m in items]
    fd, target = _walk(path, flag, create=True, mode=PRIVATE_DIR)
    assert fd is not None
    try:
        if tighten:
            os.fchmod(fd, PRIVATE_DIR)
        _write_at(fd, target, batch, force, flag)
    finally:
        os.close(fd)
    return [target / n for n, _, _ in batch]


def _write_at(
    fd: int, target: Path, batch: list[tuple[str, bytes, int]], force: bool, flag: str
) -> None:
    """Stage each file under ``fd``, make them durable, rename them in place, sync again."""
    _clashes(fd, [n for n, _, _ in batch], target, flag, force)
    sync = durable.Sync([target], len(batch), fd=fd)
    tag = os.urandom(4).hex()
    staged: list[tuple[str, str]] = []
    renamed = 0
    try:
        for i, (name, data, file_mode) in enumerate(batch):
            staged.append((_stage_at(fd, name, data, file_mode, sync, f"{tag}-{i}"), name))
        sync.temps(lambda: [target / tmp for tmp, _ in staged])  # if syncfs is refused
        for tmp, name in staged:
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            renamed += 1
        sync.renamed([fd])
    finally:
        for tmp, _ in staged[renamed:]:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)


def _stage_at(fd: int, name: str, data: bytes, mode: int, sync: durable.Sync, tag: str) -> str:
    tmp = f".{name}.{tag}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        out = os.open(tmp, flags, mode, dir_fd=fd)
    except OSError as e:
        raise disk_failure(name, e) or e from None
    try:
        if durable.needs_chmod(mode):
            os.fchmod(out, mode)  # O_CREAT's mode is filtered by the umask
        durable.write_all(out, data)
        sync.temp(out)
    except BaseException as e:
        os.close(out)
        os.unlink(tmp, dir_fd=fd)
        if isinstance(e, OSError):
            raise disk_failure(name, e) or e from None
        raise
    os.close(out)
    return tmp


def _file_dir(p: Path, flag: str) -> int:
    """The descriptor of an output file's directory, which must exist and be safe."""
    fd, _ = _walk(p.parent, flag, create=False, mode=PRIVATE_DIR, holds_file=True)
    if fd is None:
        raise UnsafeOutput(f"{flag} {p}: the directory {p.parent} does not exist.")
    return fd


def check_output_file(path: StrPath, *, force: bool, flag: str = "--out") -> Path:
    """Validate an output file: its directory exists and is safe, the file is no link
    and is replaced only with ``force``."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    fd = _file_dir(p, flag)
    try:
        _clashes(fd, [p.name], p.parent, flag, force)
    finally:
        os.close(fd)
    return p


def write_output_file(
    path: StrPath, data: bytes | str, mode: int, *, force: bool, flag: str = "--out"
) -> Path:
    """Write one file the way :func:`write_output_dir` does; its directory must exist."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    fd = _file_dir(p, flag)
    try:
        raw = data.encode() if isinstance(data, str) else data
        _write_at(fd, p.parent, [(p.name, raw, mode)], force, flag)  # checks clashes itself
    finally:
        os.close(fd)
    return p
