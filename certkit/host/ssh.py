"""The SSH transport: the user's OpenSSH client, host key checking always on.

certkit drives the system's ``ssh`` (so ``~/.ssh/config``, agents and jump
hosts work as the user expects) and needs nothing on the host but a POSIX
shell and coreutils.  Every session runs one script given on standard input
(``ssh -T -o BatchMode=yes ... HOST sh -s``), so secrets never appear in any
argument list, on either machine.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import OperationError, UsageError
from ..names import has_control, ip_or_none
from . import engine
from .engine import (
    ERROR_PREFIX,
    MAX_OUTPUT,
    REFUSED_PREFIX,
    START_MARKER,
    OutputTooLarge,
    run_capped,
)

# The protocol's markers and limits live in the engine; re-exported for callers.
__all__ = ["ERROR_PREFIX", "MAX_OUTPUT", "REFUSED_PREFIX", "START_MARKER", "OutputTooLarge"]


# ssh exits 255 when ssh itself (not the remote command) failed.
_SSH_FAILED = 255


_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$")


_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Destination:
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


def parse_destination(spec: str) -> Destination:
    """Parse ``[USER@]HOST[:PORT]``; an IPv6 address with a port is written ``[ADDR]:PORT``.

    >>> parse_destination("admin@docker1.example.com:2222")
    Destination(host='docker1.example.com', user='admin', port=2222)
    >>> parse_destination("root@[2001:db8::1]:22")
    Destination(host='2001:db8::1', user='root', port=22)
    """
    bad = UsageError(
        f"--ssh {spec!r} is not a valid SSH destination: use [USER@]HOST[:PORT], "
        "e.g. admin@docker1.example.com:22 or root@[2001:db8::1]:22."
    )
    user: str | None = None
    if has_control(spec):
        raise bad
    rest = spec.strip()
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        if not _USER.fullmatch(user):
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
        if not _HOST.fullmatch(host):
            raise bad
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise bad
        port = int(port_text)
    return Destination(host, user, port)


def _ipv6_or_none(text: str) -> object:
    """The IPv6 address in ``text`` (an ``%zone`` suffix allowed, as ssh takes it), else None."""
    ip = ip_or_none(text.split("%", 1)[0])
    return ip if ip is not None and ip.version == 6 else None


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
        if not key or option.lstrip().startswith("-") or not re.fullmatch(r"[a-z0-9]+", key):
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

    target: Destination
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
        ssh = cls(
            parse_destination(spec),
            str(Path(identity).expanduser()) if identity else None,
            check_ssh_options(options),
            sudo,
        )
        if ssh.options:
            ssh.check_effective()
        return ssh

    def _resolved_config(self) -> subprocess.CompletedProcess[bytes] | None:
        """``ssh -G``: the configuration ssh would use for this host, options and
        ~/.ssh/config applied (None: no usable ssh here)."""
        argv = self.argv()
        head = argv[: argv.index("--")]
        try:
            return subprocess.run(
                [head[0], "-G", *head[1:], "--", self.target.host],
                capture_output=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return None

    def check_effective(self) -> None:
        """Refuse ``--ssh-option`` values that, as ssh itself resolves them (``ssh -G``),
        turn off host key checking or allow prompts: whatever their spelling."""
        done = self._resolved_config()
        if done is None:
            return  # no usable ssh: connecting fails with its own clear sentence
        if done.returncode != 0:
            why = _last_line(done.stderr.decode(errors="replace"))
            raise UsageError(f"ssh refuses these --ssh-option values: {why}.")
        config = dict(
            line.partition(" ")[::2] for line in done.stdout.decode(errors="replace").splitlines()
        )
        if config.get("stricthostkeychecking") != "true" or config.get("batchmode") != "yes":
            raise UsageError(
                f"--ssh-option {' '.join(self.options)!r} turns off host key checking or allows "
                "prompts, which certkit keeps on: add the host's key to known_hosts (connect "
                "once with ssh and check the fingerprint) instead."
            )

    def hostname(self) -> str:
        """The address ssh connects to (its ``HostName``, after ~/.ssh/config): where
        certkit checks dockerd's TLS port after a restart."""
        done = self._resolved_config()
        if done is None:
            return self.target.host
        for line in done.stdout.decode(errors="replace").splitlines():
            key, _, value = line.partition(" ")
            if key == "hostname" and value.strip():
                return value.strip()
        return self.target.host

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

    def transport(self, script: str) -> tuple[int, str, str]:
        """Send ``script`` to ``sh -s`` on the host (the engine's transport): rc, out, err."""
        try:
            done = run_capped(self.argv(), script.encode())
        except FileNotFoundError:
            raise OperationError(
                "The OpenSSH client (ssh) is not installed here: install it "
                "(e.g. apt-get install openssh-client) and retry."
            ) from None
        return (
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )

    def run_script(self, script: str) -> list[str]:
        """Run ``script`` on the host with sh; its output lines (see :func:`engine.run`).

        Raises with one sentence for every way this can fail: ssh missing,
        connection or authentication refused, host key unknown or changed,
        sudo needing a password, or what the script reported itself
        (``CERTKIT-REFUSED``: UsageError).
        """
        return engine.run(
            self.transport, script, str(self.target), not_started=self._explain_failure
        )

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


_last_line = engine.last_line


def sh_quote(value: str | PurePosixPath) -> str:
    return shlex.quote(str(value))
