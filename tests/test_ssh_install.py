"""`issue-server --ssh`: install on a remote host over a real sshd, served by a real dockerd.

The remote host is this machine, reached through a test sshd on a loopback
port (tests/sshd_support.py) with host key checking on.  Commands that do
not exist here (systemctl with a running systemd, sudo) are replaced by fake
scripts first on the remote PATH, and said so where it happens.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from sshd_support import SSHServer, sshd_binary, start_sshd, write_fake

from certkit.errors import OperationError, UsageError
from certkit.remote import (
    SSH,
    SSHTarget,
    Write,
    WriteJob,
    check_ssh_options,
    parse_target,
    run_write_job,
)


@pytest.fixture
def sshd(sandbox: Path) -> Iterator[SSHServer]:
    """A real sshd on a free loopback port; skipped when missing unless CERTKIT_REQUIRE_SSHD=1."""
    missing = [
        tool
        for tool, found in (
            ("sshd", sshd_binary()),
            ("ssh", shutil.which("ssh")),
            ("ssh-keygen", shutil.which("ssh-keygen")),
        )
        if not found
    ]
    if missing:
        if os.environ.get("CERTKIT_REQUIRE_SSHD") == "1":
            pytest.fail(f"{', '.join(missing)} required (CERTKIT_REQUIRE_SSHD=1) but not installed")
        pytest.skip(f"{', '.join(missing)} not installed")
    server = start_sshd(sandbox / "ssh")
    yield server
    server.stop()


def _ssh(server: SSHServer, **kwargs: object) -> SSH:
    return SSH.build(
        server.target, identity=str(server.identity), options=server.ssh_options(), **kwargs
    )


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("docker1", SSHTarget("docker1")),
        ("admin@docker1.example.com", SSHTarget("docker1.example.com", "admin")),
        ("root@10.0.0.5:2222", SSHTarget("10.0.0.5", "root", 2222)),
        ("[2001:db8::1]:22", SSHTarget("2001:db8::1", None, 22)),
        ("ops@[::1]", SSHTarget("::1", "ops")),
        ("2001:db8::7", SSHTarget("2001:db8::7")),
    ],
)
def test_ssh_targets_parse(spec: str, expected: SSHTarget) -> None:
    assert parse_target(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "@host", "host:", "host:0", "host:70000", "-oProxyCommand=x", "a b", "[host]:22",
     "[::1", "user@", "ro ot@host"],
)
def test_bad_ssh_targets_are_refused(spec: str) -> None:
    with pytest.raises(UsageError, match="not a valid SSH destination"):
        parse_target(spec)


def test_options_that_switch_off_host_key_checking_are_refused() -> None:
    assert check_ssh_options(["ProxyJump=bastion", "StrictHostKeyChecking accept-new"]) == (
        "ProxyJump=bastion",
        "StrictHostKeyChecking accept-new",
    )
    for bad in ("StrictHostKeyChecking=no", "stricthostkeychecking off", "BatchMode=no"):
        with pytest.raises(UsageError, match="host key checking"):
            check_ssh_options([bad])
    with pytest.raises(UsageError, match="not an ssh option"):
        check_ssh_options(["-oProxyCommand=sh"])


def test_the_ssh_command_line_keeps_batch_mode_and_host_key_checks() -> None:
    argv = SSH.build("ops@[::1]:2222", options=["ProxyJump=bastion"], sudo=True).argv()
    assert argv[:4] == ["ssh", "-T", "-o", "BatchMode=yes"]
    assert argv.index("ProxyJump=bastion") < argv.index("StrictHostKeyChecking=yes")
    assert argv[-4:] == ["ops", "--", "::1", "sudo -n env LC_ALL=C sh -s"]


# ---------------------------------------------------------------- the transport


def test_connection_failures_are_one_clear_sentence(sshd: SSHServer, sandbox: Path) -> None:
    from support import free_port

    closed = SSH.build(
        f"root@127.0.0.1:{free_port()}", identity=str(sshd.identity), options=sshd.ssh_options()
    )
    with pytest.raises(OperationError, match="connection refused"):
        closed.run_script("true")

    unknown = SSH.build(
        sshd.target,
        identity=str(sshd.identity),
        options=[f"UserKnownHostsFile={sandbox / 'empty_known_hosts'}", "GlobalKnownHostsFile=/dev/null"],
    )
    with pytest.raises(OperationError, match="not in your known_hosts"):
        unknown.run_script("true")

    # Another key recorded for this host: what a man in the middle looks like.
    other = sandbox / "other_known_hosts"
    other.write_text(f"[127.0.0.1]:{sshd.port} " + " ".join(
        (sshd.base / "id_test.pub").read_text().split()[:2]) + "\n")
    changed = SSH.build(
        sshd.target,
        identity=str(sshd.identity),
        options=[f"UserKnownHostsFile={other}", "GlobalKnownHostsFile=/dev/null"],
    )
    with pytest.raises(OperationError, match="does not match your known_hosts"):
        changed.run_script("true")

    stranger = sandbox / "stranger"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {stranger}")
    with pytest.raises(OperationError, match="authentication as root on 127.0.0.1 failed"):
        SSH.build(sshd.target, identity=str(stranger), options=sshd.ssh_options()).run_script("true")


def test_sudo_that_wants_a_password_is_reported(sshd: SSHServer) -> None:
    # sudo is not installed on this machine: a fake behaves like sudo -n
    # for a user without passwordless sudo.
    write_fake(sshd.bin_dir, "sudo", 'echo "sudo: a password is required" >&2\nexit 1\n')
    with pytest.raises(OperationError, match="needs a password"):
        _ssh(sshd, sudo=True).run_script("true")
    # And one that lets the user through runs the script as usual.
    write_fake(sshd.bin_dir, "sudo", '[ "$1" = -n ] && shift\nexec "$@"\n')
    assert _ssh(sshd, sudo=True).run_script("echo hello") == ["hello"]


def test_a_failed_move_puts_everything_back(sshd: SSHServer, sandbox: Path) -> None:
    root = sandbox / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "a.conf").write_text("old a\n")
    (root / "etc" / "c.conf").write_text("old c\n")
    before = _snapshot(root)
    r = PurePosixPath(root)
    job = WriteJob(
        [
            Write(r / "etc/a.conf", b"new a\n", 0o644),
            Write(r / "etc/new/b.key", b"new key\n", 0o600),
            Write(r / "etc/c.conf", b"new c\n", 0o644),
        ],
        dirs=[(r / "etc/new", 0o700)],
        backups=[(r / "etc/a.conf", r / "etc/a.conf.bak")],
    )
    # A real failure needs a filesystem that refuses the rename; a fake mv
    # first on the remote PATH refuses the last target instead.
    write_fake(
        sshd.bin_dir,
        "mv",
        'for a; do case "$a" in */c.conf) echo "mv: cannot move: I/O error" >&2; exit 1;; esac; done\n'
        'exec /bin/mv "$@"\n',
    )
    with pytest.raises(OperationError, match="c.conf into place .* the host was left as it was"):
        run_write_job(_ssh(sshd), job)
    assert _snapshot(root) == before

    (sshd.bin_dir / "mv").unlink()
    run_write_job(_ssh(sshd), job)
    assert (root / "etc/c.conf").read_text() == "new c\n"
    assert (root / "etc/a.conf.bak").read_text() == "old a\n"
    assert (root / "etc/new/b.key").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/new").stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in (root / "etc").iterdir()) == ["a.conf", "a.conf.bak", "c.conf", "new"]


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mode and content: what 'left as it was' compares."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, p.read_bytes() if p.is_file() else None)
    return out
