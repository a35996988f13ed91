"""The engine's scripts, the same on every target: read the host's files, write a plan there.

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
from .engine import RESTORE_FAILED, HostStateUnknown
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


LINK_PREFIX = "CERTKIT-LINK "  # N RESOLVED: written path N is a link certkit follows
UNREADABLE_PREFIX = "CERTKIT-UNREADABLE "  # PATH: a dry run's user cannot read it

# as_root: the end of a "cannot ..." sentence: the hint for a user who is not root; root
# itself is told it was root (a read-only or otherwise protected file system, not rights).
SUDO_HINT = "connect as root or pass --sudo"  # this machine says "run certkit as root"
_AS_ROOT_FN = (
    'as_root() { if [ "$(id -u)" = 0 ]; then echo " (as root: check the file system there)"; '
    f'else echo ": {SUDO_HINT}"; fi; }}'
)


@dataclass(frozen=True)
class WriteTargets:
    """What an install writes, as the read script checks it before anything is issued.

    ``followed`` may be symbolic links (daemon.json, certkit's drop-in): a link
    is followed only where the link and its target sit in directories nobody
    but root (or the connecting user) can change; ``never_links`` (the
    certificate files) are never links; ``private_dir`` is the certificate
    directory, which holds nothing but ``private_names`` (certkit's own files).
    """

    followed: Sequence[PurePosixPath] = ()
    never_links: Sequence[PurePosixPath] = ()
    private_dir: PurePosixPath | None = None
    private_names: Sequence[str] = ()


def read_script(
    singles: Sequence[PurePosixPath],
    globs: Sequence[PurePosixPath],
    targets: WriteTargets = WriteTargets(),
    *,
    partial: bool = False,
) -> str:
    """The script printing each existing file in ``singles`` and matching ``globs``.

    Each file comes out as ``CERTKIT-FILE MODE PATH``, its base64 lines, then
    ``CERTKIT-EOF``; a file that exists but cannot be read stops the script
    with a message saying to connect as root or pass ``--sudo`` (to a user who is
    not root), or with ``partial`` (a dry run) is named on a ``CERTKIT-UNREADABLE``
    line, as is a file this user cannot even see (its directory closed to it).  Before
    anything is issued it refuses (``CERTKIT-REFUSED``) what the install must
    not write through (see :class:`WriteTargets`), and prints
    ``CERTKIT-LINK N PATH`` for each followed link.
    """
    if partial:  # a dry run: say what this user cannot read, and go on
        unreadable = [
            f'unreadable() {{ echo "{UNREADABLE_PREFIX}$1"; }}',
            'hidden() { d=$(dirname -- "$1"); [ -d "$d" ] && [ ! -x "$d" ]; }',
        ]
    else:
        unreadable = [
            'unreadable() { echo "CERTKIT-ERROR cannot read $1 on the host as $(id -un)'
            '$(as_root)"; exit 3; }',
            "hidden() { return 1; }",
        ]
    lines = [
        "set -u",
        _NEED_BASE64,
        _AS_ROOT_FN,
        *_SAFE_CHAIN,
        *_write_target_checks(targets),
        *unreadable,
        "dump() {",
        '  if [ ! -e "$1" ]; then hidden "$1" && unreadable "$1"; return 0; fi',
        '  [ -f "$1" ] || { echo "CERTKIT-ERROR $1 on the host is not a regular file."; exit 3; }',
        '  [ -r "$1" ] || { unreadable "$1"; return 0; }',
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


# safe_chain PATH LEAF: every directory from PATH up to / is owned by root or by the
# connecting user and writable by nobody else (a sticky ancestor like /tmp excepted, not
# the leaf: LEAF=1); a link on the way only when root or that user owns it.  As the local
# output-directory walk and sshd's StrictModes do.  Sets $why when it fails.
_SAFE_CHAIN = [
    "me=$(id -u)",
    "safe_chain() {",
    "  p=$1; leaf=$2",
    "  while :; do",
    '    st=$(stat -c \'%u %a\' -- "$p" 2>/dev/null) || { why="$p cannot be examined"; return 1; }',
    "    u=${st%% *}; a=${st#* }",
    '    case "$u" in 0|"$me") ;; *) why="$p is owned by another user (uid $u)"; return 1;; esac',
    '    if [ ! -L "$p" ] && [ $((0$a & 18)) -ne 0 ]; then',
    '      if [ "$leaf" = 1 ] || [ $((0$a & 512)) -eq 0 ]; then',
    '        why="$p is writable by other users (mode $a)"; return 1',
    "      fi",
    "    fi",
    '    [ "$p" = / ] && return 0',
    '    p=$(dirname -- "$p"); leaf=0',
    "  done",
    "}",
    # Both the path as given and as resolved: a link on the way must not lead elsewhere.
    'safe_both() { safe_chain "$1" "$2" && safe_chain "$(readlink -f -- "$1")" "$2"; }',
    'refuse() { echo "CERTKIT-REFUSED $*"; exit 3; }',
]


def _write_target_checks(t: WriteTargets) -> list[str]:
    q = sh_quote
    s = []
    for i, p in enumerate(t.followed):
        shown = _dq(p)
        s += [
            f"if [ -L {q(p)} ]; then",
            f'  r=$(readlink -f -- {q(p)}) && [ -f "$r" ] || refuse "{shown} on the host is a '
            f"symbolic link to a missing file ($(readlink -- {q(p)})): fix or remove the link, "
            'then run again; nothing was issued."',
            '  case "$r" in *"\n"*) refuse "the link '
            + shown
            + ' leads to a name with a newline.";; esac',
            f'  safe_both {q(p.parent)} 1 && safe_both "$(dirname -- "$r")" 1 '
            f'|| refuse "{shown} '
            "on the host is a symbolic link (to $r) and $why: certkit follows a link only where "
            "the link and its target sit in directories only root can change; replace the link "
            'with the file itself, then run again."',
            f'  echo "{LINK_PREFIX}{i} $r"',
            "fi",
        ]
    s += [
        f'[ -L {q(p)} ] && refuse "{_dq(p)} on the host is a symbolic link '
        f"(to $(readlink -- {q(p)})): certkit never replaces links on a host; replace it with "
        'the file itself, then run again."'
        for p in t.never_links
    ]
    if t.private_dir is not None:
        s += _private_dir_checks(t.private_dir, t.private_names)
    return s


def _private_dir_checks(d: PurePosixPath, names: Sequence[str]) -> list[str]:
    """The certificate directory: a new one under a safe chain of parents, or an existing
    one that is certkit's (only its files in it; tightened only when certkit made it)."""
    qd, shown = sh_quote(d), _dq(d)
    # certkit's files, their transitional next-* names, staging files and backups.
    own = "|".join([*(sh_quote(n) for n in names), *(sh_quote(f"next-{n}") for n in names)])
    own += "|.*.certkit-*|*.certkit-backup-*"
    return [
        f"if [ -L {qd} ]; then",
        f'  refuse "{shown} on the host is a symbolic link: give the certificate directory '
        'itself (--cert-dir)."',
        f"elif [ -e {qd} ]; then",
        f'  [ -d {qd} ] || refuse "{shown} on the host is not a directory."',
        f'  safe_both {qd} 1 || refuse "the certificate directory {shown} on the host is not '
        "safe: $why (nobody else may control where the server key goes): fix that (chown root, "
        'chmod go-w), then run again."',
        f"  for f in {qd}/* {qd}/.[!.]* {qd}/..?*; do",
        '    [ -e "$f" ] || [ -L "$f" ] || continue',
        '    case "${f##*/}" in ' + own + ") ;; *) refuse "
        f'"{shown} on the host holds other files (${{f##*/}}): certkit installs only into '
        "a directory of its own, which it creates; give a --cert-dir that does not exist "
        '(e.g. /etc/docker/certkit)."',
        "    esac",
        "  done",
        "else",
        f'  a={qd}; while [ ! -e "$a" ] && [ ! -L "$a" ]; do a=$(dirname -- "$a"); done',
        f'  safe_both "$a" 0 || refuse "the certificate directory {shown} on the host would be '
        "created where others can change it: $why (nobody else may control where the server "
        'key goes): fix that, or choose another --cert-dir, then run again."',
        "fi",
    ]


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
    # Keep the copies after a restart, until certkit sees dockerd serve the new certificate:
    # then commit_script drops them, or rollback_script puts them back.
    keep: bool = False
    # --method socket: docker.socket's drop-in changes, so the socket restarts before dockerd
    # (its TCP listener appears or goes; a renewal leaves the socket, and the port, alone).
    socket: bool = False
    # --keep-containers: SIGHUP dockerd and see live-restore on before the restart.
    live_restore: bool = False


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
    is set with ``chmod`` before the file is moved over its target.  A path
    written twice (daemon.json during a pair swap) keeps one copy of what it
    held, so a rollback restores it once and leaves nothing behind.  Stopped
    by the engine's time limit (SIGTERM), it restores the host before it ends.
    """
    on = f"on {host}"
    # Indexed: a path written twice (daemon.json during a swap) gets two staging files.
    tmp = [w.path.with_name(f".{w.path.name}.certkit-{job.token}-{i}.new")
           for i, w in enumerate(job.writes)]  # fmt: skip
    paths = list(dict.fromkeys(w.path for w in job.writes))  # each written path once
    old = [p.with_name(f".{p.name}.certkit-{job.token}-{j}.old") for j, p in enumerate(paths)]
    s = [
        "set -u",
        "umask 077",
        _NEED_BASE64,
        'fail() { echo "CERTKIT-ERROR $*"; exit 3; }',
        _AS_ROOT_FN,
        "command -v sha256sum >/dev/null 2>&1 || "
        "fail 'sha256sum (from coreutils) is missing on the host: install coreutils.'",
    ]
    s += _unchanged_checks(job, on)
    s += _undo_functions(job, paths, tmp, old)
    s.append(
        f"trap 'fail \"the step {on} did not finish within its time limit and was stopped; "
        "$(state).\"' TERM"
    )
    s += _staging(job, tmp, on)
    s += _keeping_copies(job, paths, old, on)
    s.append("sync")
    for i, w in enumerate(job.writes):
        s.append(
            f"mv -f -- {sh_quote(tmp[i])} {sh_quote(w.path)} && m{paths.index(w.path)}=1 "
            f'|| fail "cannot move the new {_dq(w.path)} into place {on}; $(state)."'
        )
    s += _written_checks(job, on)
    if job.cleanup:
        s.append(f"rm -f -- {' '.join(sh_quote(p) for p in job.cleanup)}")
    if job.restart and job.live_restore:
        s += _live_restore_first(on)
    if job.restart:
        s += _restart(on, job.socket)
    s.append("trap - TERM")
    if job.keep:
        s += [f'[ "$c{i}" = 1 ] && echo "{MADE_PREFIX}{i}"' for i in range(len(job.dirs))]
    elif old:
        s.append(f"rm -f -- {' '.join(sh_quote(o) for o in old)}")
    s += ["sync", f"echo {_OK}"]
    return "\n".join(s) + "\n"


MADE_PREFIX = "CERTKIT-MADE "  # a kept write job created directory N


def _olds(job: WriteJob) -> list[tuple[PurePosixPath, PurePosixPath]]:
    """(written path, its kept copy) of a write job, as :func:`write_script` names them."""
    paths = list(dict.fromkeys(w.path for w in job.writes))
    return [(p, p.with_name(f".{p.name}.certkit-{job.token}-{j}.old")) for j, p in enumerate(paths)]


def commit_script(job: WriteJob) -> str:
    """After a kept job (``keep``): dockerd serves the new files, drop the kept copies."""
    olds = " ".join(sh_quote(o) for _, o in _olds(job))
    return f"rm -f -- {olds}\necho {_OK}\n" if olds else f"echo {_OK}\n"


def rollback_script(job: WriteJob, host: str, made: Sequence[int], why: str) -> str:
    """After a kept job whose restart did not bring dockerd back (``why``): put every
    written path back from its kept copy (none: it did not exist), drop the backup and the
    directories the job made, restart dockerd, and fail with the one sentence saying so."""
    q = sh_quote
    s = ["set -u", "bad=''"]
    for path, old in reversed(_olds(job)):
        s.append(
            f'if [ -e {q(old)} ]; then mv -f -- {q(old)} {q(path)} || bad="$bad {_dq(path)}"; '
            f'else rm -f -- {q(path)} || bad="$bad {_dq(path)}"; fi'
        )
    if job.backups:
        s.append(f"rm -f -- {' '.join(q(c) for _, c in job.backups)}")
    s += [f"rmdir -- {q(job.dirs[i][0])} 2>/dev/null" for i in sorted(set(made), reverse=True)]
    s += [
        'if [ -z "$bad" ]; then st="the host was left as it was"; '
        f'else st="{RESTORE_FAILED}$bad, whose previous versions are kept next to them as '
        f'.*.certkit-{job.token}-*.old"; fi',
        f"{{ systemctl daemon-reload && {{ {_RESET}; {_socket_first(job.socket)}"
        "systemctl restart docker; }; } </dev/null >&2 "
        '&& back="Docker was restarted with the previous configuration" '
        '|| back="Docker did not start with the previous configuration either"',
        f'echo "CERTKIT-ERROR Docker did not come back after the restart on {_dq(host)} '
        f'({_dq(why)}); $st, and $back."',
        "exit 3",
    ]
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


def _undo_functions(
    job: WriteJob,
    paths: list[PurePosixPath],
    tmp: list[PurePosixPath],
    old: list[PurePosixPath],
) -> list[str]:
    """Bookkeeping and the shell functions that undo a partial write.

    ``cI`` = dir I created; for each written path J: ``eJ`` = it existed (its
    copy is ``old[J]``), ``mJ`` = something was moved over it.
    """
    q = sh_quote
    s = [f"c{i}=0" for i in range(len(job.dirs))]
    s += [f"e{j}=0; m{j}=0" for j in range(len(paths))]
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
    for j in reversed(range(len(paths))):
        target, shown = q(paths[j]), _dq(paths[j])
        s += [
            f'  if [ "$m{j}" = 1 ]; then',
            f'    if [ "$e{j}" = 1 ]; then mv -f -- {q(old[j])} {target} || bad="$bad {shown}";',
            f'    else rm -f -- {target} || bad="$bad {shown}"; fi',
            f"    m{j}=0",
            f"  else rm -f -- {q(old[j])}",
            "  fi",
        ]
    return [
        *s,
        "  discard; drop_dirs",
        '  [ -z "$bad" ]',
        "}",
        "state() {",
        '  if restore; then echo "the host was left as it was"; '
        f'else echo "{RESTORE_FAILED}$bad, whose previous versions are kept next to '
        f'them as .*.certkit-{job.token}-*.old"; fi',
        "}",
    ]


def _staging(job: WriteJob, tmp: list[PurePosixPath], on: str) -> list[str]:
    """Create the missing directories (an existing one keeps its mode: certkit tightens
    only what it created), then every new file next to its target."""
    q = sh_quote
    s = []
    for i, (d, mode) in enumerate(job.dirs):
        s.append(
            f"[ -d {q(d)} ] || {{ mkdir -- {q(d)} && c{i}=1 && chmod {mode:o} -- {q(d)} "
            f'|| {{ drop_dirs; fail "cannot create {_dq(d)} {on} as $(id -un)$(as_root).'
            f' {_SAME}"; }}; }}'
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
            "$(id -un) (the disk is full or read-only, or permission was denied$(as_root)). "
            f'{_SAME}"; }}',
        ]
    return s


def _keeping_copies(
    job: WriteJob, paths: list[PurePosixPath], old: list[PurePosixPath], on: str
) -> list[str]:
    """Back up daemon.json, and keep one copy of every target to restore it on failure."""
    q = sh_quote
    s = [
        f"cp -p -- {q(src)} {q(copy)} "
        f'|| {{ discard; drop_dirs; fail "cannot back up {_dq(src)} {on}. {_SAME}"; }}'
        for src, copy in job.backups
    ]
    for j, path in enumerate(paths):
        target = q(path)
        s.append(
            f"if [ -e {target} ]; then e{j}=1; ln -f -- {target} {q(old[j])} 2>/dev/null "
            f"|| cp -p -- {target} {q(old[j])} "
            f"|| {{ rm -f -- {' '.join(q(o) for o in old)}; discard; drop_dirs; "
            f'fail "cannot keep a copy of {_dq(path)} {on}. {_SAME}"; }}; fi'
        )
    return s


_RESET = "systemctl reset-failed docker.service docker.socket"

DOCKER_INFO_PREFIX = "CERTKIT-DOCKERINFO "
# Appended to the read script on a real root: swarm state, running containers, live-restore.
DOCKER_INFO_PROBE = (
    'command -v docker >/dev/null 2>&1 && echo "' + DOCKER_INFO_PREFIX + "$(docker info -f "
    "'{{.Swarm.LocalNodeState}} {{.ContainersRunning}} {{.LiveRestoreEnabled}}' "
    '</dev/null 2>/dev/null)"\n'
)


def parse_docker_info(lines: Sequence[str]) -> tuple[str, int, bool] | None:
    """(swarm state, running containers, live-restore) from :data:`DOCKER_INFO_PROBE`."""
    for line in lines:
        if line.startswith(DOCKER_INFO_PREFIX):
            parts = line[len(DOCKER_INFO_PREFIX) :].split()
            if len(parts) == 3 and parts[1].isdigit():
                return parts[0], int(parts[1]), parts[2] == "true"
    return None


def _live_restore_first(on: str) -> list[str]:
    """``--keep-containers``: daemon.json (just written) has live-restore; SIGHUP dockerd
    so it applies before the restart, and wait until ``docker info`` says it is on; else
    put the files back and fail without restarting (containers untouched)."""
    return [
        "lr() { docker info -f '{{.LiveRestoreEnabled}}' </dev/null 2>/dev/null; }",
        '{ systemctl reload docker || kill -HUP "$(systemctl show -p MainPID --value docker)"; }'
        " </dev/null >/dev/null 2>&1",
        'i=0; while [ "$(lr)" != true ] && [ $i -lt 50 ]; do i=$((i+1)); sleep 0.2; done',
        'if [ "$(lr)" != true ]; then',
        '  st="$(state)"; systemctl reload docker </dev/null >/dev/null 2>&1',
        f'  fail "dockerd did not turn live-restore on after a reload {on} (see journalctl -u '
        'docker there); $st, and dockerd was not restarted."',
        "fi",
    ]


def _socket_first(socket: bool) -> str:
    return "systemctl restart docker.socket && " if socket else ""


def _restart(on: str, socket: bool = False) -> list[str]:
    """Restart Docker; when it does not come back, restore the files and restart again.

    ``reset-failed``: Debian's unit allows 3 starts per 60 s and one failed start
    uses up the rest (see :func:`certkit.host.local.restart_docker`).  systemctl
    must not read the script (our stdin), and its output is not ours.
    """
    return [
        "restart() { systemctl daemon-reload && "
        f"{{ {_RESET}; {_socket_first(socket)}systemctl restart docker; }}; }}",
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
        raise HostStateUnknown(
            f"The install on {ssh.target} stopped before it finished; check the files there."
        )
