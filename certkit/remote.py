"""Install a server certificate on a remote Docker host over SSH.

The CA stays on the administrator's machine; only the server's files travel.
certkit drives the system's OpenSSH client (so ``~/.ssh/config``, agents and
jump hosts work as the user expects) and needs nothing on the host but a
POSIX shell and coreutils.  An install is two round trips:

1. **read**: one remote script prints daemon.json, the docker units and
   drop-ins (base64 between markers), giving the same :class:`HostFiles` a
   local install reads, so :func:`certkit.daemon.plan_install` computes
   exactly the same merge;
2. **write**: one remote script stages every file next to its target
   (created under ``umask 077``, mode set before the move), backs up the old
   daemon.json, moves everything into place, and puts the previous files
   back if any step fails (or, with ``--restart``, if Docker does not come
   back).

Secrets only ever travel on ssh's standard input, inside the script, as
arguments of the shell's *builtin* ``printf``: no process on either machine
ever has the key in its argument list, and no remote temp file holding it is
readable by anyone but its owner.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import certs, daemon, files
from .ca import mark_installed
from .errors import OperationError, UsageError
from .names import ip_or_none
from .paths import SystemPaths
from .server import InstallOutcome, ServerResult, issue_into, server_names
from .store import CAStore

# Lines the remote scripts print to talk back to us.
_START = "CERTKIT-START"
_ERROR = "CERTKIT-ERROR "
_FILE = "CERTKIT-FILE "
_EOF = "CERTKIT-EOF"
_OK = "CERTKIT-OK"
# Exit status of a remote script that reported its own error.
_SCRIPT_FAILED = 3
# ssh exits 255 when ssh itself (not the remote command) failed.
_SSH_FAILED = 255

_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$")
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------- the target


@dataclass(frozen=True)
class SSHTarget:
    """Where to connect: ``[USER@]HOST[:PORT]`` taken apart.

    ``host`` may be a name from ``~/.ssh/config``; ``user`` and ``port``
    stay None when not given, so ssh's own configuration decides.
    """

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and self.port else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"


def parse_target(spec: str) -> SSHTarget:
    """Parse ``[USER@]HOST[:PORT]``; an IPv6 address with a port is written ``[ADDR]:PORT``.

    >>> parse_target("admin@docker1.example.com:2222")
    SSHTarget(host='docker1.example.com', user='admin', port=2222)
    >>> parse_target("root@[2001:db8::1]:22")
    SSHTarget(host='2001:db8::1', user='root', port=22)
    """
    bad = UsageError(
        f"--ssh {spec!r} is not a valid SSH destination: use [USER@]HOST[:PORT], "
        "e.g. admin@docker1.example.com:22 or root@[2001:db8::1]:22."
    )
    user: str | None = None
    rest = spec.strip()
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        if not _USER.match(user):
            raise bad
    port_text: str | None = None
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or (tail and not tail.startswith(":")):
            raise bad
        port_text = tail[1:] if tail else None
        if _ipv6_or_none(host) is None:
            raise bad
    elif rest.count(":") > 1:  # a bare IPv6 address, no port
        host = rest
        if _ipv6_or_none(host) is None:
            raise bad
    else:
        host, sep, port_text_or_empty = rest.partition(":")
        port_text = port_text_or_empty if sep else None
        if not _HOST.match(host):
            raise bad
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise bad
        port = int(port_text)
    return SSHTarget(host, user, port)


def _ipv6_or_none(text: str) -> object:
    """The IPv6 address in ``text`` (an ``%zone`` suffix allowed, as ssh takes it), else None."""
    ip = ip_or_none(text.split("%", 1)[0])
    return ip if ip is not None and ip.version == 6 else None


# ---------------------------------------------------------------- the transport


# Options a user may not pass: they would switch host key checking off or
# let ssh prompt (certkit never prompts: BatchMode).
_REFUSED_OPTIONS = {
    "stricthostkeychecking": {"no", "off"},
    "batchmode": {"no"},
}


def _option_key_value(option: str) -> tuple[str, str]:
    key, _, value = option.strip().replace("=", " ", 1).partition(" ")
    return key.lower(), value.strip().strip('"').lower()


def check_ssh_options(options: Iterable[str]) -> tuple[str, ...]:
    """Validate ``--ssh-option`` values (``Key=Value``), refusing any that weaken host checks."""
    checked = []
    for option in options:
        key, value = _option_key_value(option)
        if not key or option.lstrip().startswith("-") or not re.match(r"^[a-z0-9]+$", key):
            raise UsageError(
                f"--ssh-option {option!r} is not an ssh option: use Key=Value, "
                "e.g. --ssh-option ProxyJump=bastion."
            )
        if value in _REFUSED_OPTIONS.get(key, set()):
            raise UsageError(
                f"--ssh-option {option!r} would turn off host key checking or allow prompts, "
                "which certkit keeps on: add the host's key to known_hosts "
                "(connect once with ssh and check the fingerprint) instead."
            )
        checked.append(option.strip())
    return tuple(checked)


@dataclass(frozen=True)
class SSH:
    """How to reach the host: the target plus the user's ssh choices.

    Every command runs as ``ssh -T -o BatchMode=yes ... HOST sh -s`` (with
    ``sudo -n`` in front of ``sh`` when ``sudo``) and gets its script on
    standard input.
    """

    target: SSHTarget
    identity: str | None = None
    options: tuple[str, ...] = ()
    sudo: bool = False
    connect_timeout: int = 20
    ssh_binary: str = "ssh"

    @classmethod
    def build(
        cls,
        spec: str,
        *,
        identity: str | None = None,
        options: Sequence[str] = (),
        sudo: bool = False,
    ) -> SSH:
        """Validate the user's ``--ssh``, ``--identity`` and ``--ssh-option`` values."""
        if identity is not None and not Path(identity).expanduser().is_file():
            raise UsageError(f"--identity {identity!r} is not a readable key file.")
        return cls(
            parse_target(spec),
            str(Path(identity).expanduser()) if identity else None,
            check_ssh_options(options),
            sudo,
        )

    def argv(self) -> list[str]:
        """The local ``ssh`` command line: no secret in it, ever."""
        # ssh keeps the first value it sees for an option: ours that must not
        # change come first, the user's next, our defaults last.
        argv = [self.ssh_binary, "-T", "-o", "BatchMode=yes"]
        for option in self.options:
            argv += ["-o", option]
        argv += [
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
        ]
        if self.identity:
            argv += ["-i", self.identity]
        if self.target.port:
            argv += ["-p", str(self.target.port)]
        if self.target.user:
            argv += ["-l", self.target.user]
        remote = "env LC_ALL=C sh -s"
        if self.sudo:
            remote = "sudo -n " + remote
        return [*argv, "--", self.target.host, remote]

    def run_script(self, script: str, timeout: float = 600) -> list[str]:
        """Run ``script`` on the host with sh; returns its output lines after the start marker.

        Raises :class:`OperationError` with one sentence for every way this
        can fail: ssh missing, connection or authentication refused, host key
        unknown or changed, sudo needing a password, or an error the script
        reported itself.
        """
        body = f"echo {_START}\n{script}"
        try:
            done = subprocess.run(
                self.argv(), input=body.encode(), capture_output=True, timeout=timeout
            )
        except FileNotFoundError:
            raise OperationError(
                "The OpenSSH client (ssh) is not installed here: install it "
                "(e.g. apt-get install openssh-client) and retry."
            ) from None
        except subprocess.TimeoutExpired:
            raise OperationError(
                f"The SSH session to {self.target} did not finish within {timeout:.0f}s; "
                "check the host and retry."
            ) from None
        out = done.stdout.decode(errors="replace").splitlines()
        err = done.stderr.decode(errors="replace")
        if _START not in out:
            raise OperationError(self._explain_failure(done.returncode, err))
        lines = out[out.index(_START) + 1 :]
        if done.returncode != 0:
            reported = [line[len(_ERROR) :] for line in lines if line.startswith(_ERROR)]
            if reported:
                raise OperationError(reported[-1])
            raise OperationError(
                f"The remote step on {self.target} failed (exit {done.returncode}): "
                f"{_last_line(err) or 'no message'}."
            )
        return lines

    def _explain_failure(self, code: int, err: str) -> str:
        """One sentence for a session that never reached our script."""
        t = self.target
        where = f"{t.host} port {t.port or 22}"
        if code == _SSH_FAILED:
            if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err or "has changed and you have" in err:
                return (
                    f"The SSH host key of {t.host} does not match your known_hosts "
                    "(the host was reinstalled, or someone is in the middle): check the new "
                    f"key's fingerprint, then update known_hosts (ssh-keygen -R {t.host})."
                )
            if "host key is known" in err or "Host key verification failed" in err:
                return (
                    f"{t.host} is not in your known_hosts and certkit keeps host key checking "
                    f"on: connect once with ssh{' -p ' + str(t.port) if t.port else ''} "
                    f"{t.host} and check the fingerprint, then retry."
                )
            if "Connection refused" in err:
                return (
                    f"Cannot connect to {where}: connection refused; "
                    "check the host, the port and that sshd runs there."
                )
            if "Could not resolve hostname" in err:
                return (
                    f"Cannot resolve the SSH host name {t.host!r}; "
                    "check the spelling or your ~/.ssh/config."
                )
            if "timed out" in err or "No route to host" in err or "unreachable" in err:
                return f"Cannot reach {where} ({_last_line(err)}); check the address and firewalls."
            if "Permission denied" in err or "Too many authentication failures" in err:
                return (
                    f"SSH authentication as {t.user or 'your default user'} on {t.host} failed: "
                    "check the user, and that your key (--identity or ssh-agent) is in the "
                    "host's authorized_keys; certkit never asks for passwords."
                )
            return f"SSH to {where} failed: {_last_line(err) or 'no message from ssh'}."
        if self.sudo:
            if "password is required" in err or "a terminal is required" in err:
                return (
                    f"sudo on {t.host} needs a password, and certkit only runs 'sudo -n': "
                    "give this user passwordless sudo, or connect as root."
                )
            if "must have a tty" in err:
                return (
                    f"sudo on {t.host} requires a terminal (Defaults requiretty): "
                    "allow it without one for this user, or connect as root."
                )
            if "not found" in err and "sudo" in err:
                return (
                    f"sudo is not installed on {t.host}: "
                    "install it, or connect as root without --sudo."
                )
            if "sudo:" in err:
                return f"sudo on {t.host} refused to run the install: {_last_line(err)}."
        return (
            f"The remote shell on {t.host} did not run certkit's script (exit {code}): "
            f"{_last_line(err) or 'no message'}; the host needs a POSIX sh."
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].rstrip(".") if lines else ""


