"""A real OpenSSH server for tests: its own host key, config and authorized key.

:func:`start_sshd` runs ``/usr/sbin/sshd -D -e -f CONFIG`` on a free loopback
port.  Everything it reads or writes (host key, config, pid file,
authorized_keys, log) lives in one sandbox directory.  The client side gets a
key made for the test and a ``known_hosts`` file holding the server's host
key, so host key checking stays ON exactly as it would for a user.

The "remote" host is this same machine, logged into as the current user
(root in CI), which is what lets a test check files on the remote directly.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support import free_port, stop_process_group, wait_port

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


def sshd_binary() -> str | None:
    """Path of the sshd binary (often outside a user's PATH), or None."""
    found = shutil.which("sshd")
    if found:
        return found
    for candidate in SSHD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class SSHServer:
    """A running test sshd and what a client needs to reach it."""

    proc: subprocess.Popen[bytes]
    base: Path
    port: int
    user: str
    identity: Path
    known_hosts: Path
    log_path: Path
    bin_dir: Path  # first on the remote PATH: put fake commands here

    @property
    def target(self) -> str:
        """``USER@127.0.0.1:PORT``, the form ``--ssh`` takes."""
        return f"{self.user}@127.0.0.1:{self.port}"

    def ssh_options(self) -> list[str]:
        """``-o`` values that pin this server's host key and nothing else."""
        return [
            f"UserKnownHostsFile={self.known_hosts}",
            "GlobalKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
        ]

    def cli_args(self) -> list[str]:
        """The certkit options that reach this server: ``--ssh`` and friends."""
        args = ["--ssh", self.target, "--identity", str(self.identity)]
        for opt in self.ssh_options():
            args += ["--ssh-option", opt]
        return args

    def ssh_argv(self) -> list[str]:
        """A plain ``ssh`` command line (without the remote command) for this server."""
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        for opt in self.ssh_options():
            argv += ["-o", opt]
        return [*argv, "-i", str(self.identity), "-p", str(self.port), f"{self.user}@127.0.0.1"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.proc, timeout=10)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def start_sshd(base: Path, timeout: float = 20, user: str | None = None) -> SSHServer:
    """Start a test sshd under ``base`` (created) and wait until it accepts connections,
    for the current user or ``user`` (then ``base`` must be readable by that user)."""
    binary = sshd_binary()
    if binary is None:
        raise RuntimeError("sshd is not installed")
    base.mkdir(parents=True, exist_ok=True)
    _keygen(base / "host_key", "certkit-test-host")
    _keygen(base / "id_test", "certkit-test-client")
    (base / "authorized_keys").write_text((base / "id_test.pub").read_text())
    bin_dir = base / "bin"
    bin_dir.mkdir(exist_ok=True)
    system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    port = free_port()
    user = user or pwd.getpwuid(os.getuid()).pw_name
    config = base / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {base / 'host_key'}",
                f"PidFile {base / 'sshd.pid'}",
                f"AuthorizedKeysFile {base / 'authorized_keys'}",
                # The sandbox lives in /tmp, whose permissions StrictModes rejects.
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                # Fake commands (systemctl, sudo, a failing mv) go first on the remote PATH.
                f"SetEnv PATH={bin_dir}:{system_path}",
                "",
            ]
        )
    )
    # sshd refuses to start without its privilege separation directory, which
    # the package's service unit normally creates at boot.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    host_pub = (base / "host_key.pub").read_text().split()
    known_hosts = base / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    log_path = base / "sshd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = SSHServer(proc, base, port, user, base / "id_test", known_hosts, log_path, bin_dir)
    try:
        wait_port("127.0.0.1", port, timeout, proc)
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: SSHServer, timeout: float) -> None:
    """Wait until a real login works (the port may open before sshd is ready)."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run([*server.ssh_argv(), "true"], capture_output=True, text=True)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cannot log into the test sshd: {done.stderr}\n{server.log()}")
        time.sleep(0.2)


def write_fake(bin_dir: Path, name: str, script: str) -> Path:
    """Put an executable ``name`` (a sh script) in the remote's first PATH dir."""
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path
