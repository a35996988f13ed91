"""A new user follows the README's quick start, with only the commands it shows.

The Docker host is a real systemd lab host (tests/lab.py) reached as ``ops``, a
non-root user with passwordless sudo, with a key that is not one ssh picks by
itself.  The README's commands run as written, in a private mount namespace
where ``~/.ssh`` is an empty directory of the test (no known_hosts, no config:
the user's first day) and ``/etc/hosts`` names the lab host docker1.example.com.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lab import Lab, lab_fixture  # noqa: F401 (fixture "lab")
from support import REPO

pytestmark = pytest.mark.lab

HOST = "docker1.example.com"


def quick_start() -> list[list[str]]:
    """The command lines of each ```sh block of the README's quick start, comments off."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Quick start") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    commands = []
    for block in blocks:
        lines = [re.sub(r"\s+# .*$", "", ln).strip() for ln in block.splitlines()]
        commands.append([ln for ln in lines if ln])
    return commands


class Newcomer:
    """Runs commands as the user's shell would, with ~/.ssh and /etc/hosts swapped in."""

    def __init__(self, base: Path, address: str) -> None:
        self.work = base / "work"
        self.work.mkdir()
        self.ssh_dir = base / "dot-ssh"
        self.ssh_dir.mkdir(mode=0o700)
        self.hosts = base / "hosts"
        self.hosts.write_text(Path("/etc/hosts").read_text() + f"\n{address}\t{HOST}\n")
        home = Path(os.path.expanduser("~root"))
        # The bind mount needs a mount point; a fresh machine may have no ~/.ssh yet (an
        # empty 0700 directory is what ssh itself would make).
        (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
        self.home = home

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        script = (
            f"mount --bind {self.ssh_dir} {self.home}/.ssh && "
            f'mount --bind {self.hosts} /etc/hosts && cd {self.work} && eval "$1"'
        )
        env = {
            **os.environ,
            "HOME": str(self.home),  # what ssh uses too (from the passwd entry)
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        }
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", script, "_", command],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip


def test_the_readme_quick_start_as_a_sudo_user_with_its_own_key(
    lab: Lab, tmp_path: Path, docker_config: Path, certkit_home: Path
) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to give the walk-through its own ~/.ssh")
    keyscan, fingerprint, trust = quick_start()[0]
    setup, docker_version, verify = quick_start()[1]
    assert "--sudo" in setup and "ops@" in setup and "--identity ~/.ssh/ops_ed25519" in setup

    host = lab.host()
    user = Newcomer(tmp_path, host.address)
    # The user's key for `ops` (the lab's client key), where the README says it is.
    shutil.copy(host.key, user.ssh_dir / "ops_ed25519")
    (user.ssh_dir / "ops_ed25519").chmod(0o600)

    # 1. the host key: fetched, its fingerprint compared with the host's own, then trusted
    r = user.run(keyscan)
    assert r.returncode == 0 and (user.work / "docker1.hostkey").read_text().strip(), r.stderr
    r = user.run(fingerprint)
    assert r.returncode == 0, r.stderr
    seen = r.stdout.split()[1]
    on_host = host.check("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
    assert seen.startswith("SHA256:") and seen == on_host  # they match: trust it
    r = user.run(trust)
    assert r.returncode == 0, r.stderr
    assert (user.ssh_dir / "known_hosts").read_text().startswith(f"{HOST} ssh-ed25519 ")

    # 2. one command, then the docker CLI and the audit, exactly as written
    for command in (setup, docker_version, verify):
        r = user.run(command)
        assert r.returncode == 0, f"$ {command}\n{r.stdout}{r.stderr}"
    assert "Server:" in user.run(docker_version).stdout  # it reached the daemon
    assert host.state() == "active"
    assert host.check("stat -c %U /etc/docker/certkit/server-key.pem").strip() == "root"
    # The real ~/.ssh was never touched: the walk-through had its own.
    assert not (user.home / ".ssh" / "known_hosts").exists()
