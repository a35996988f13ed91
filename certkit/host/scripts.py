"""The two remote scripts of an SSH install: read the host's files, write a plan there.

1. **read**: prints daemon.json, the docker units and drop-ins (base64
   between markers), giving the same :class:`~certkit.host.hostfiles.HostFiles`
   a local install reads, so planning is the same for both;
2. **write**: stages every file next to its target (created under
   ``umask 077``, mode set before the move), backs up the old daemon.json,
   moves everything into place, and puts the previous files back if any step
   fails (or, with a restart, if Docker does not come back).

Secrets travel inside the script as arguments of the shell's *builtin*
``printf``: no process on the host ever has the key in its argument list.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..errors import OperationError
from .ssh import SSH, sh_quote

_FILE = "CERTKIT-FILE "


_EOF = "CERTKIT-EOF"


_OK = "CERTKIT-OK"
WRITE_OK = _OK  # the write script's last line: every step finished


@dataclass
class RemoteFile:
    """A file read from the host: its bytes and permission bits."""

    path: PurePosixPath
    data: bytes
    mode: int | None


def read_script(
    singles: Sequence[PurePosixPath],
    globs: Sequence[PurePosixPath],
    written: Sequence[PurePosixPath] = (),
    private_dir: PurePosixPath | None = None,
) -> str:
    """The remote script printing each existing file in ``singles`` and matching ``globs``.

    Each file comes out as ``CERTKIT-FILE MODE PATH``, its base64 lines, then
    ``CERTKIT-EOF``; a file that exists but cannot be read stops the script
    with a message saying to connect as root or pass ``--sudo``.  Before
    anything is issued it also refuses what the install must not write
    through: a link among ``written`` (dangling or not: it would be replaced
    by a file), and a ``private_dir`` that is a link, not root's, or writable
    by others.
    """
    lines = [
        "set -u",
        _NEED_BASE64,
        *_write_target_checks(written, private_dir),
        "dump() {",
        '  [ -e "$1" ] || return 0',
        '  [ -f "$1" ] || { echo "CERTKIT-ERROR $1 on the host is not a regular file."; exit 3; }',
        '  [ -r "$1" ] || { echo "CERTKIT-ERROR cannot read $1 on the host as $(id -un):'
        ' connect as root or pass --sudo."; exit 3; }',
        '  printf \'CERTKIT-FILE %s %s\\n\' "$(stat -c %a -- "$1" 2>/dev/null || echo -)" "$1"',
        '  base64 < "$1" || exit 3',
        "  echo CERTKIT-EOF",
        "}",
    ]
    lines += [f"dump {sh_quote(p)}" for p in singles]
    for pattern in globs:
        parent, name = sh_quote(pattern.parent), pattern.name
        if not re.fullmatch(r"[A-Za-z0-9._*-]+", name):
            raise ValueError(f"unsupported glob {pattern}")
        lines.append(f'for f in {parent}/{name}; do dump "$f"; done')
    return "\n".join(lines) + "\n"


def _write_target_checks(
    written: Sequence[PurePosixPath], private_dir: PurePosixPath | None
) -> list[str]:
    q = sh_quote
    s = [
        f'[ -L {q(p)} ] && {{ echo "CERTKIT-REFUSED {_dq(p)} on the host is a symbolic link '
        f"(to $(readlink -- {q(p)})): certkit never replaces links on a host; replace it with "
        'the file itself, then run again."; exit 3; }'
        for p in written
    ]
    if private_dir is not None:
        d, shown = q(private_dir), _dq(private_dir)
        s += [
            f'[ -L {d} ] && {{ echo "CERTKIT-REFUSED {shown} on the host is a symbolic link: '
            'give the certificate directory itself (--cert-dir)."; exit 3; }',
            f"if [ -e {d} ]; then",
            f'  [ -d {d} ] || {{ echo "CERTKIT-REFUSED {shown} on the host is not a directory."; '
            "exit 3; }",
            f'  case "$(stat -c %u -- {d})" in 0|"$(id -u)") ;; *) echo "CERTKIT-REFUSED {shown} '
            "on the host is owned by another user: chown root it (nobody else may control "
            'where the server key goes), then run again."; exit 3;; esac',
            f'  case "$(stat -c %A -- {d})" in ?????w????|????????w?) echo "CERTKIT-REFUSED '
            f'{shown} on the host is writable by other users: chmod go-w it, then run again."; '
            "exit 3;; esac",
            "fi",
        ]
    return s


_NEED_BASE64 = (
    "command -v base64 >/dev/null 2>&1 || "
    "{ echo 'CERTKIT-ERROR base64 (from coreutils) is missing on the host: "
    "install coreutils.'; exit 3; }"
)


def parse_dump(lines: Sequence[str]) -> dict[PurePosixPath, RemoteFile]:
    """Turn :func:`read_script`'s output back into files, keyed by path."""
    found: dict[PurePosixPath, RemoteFile] = {}
    current: tuple[PurePosixPath, int | None] | None = None
    chunks: list[str] = []
    for line in lines:
        if current is None:
            if line.startswith(_FILE):
                mode_text, _, path_text = line[len(_FILE) :].partition(" ")
                mode = int(mode_text, 8) if re.fullmatch(r"[0-7]+", mode_text) else None
                current, chunks = (PurePosixPath(path_text), mode), []
        elif line == _EOF:
            path, mode = current
            try:
                data = base64.b64decode("".join(chunks), validate=True)
            except ValueError:  # binascii.Error, or text that is not ASCII
                raise OperationError(
                    f"The host sent {path} garbled (not base64); retry, or check its shell."
                ) from None
            found[path] = RemoteFile(path, data, mode)
            current = None
        else:
            chunks.append(line.strip())
    if current is not None:
        raise OperationError(f"The host stopped sending {current[0]} halfway; retry.")
    return found