def sh_quote(value: str | PurePosixPath) -> str:
    return shlex.quote(str(value))


# ---------------------------------------------------------------- reading


@dataclass
class RemoteFile:
    """A file read from the host: its bytes and permission bits."""

    path: PurePosixPath
    data: bytes
    mode: int | None


def read_script(singles: Sequence[PurePosixPath], globs: Sequence[PurePosixPath]) -> str:
    """The remote script printing each existing file in ``singles`` and matching ``globs``.

    Each file comes out as ``CERTKIT-FILE MODE PATH``, its base64 lines, then
    ``CERTKIT-EOF``; a file that exists but cannot be read stops the script
    with a message saying to connect as root or pass ``--sudo``.
    """
    lines = [
        "set -u",
        _NEED_BASE64,
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
        if not re.match(r"^[A-Za-z0-9._*-]+$", name):
            raise ValueError(f"unsupported glob {pattern}")
        lines.append(f'for f in {parent}/{name}; do dump "$f"; done')
    return "\n".join(lines) + "\n"


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
                mode = int(mode_text, 8) if re.match(r"^[0-7]+$", mode_text) else None
                current, chunks = (PurePosixPath(path_text), mode), []
        elif line == _EOF:
            path, mode = current
            found[path] = RemoteFile(path, base64.b64decode("".join(chunks)), mode)
            current = None
        else:
            chunks.append(line.strip())
    if current is not None:
        raise OperationError(f"The host stopped sending {current[0]} halfway; retry.")
    return found


# ---------------------------------------------------------------- writing


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
    token: str = field(default_factory=lambda: secrets.token_hex(4))


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
    q = sh_quote
    on = f"on {host}"
    n = len(job.writes)
    tmp = [w.path.with_name(f".{w.path.name}.certkit-{job.token}.new") for w in job.writes]
    old = [w.path.with_name(f".{w.path.name}.certkit-{job.token}.old") for w in job.writes]
    s = [
        "set -u",
        "umask 077",
        _NEED_BASE64,
        'fail() { echo "CERTKIT-ERROR $*"; exit 3; }',
        "command -v sha256sum >/dev/null 2>&1 || "
        "fail 'sha256sum (from coreutils) is missing on the host: install coreutils.'",
    ]
    for path, before in job.expected.items():
        changed = f'fail "{_dq(path)} {on} changed since certkit read it: run again. {_SAME}"'
        if before is None:
            s.append(f"{{ [ -e {q(path)} ] || [ -L {q(path)} ]; }} && {changed}")
        else:
            digest = hashlib.sha256(before).hexdigest()
            s.append(
                f'[ "$(sha256sum < {q(path)} 2>/dev/null | cut -c1-64)" = {digest} ] || {changed}'
            )
    # Bookkeeping: cI = dir I created, eI = target I existed, mI = target I moved.
    s += [f"c{i}=0" for i in range(len(job.dirs))]
    s += [f"e{i}=0; m{i}=0" for i in range(n)]
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
    for i in reversed(range(n)):
        target, shown = q(job.writes[i].path), _dq(job.writes[i].path)
        s += [
            f'  if [ "$m{i}" = 1 ]; then',
            f'    if [ "$e{i}" = 1 ]; then mv -f -- {q(old[i])} {target} || bad="$bad {shown}";',
            f'    else rm -f -- {target} || bad="$bad {shown}"; fi',
            f"    m{i}=0",
            f"  else rm -f -- {q(old[i])}",
            "  fi",
        ]
    s += [
        "  discard; drop_dirs",
        '  [ -z "$bad" ]',
        "}",
        "state() {",
        '  if restore; then echo "the host was left as it was"; '
        'else echo "restoring failed for$bad, whose previous versions are kept next to '
        f'them as .*.certkit-{job.token}.old"; fi',
        "}",
    ]
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
            f"( printf '%s\\n' {_b64_lines(w.data)} | base64 -d > {q(tmp[i])} ) "
            f"&& chmod {w.mode:o} -- {q(tmp[i])} "
            f'|| {{ discard; drop_dirs; fail "cannot write into {_dq(w.path.parent)} {on} as '
            f"$(id -un) (if permission was denied: {_AS_ROOT[:-1]}; else the disk is full or "
            f'read-only). {_SAME}"; }}',
        ]
    for src, copy in job.backups:
        s.append(
            f"cp -p -- {q(src)} {q(copy)} "
            f'|| {{ discard; drop_dirs; fail "cannot back up {_dq(src)} {on}. {_SAME}"; }}'
        )
    for i, w in enumerate(job.writes):
        target = q(w.path)
        s.append(
            f"if [ -e {target} ]; then e{i}=1; ln -f -- {target} {q(old[i])} 2>/dev/null "
            f"|| cp -p -- {target} {q(old[i])} "
            f"|| {{ rm -f -- {' '.join(q(o) for o in old)}; discard; drop_dirs; "
            f'fail "cannot keep a copy of {_dq(w.path)} {on}. {_SAME}"; }}; fi'
        )
    s.append("sync")
    for i, w in enumerate(job.writes):
        s.append(
            f"mv -f -- {q(tmp[i])} {q(w.path)} && m{i}=1 "
            f'|| fail "cannot move the new {_dq(w.path)} into place {on}; $(state)."'
        )
    if job.restart:
        # No systemd runs in the test machine: tests put a fake systemctl first on PATH.
        # systemctl must not read the script (our stdin), and its output is not ours.
        s += [
            "if ! { systemctl daemon-reload && systemctl restart docker "
            "&& systemctl is-active --quiet docker; } </dev/null >&2; then",
            '  st="$(state)"',
            "  { systemctl daemon-reload && systemctl restart docker; } </dev/null >&2 "
            '&& back="Docker was restarted with the previous configuration" '
            '|| back="Docker did not start with the previous configuration either"',
            f'  fail "Docker did not come back after the restart {on} '
            '(see journalctl -u docker there); $st, and $back."',
            "fi",
        ]
    s += [
        f"rm -f -- {' '.join(q(o) for o in old)}",
        "sync",
        f"echo {_OK}",
    ]
    return "\n".join(s) + "\n"


