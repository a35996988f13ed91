"""A dry run writes nothing, so any user may make one (issue 26, low).

A non-root ``issue-server --install --dry-run`` was refused ("run as root")
although it only reads.  Now it plans from what its user can read and names
what it could not, locally and over SSH; the real install still needs root,
and no message tells a user to "pass --sudo" where that is no option (this
machine) or who is root already.  Run as a real unprivileged user: one made
with useradd (sshd needs a login shell), switched to with setpriv.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd_support import SSHServer, start_sshd
from support import run_certkit, short_tempdir

from certkit.host.scripts import _AS_ROOT_FN

USER = "ckdryrun"


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    """The unprivileged test user (made once; a login shell, no home)."""
    assert os.geteuid() == 0, "these tests switch to another user: run them as root"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--shell", "/bin/sh", "--no-create-home",
             "--home-dir", "/nonexistent", USER],
            check=True, capture_output=True,
        )  # fmt: skip
    # No password, but not locked ("!"): sshd refuses a locked account even with a key.
    subprocess.run(["usermod", "--password", "*", USER], check=True, capture_output=True)
    return pwd.getpwnam(USER)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory the test user can reach (pytest's own tmp is root's alone)."""
    base = short_tempdir("ckdry")
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def as_user(user: pwd.struct_passwd, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``certkit ARGS`` run as ``user`` with its own store in ``home``."""
    return subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
         sys.executable, "-m", "certkit", *args],
        env={**os.environ, "CERTKIT_HOME": str(home / "store"), "HOME": str(home)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def user_home(user: pwd.struct_passwd, shared: Path) -> Path:
    home = shared / "home"
    home.mkdir()
    os.chown(home, user.pw_uid, user.pw_gid)
    r = as_user(user, home, "init-ca")
    assert r.returncode == 0, r.stderr
    return home


def root_only_host(base: Path) -> Path:
    """A sandbox host as root leaves it: daemon.json 0600, the certificate directory 0700."""
    root = base / "host"
    certs = root / "etc" / "docker" / "certkit"
    certs.mkdir(parents=True)
    for d in (root, root / "etc", root / "etc" / "docker"):
        d.chmod(0o755)
    certs.chmod(0o700)
    (certs / "server-cert.pem").write_text("old\n")
    daemon_json = root / "etc" / "docker" / "daemon.json"
    daemon_json.write_text('{"debug": true}\n')
    daemon_json.chmod(0o600)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_dry_run_names_unreadable(out: str, root: Path) -> None:
    doc = json.loads(out)
    assert doc["dry_run"] is True and doc["serial"] is None, doc
    (note,) = [n for n in doc["notes"] if "could not read" in n]
    for name in ("etc/docker/daemon.json", "etc/docker/certkit/server-cert.pem"):
        assert f"{root}/{name}" in note, note


def test_a_dry_run_as_a_user_reads_what_it_can_and_says_what_it_could_not(
    user: pwd.struct_passwd, shared: Path
) -> None:
    home = user_home(user, shared)
    root = root_only_host(shared)
    before = snapshot(root)
    r = as_user(user, home, "issue-server", "docker1", "--install", "--root", str(root),
                "--dry-run", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert_dry_run_names_unreadable(r.stdout, root)
    # This machine's own /etc/docker, without --root: planned, not refused.
    r = as_user(user, home, "issue-server", "docker1", "--install", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "Dry run" in r.stdout and "/etc/docker/daemon.json" in r.stdout, r.stdout
    # The install itself is refused, naming root, and never an option local installs lack.
    r = as_user(user, home, "issue-server", "docker1", "--install")
    assert r.returncode == 2 and "run as root" in r.stderr, r.stderr
    r = as_user(user, home, "issue-server", "docker1", "--install", "--root", str(root))
    assert r.returncode == 2 and "not writable (permission denied)" in r.stderr, r.stderr
    assert snapshot(root) == before
    # Directories the user may write, holding a daemon.json only root reads.
    shutil.rmtree(root / "etc" / "docker" / "certkit")
    for d in (root / "etc", root / "etc" / "docker"):
        os.chown(d, user.pw_uid, user.pw_gid)
    r = as_user(user, home, "issue-server", "docker1", "--install", "--root", str(root))
    assert r.returncode == 1 and "--sudo" not in r.stderr, r.stderr
    assert f"cannot read {root}/etc/docker/daemon.json" in r.stderr, r.stderr
    assert "run certkit as root" in r.stderr, r.stderr
    assert sorted(snapshot(root)) == [str(root / "etc" / "docker" / "daemon.json")]
    listed = as_user(user, home, "list", "--json")
    assert [x["kind"] for x in json.loads(listed.stdout)] == ["ca"], listed.stdout


@pytest.fixture
def user_sshd(user: pwd.struct_passwd, shared: Path, require_sshd: None) -> Iterator[SSHServer]:
    server = start_sshd(shared / "ssh", user=USER)
    try:
        yield server
    finally:
        server.stop()


def test_a_dry_run_over_ssh_as_a_user_says_what_it_could_not_read(
    user_sshd: SSHServer, shared: Path, certkit_home: Path
) -> None:
    root = root_only_host(shared)
    before = snapshot(root)
    assert run_certkit("init-ca").returncode == 0
    reach = [*user_sshd.cli_args(), "--root", str(root)]
    r = run_certkit("issue-server", "docker1", *reach, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert_dry_run_names_unreadable(r.stdout, root)
    r = run_certkit("issue-server", "docker1", *reach)
    assert r.returncode == 1, r.stderr
    assert f"as {USER}: connect as root or pass --sudo" in r.stderr, r.stderr
    assert snapshot(root) == before


def test_root_is_never_told_to_pass_sudo(user: pwd.struct_passwd) -> None:
    """The hint the host's scripts end a "cannot ..." sentence with, as root and as a user."""
    script = f"{_AS_ROOT_FN}\nas_root\n"
    as_root = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert "--sudo" not in as_root.stdout and "as root" in as_root.stdout, as_root.stdout
    other = subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
         "sh", "-c", script],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "connect as root or pass --sudo" in other.stdout, other.stdout


def test_only_ssh_targets_are_told_to_pass_sudo() -> None:
    """The same script failure through this machine's and a rootless daemon's transport:
    neither has a --sudo, so neither names it (an SSH host's does: see above)."""
    from certkit.errors import OperationError
    from certkit.host import local, rootless

    failing = 'echo "CERTKIT-ERROR cannot read /x as u: connect as root or pass --sudo."; exit 3'
    with pytest.raises(OperationError, match=r"^cannot read /x as u: run certkit as root \(sudo\)"):
        local.run_sh(failing)
    with pytest.raises(OperationError, match="files must belong to the user that runs it"):
        rootless._run(None, failing)