@dataclass(frozen=True)
class Write:
    """A file to put on the host: content and final mode."""

    path: PurePosixPath
    data: bytes
    mode: int


@dataclass
class WriteJob:
    """Everything one write round trip does, in order.

    ``expected`` says what each target must still hold (None: absent),
    checked first so a file changed on the host since it was read is never
    overwritten; ``dirs`` are created when missing (with their mode; a
    private one is also tightened when it exists), ``writes`` staged then
    moved into place, ``backups`` (source, copy) made just before the moves.
    """

    writes: list[Write]
    dirs: list[tuple[PurePosixPath, int]] = field(default_factory=list)
    backups: list[tuple[PurePosixPath, PurePosixPath]] = field(default_factory=list)
    expected: dict[PurePosixPath, bytes | None] = field(default_factory=dict)
    restart: bool = False
    cleanup: list[PurePosixPath] = field(default_factory=list)  # removed after the moves
    token: str = field(default_factory=lambda: secrets.token_hex(16))


_AS_ROOT = "connect as root or pass --sudo."


_SAME = "Nothing was changed."


def _dq(value: str | PurePosixPath) -> str:
    """``value`` made safe inside a double-quoted sh string (for messages)."""
    return re.sub(r'([\\"$`])', r"\\\1", str(value))