def run_write_job(ssh: SSH, job: WriteJob) -> None:
    """Carry out ``job`` on the host in one SSH session; :class:`OperationError` if it fails."""
    lines = ssh.run_script(write_script(job, ssh.target.host))
    if _OK not in lines:
        raise OperationError(
            f"The install on {ssh.target} stopped before it finished; check the files there."
        )


# ---------------------------------------------------------------- the install


def remote_paths(root: str | None = None, cert_dir: str | None = None) -> SystemPaths:
    """The host's system paths, as the host sees them; ``root`` re-roots them (tests).

    Unlike :func:`certkit.paths.system_paths`, ``root`` is a path on the host,
    so it must be absolute: it cannot be resolved against the local directory.
    """
    for flag, value in (("--root", root), ("--cert-dir", cert_dir)):
        if value is not None and not PurePosixPath(value).is_absolute():
            raise UsageError(
                f"{flag} must be an absolute path on the host with --ssh, got {value!r}."
            )
    return SystemPaths(
        PurePosixPath(root) if root else PurePosixPath("/"),
        PurePosixPath(cert_dir) if cert_dir else None,
    )


def _cert_file_paths(paths: SystemPaths) -> list[PurePosixPath]:
    return [
        PurePosixPath(paths.cert_dir) / n
        for n in (daemon.CA_FILE, daemon.CERT_FILE, daemon.KEY_FILE)
    ]


def read_remote_host_files(ssh: SSH, paths: SystemPaths) -> daemon.HostFiles:
    """Read the host's daemon.json, units, drop-ins and cert files in one SSH session.

    Gives exactly what :func:`certkit.daemon.read_host_files` gives on the
    host itself, so planning is the same for a local and a remote install.
    """
    singles = [paths.daemon_json, *paths.unit_files, paths.default_docker, *_cert_file_paths(paths)]
    dropin_glob = PurePosixPath(paths.dropin_dir) / "*.conf"
    found = parse_dump(ssh.run_script(read_script(singles, [dropin_glob])))

    def text(path: PurePosixPath) -> str | None:
        f = found.get(PurePosixPath(path))
        return None if f is None else f.data.decode("utf-8", errors="replace")

    hf = daemon.HostFiles()
    dj = found.get(PurePosixPath(paths.daemon_json))
    if dj is not None:
        try:
            hf.daemon_json = dj.data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(
                f"{dj.path} on {ssh.target.host} is not UTF-8 text: "
                "fix or remove it, then run again."
            ) from None
        hf.daemon_json_mode = dj.mode
    for unit in paths.unit_files:
        unit_text = text(unit)
        if unit_text is not None:
            hf.units.append((str(unit), unit_text))
    dropins = sorted(
        (p for p in found if p.parent == PurePosixPath(paths.dropin_dir) and p.suffix == ".conf"),
        key=lambda p: p.name,
    )
    hf.dropins = [(str(p), text(p) or "") for p in dropins]
    hf.default_docker = text(paths.default_docker)
    for p in _cert_file_paths(paths):
        if p in found:
            hf.cert_files[str(p)] = found[p].data
    return hf