def _b64_lines(data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    return " ".join(f"'{encoded[i : i + 76]}'" for i in range(0, len(encoded), 76)) or "''"


def write_script(job: WriteJob, host: str) -> str:
    """The remote script for ``job``: stage all, back up, move all, restore on failure.

    Contents are embedded as arguments of the builtin ``printf`` (no exec,
    so they appear in no process list), piped into ``base64 -d`` writing a
    temp file created under ``umask 077`` in the target directory; the mode
    is set with ``chmod`` before the file is moved over its target.
    """
    on = f"on {host}"
    # Indexed: a path written twice (daemon.json during a swap) gets two staging files.
    tmp = [w.path.with_name(f".{w.path.name}.certkit-{job.token}-{i}.new")
           for i, w in enumerate(job.writes)]  # fmt: skip
    old = [w.path.with_name(f".{w.path.name}.certkit-{job.token}-{i}.old")
           for i, w in enumerate(job.writes)]  # fmt: skip
    s = [
        "set -u",
        "umask 077",
        _NEED_BASE64,
        'fail() { echo "CERTKIT-ERROR $*"; exit 3; }',
        "command -v sha256sum >/dev/null 2>&1 || "
        "fail 'sha256sum (from coreutils) is missing on the host: install coreutils.'",
    ]
    s += _unchanged_checks(job, on)
    s += _undo_functions(job, tmp, old)
    s += _staging(job, tmp, on)
    s += _keeping_copies(job, old, on)
    s.append("sync")
    for i, w in enumerate(job.writes):
        s.append(
            f"mv -f -- {sh_quote(tmp[i])} {sh_quote(w.path)} && m{i}=1 "
            f'|| fail "cannot move the new {_dq(w.path)} into place {on}; $(state)."'
        )
    s += _written_checks(job, on)
    if job.cleanup:
        s.append(f"rm -f -- {' '.join(sh_quote(p) for p in job.cleanup)}")
    if job.restart:
        s += _restart(on)
    s += [f"rm -f -- {' '.join(sh_quote(o) for o in old)}", "sync", f"echo {_OK}"]
    return "\n".join(s) + "\n"


def _written_checks(job: WriteJob, on: str) -> list[str]:
    """After the moves: each target is a regular file (no link) holding what was sent."""
    s = []
    final = {w.path: w for w in job.writes}  # a path written twice: its last content
    for w in final.values():
        t, digest = sh_quote(w.path), hashlib.sha256(w.data).hexdigest()
        s.append(
            f'{{ [ -f {t} ] && [ ! -L {t} ] && [ "$(sha256sum < {t} | cut -c1-64)" = {digest} ]; }}'
            f' || fail "{_dq(w.path)} {on} changed while certkit wrote it (someone else writes '
            'there); $(state)."'
        )
    return s


def _unchanged_checks(job: WriteJob, on: str) -> list[str]:
    """Stop, changing nothing, when a target no longer holds what the plan was made from."""
    s = []
    for path, before in job.expected.items():
        changed = f'fail "{_dq(path)} {on} changed since certkit read it: run again. {_SAME}"'
        if before is None:
            s.append(f"{{ [ -e {sh_quote(path)} ] || [ -L {sh_quote(path)} ]; }} && {changed}")
        else:
            digest = hashlib.sha256(before).hexdigest()
            s.append(
                f'[ "$(sha256sum < {sh_quote(path)} 2>/dev/null | cut -c1-64)" = {digest} ] '
                f"|| {changed}"
            )
    return s


def _undo_functions(job: WriteJob, tmp: list[PurePosixPath], old: list[PurePosixPath]) -> list[str]:
    """Bookkeeping and the shell functions that undo a partial write.

    ``cI`` = dir I created, ``eI`` = target I existed, ``mI`` = target I moved.
    """
    q = sh_quote
    s = [f"c{i}=0" for i in range(len(job.dirs))]
    s += [f"e{i}=0; m{i}=0" for i in range(len(job.writes))]
    discard = " ".join(q(t) for t in tmp)
    backups = " ".join(q(copy) for _, copy in job.backups)
    s += [
        f"discard() {{ rm -f -- {discard} {backups}; }}",
        "drop_dirs() {",
        *[
            f'  [ "$c{i}" = 1 ] && rmdir -- {q(d)} 2>/dev/null'
            for i, (d, _) in reversed(list(enumerate(job.dirs)))
        ],
        "  return 0",
        "}",
        # Puts every moved target back and drops the other kept copies;
        # $bad lists what could not be restored.
        "restore() {",
        "  bad=''",
    ]
    for i in reversed(range(len(job.writes))):
        target, shown = q(job.writes[i].path), _dq(job.writes[i].path)
        s += [
            f'  if [ "$m{i}" = 1 ]; then',
            f'    if [ "$e{i}" = 1 ]; then mv -f -- {q(old[i])} {target} || bad="$bad {shown}";',
            f'    else rm -f -- {target} || bad="$bad {shown}"; fi',
            f"    m{i}=0",
            f"  else rm -f -- {q(old[i])}",
            "  fi",
        ]
    return [
        *s,
        "  discard; drop_dirs",
        '  [ -z "$bad" ]',
        "}",
        "state() {",
        '  if restore; then echo "the host was left as it was"; '
        'else echo "restoring failed for$bad, whose previous versions are kept next to '
        f'them as .*.certkit-{job.token}-*.old"; fi',
        "}",
    ]


def _staging(job: WriteJob, tmp: list[PurePosixPath], on: str) -> list[str]:
    """Create the missing directories, then every new file next to its target."""
    q = sh_quote
    s = []
    for i, (d, mode) in enumerate(job.dirs):
        # An existing private directory is tightened, never loosened.
        tighten = f"chmod {mode:o} -- {q(d)}" if not mode & 0o077 else ":"
        s.append(
            f"if [ -d {q(d)} ]; then {tighten}; "
            f"else mkdir -- {q(d)} && c{i}=1 && chmod {mode:o} -- {q(d)} "
            f'|| {{ drop_dirs; fail "cannot create {_dq(d)} {on} as $(id -un): {_AS_ROOT}'
            f' {_SAME}"; }}; fi'
        )
    for i, w in enumerate(job.writes):
        s += [
            f"[ -d {q(w.path)} ] && {{ discard; drop_dirs; fail "
            f'"{_dq(w.path)} {on} is a directory; move it aside and retry. {_SAME}"; }}',
            # set -C: the staging file is created exclusively (O_EXCL), never through a
            # link or into a file someone planted under that name.
            f"( set -C; printf '%s\\n' {_b64_lines(w.data)} | base64 -d > {q(tmp[i])} ) "
            f"&& chmod {w.mode:o} -- {q(tmp[i])} "
            f'|| {{ discard; drop_dirs; fail "cannot write into {_dq(w.path.parent)} {on} as '
            f"$(id -un) (if permission was denied: {_AS_ROOT[:-1]}; else the disk is full or "
            f'read-only). {_SAME}"; }}',
        ]
    return s


def _keeping_copies(job: WriteJob, old: list[PurePosixPath], on: str) -> list[str]:
    """Back up daemon.json, and keep a copy of every target to restore it on failure."""
    q = sh_quote
    s = [
        f"cp -p -- {q(src)} {q(copy)} "
        f'|| {{ discard; drop_dirs; fail "cannot back up {_dq(src)} {on}. {_SAME}"; }}'
        for src, copy in job.backups
    ]
    for i, w in enumerate(job.writes):
        target = q(w.path)
        s.append(
            f"if [ -e {target} ]; then e{i}=1; ln -f -- {target} {q(old[i])} 2>/dev/null "
            f"|| cp -p -- {target} {q(old[i])} "
            f"|| {{ rm -f -- {' '.join(q(o) for o in old)}; discard; drop_dirs; "
            f'fail "cannot keep a copy of {_dq(w.path)} {on}. {_SAME}"; }}; fi'
        )
    return s


def _restart(on: str) -> list[str]:
    """Restart Docker; when it does not come back, restore the files and restart again.

    ``reset-failed``: Debian's unit allows 3 starts per 60 s and one failed start
    uses up the rest (see :func:`certkit.host.local.restart_docker`).  systemctl
    must not read the script (our stdin), and its output is not ours.
    """
    return [
        "restart() { systemctl daemon-reload && "
        "{ systemctl reset-failed docker.service docker.socket; systemctl restart docker; }; }",
        "if ! { restart && systemctl is-active --quiet docker; } </dev/null >&2; then",
        '  st="$(state)"',
        "  restart </dev/null >&2 "
        '&& back="Docker was restarted with the previous configuration" '
        '|| back="Docker did not start with the previous configuration either"',
        f'  fail "Docker did not come back after the restart {on} '
        '(see journalctl -u docker there); $st, and $back."',
        "fi",
    ]


def run_write_job(ssh: SSH, job: WriteJob) -> None:
    """Carry out ``job`` on the host in one SSH session; :class:`OperationError` if it fails."""
    lines = ssh.run_script(write_script(job, ssh.target.host))
    if _OK not in lines:
        raise OperationError(
            f"The install on {ssh.target} stopped before it finished; check the files there."
        )