def _missing_dirs(plan: daemon.InstallPlan) -> list[tuple[PurePosixPath, int]]:
    """Every directory the plan's files need, parents first: the file's own dir gets its
    ``dir_mode``, the ancestors 0755 (only those that turn out to be missing are made)."""
    wanted: dict[PurePosixPath, int] = {}
    for change in plan.changes:
        parent = PurePosixPath(change.path).parent
        for ancestor in reversed(parent.parents[:-1]):  # not "/" itself
            wanted.setdefault(ancestor, files.PUBLIC_DIR)
        wanted[parent] = (
            change.dir_mode if parent not in wanted else min(wanted[parent], change.dir_mode)
        )
    return sorted(wanted.items(), key=lambda item: len(item[0].parts))


def write_job_for(plan: daemon.InstallPlan, *, restart: bool = False) -> WriteJob:
    """The remote write job that carries out ``plan`` (see :func:`write_script`)."""
    return WriteJob(
        writes=[Write(PurePosixPath(c.path), c.content, c.mode) for c in plan.changes],
        dirs=_missing_dirs(plan),
        backups=[(PurePosixPath(plan.backup[0]), PurePosixPath(plan.backup[1]))]
        if plan.backup
        else [],
        expected={PurePosixPath(p): v for p, v in plan.previous.items()},
        restart=restart,
    )


def apply_plan_remotely(plan: daemon.InstallPlan, ssh: SSH, *, restart: bool = False) -> None:
    """Write ``plan`` on the host in one SSH session, as :func:`certkit.daemon.apply_plan_locally`
    does locally; with ``restart``, also restart Docker there, rolling back if it fails.

    The host is left as it was when anything fails (the error says so, or
    says which files could not be restored), and also when a file changed on
    the host since it was read.
    """
    if not plan.changes and not restart:
        return
    run_write_job(ssh, write_job_for(plan, restart=restart))


def install_remote(
    ssh: SSH,
    system: SystemPaths,
    options: daemon.InstallOptions,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    host_files: daemon.HostFiles | None = None,
    dry_run: bool = False,
    restart: bool = False,
) -> InstallOutcome:
    """The remote twin of :func:`certkit.server.install_local`: plan against the host's
    files (read over SSH unless ``host_files`` is given), then write them there."""
    if host_files is None:
        host_files = read_remote_host_files(ssh, system)
    plan = daemon.plan_install(host_files, system, options, ca_pem, cert_pem, key_pem)
    outcome = InstallOutcome(plan, daemon.live_restore_on(host_files), dry_run)
    if dry_run:
        return outcome
    restart_now = restart and plan.restart_needed
    apply_plan_remotely(plan, ssh, restart=restart_now)
    outcome.restarted = restart_now
    return outcome


def remote_install(
    store: CAStore,
    host: str,
    ssh: SSH,
    *,
    sans: Sequence[str] = (),
    days: int = 825,
    key_type: str = "ec-p256",
    root: str | None = None,
    options: daemon.InstallOptions | None = None,
    restart: bool = False,
    dry_run: bool = False,
) -> ServerResult:
    """``issue-server HOST --ssh TARGET``: issue here, install on the host over SSH.

    The host's files are read (one SSH session) and checked *before* the
    certificate is issued, so a refused install leaves no inventory record;
    then the same files, planned with the real PEMs, are written in a second
    session (which first checks that none of them changed in between).
    ``dry_run`` issues nothing and writes nothing: the result carries the plan.
    """
    opts = options or daemon.InstallOptions()
    primary, names = server_names(host, list(sans))
    certs.check_days(days)
    kt = certs.check_key_type(key_type)
    store.require()
    system = remote_paths(root, opts.cert_dir)
    result = ServerResult(primary, names.all(), opts.port, dry_run)

    host_files = read_remote_host_files(ssh, system)
    # Refuse a host that cannot take the install before any certificate exists.
    result.install = install_remote(
        ssh, system, opts, b"", b"", b"", host_files=host_files, dry_run=True
    )
    if dry_run:
        return result

    recorded = {
        "sans": names.all(),
        "install": True,
        "ssh": str(ssh.target),
        "sudo": ssh.sudo,
        "root": root,
        **opts.to_json(),
        "method": result.install.plan.method,
    }
    issued = issue_into(result, store, names, days, kt, recorded)
    result.install = install_remote(
        ssh,
        system,
        opts,
        issued.ca_pem,
        issued.cert_pem,
        issued.key_pem,
        host_files=host_files,
        restart=restart,
    )
    # Recorded as scp writes them, so nobody mistakes them for local paths.
    where = [f"{ssh.target}:{p}" for p in result.install.plan.cert_paths.values()]
    mark_installed(store, issued.record.serial, where)
    return result
