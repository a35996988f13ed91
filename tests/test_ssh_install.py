"""`issue-server --ssh`: install on a remote host over a real sshd, served by a real dockerd.

The remote host is this machine, reached through a test sshd on a loopback
port (tests/sshd_support.py) with host key checking on.  Commands that do
not work here (sudo) are replaced by fake scripts first on the remote PATH,
and said so where it happens; --restart against a real systemctl, and real
sudo, are tested on lab hosts (tests/test_lab.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from sshd_support import SSHServer, sshd_binary, start_sshd, write_fake
from support import (
    free_port,
    refused,
    run_certkit,
    sandbox_daemon_settings,
    strict_context,
    tls_get,
    write_json,
)

from certkit import names
from certkit.ca import issue
from certkit.errors import OperationError, UsageError
from certkit.host.local import read_host_files
from certkit.host.options import InstallOptions
from certkit.host.plan import plan_install
from certkit.host.remote import SSHTarget
from certkit.host.scripts import Write, WriteJob, run_write_job
from certkit.host.ssh import SSH, Destination, check_ssh_options, parse_destination
from certkit.origins import ServerOrigin
from certkit.store import CAStore


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
        ("docker1", Destination("docker1")),
        ("admin@docker1.example.com", Destination("docker1.example.com", "admin")),
        ("root@10.0.0.5:2222", Destination("10.0.0.5", "root", 2222)),
        ("[2001:db8::1]:22", Destination("2001:db8::1", None, 22)),
        ("ops@[::1]", Destination("::1", "ops")),
        ("2001:db8::7", Destination("2001:db8::7")),
    ],
)
def test_ssh_targets_parse(spec: str, expected: Destination) -> None:
    assert parse_destination(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "@host",
        "host:",
        "host:0",
        "host:70000",
        "-oProxyCommand=x",
        "a b",
        "[host]:22",
        "[::1",
        "user@",
        "ro ot@host",
    ],
)
def test_bad_ssh_targets_are_refused(spec: str) -> None:
    with pytest.raises(UsageError, match="not a valid SSH destination"):
        parse_destination(spec)


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
    closed = SSH.build(
        f"root@127.0.0.1:{free_port()}", identity=str(sshd.identity), options=sshd.ssh_options()
    )
    with pytest.raises(OperationError, match="connection refused"):
        closed.run_script("true")

    unknown = SSH.build(
        sshd.target,
        identity=str(sshd.identity),
        options=[
            f"UserKnownHostsFile={sandbox / 'empty_known_hosts'}",
            "GlobalKnownHostsFile=/dev/null",
        ],
    )
    with pytest.raises(OperationError, match="not in your known_hosts"):
        unknown.run_script("true")

    # Another key recorded for this host: what a man in the middle looks like.
    other = sandbox / "other_known_hosts"
    other.write_text(
        f"[127.0.0.1]:{sshd.port} "
        + " ".join((sshd.base / "id_test.pub").read_text().split()[:2])
        + "\n"
    )
    changed = SSH.build(
        sshd.target,
        identity=str(sshd.identity),
        options=[f"UserKnownHostsFile={other}", "GlobalKnownHostsFile=/dev/null"],
    )
    with pytest.raises(OperationError, match="does not match your known_hosts"):
        changed.run_script("true")

    stranger = sandbox / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(OperationError, match=r"authentication as root on 127\.0\.0\.1 failed"):
        SSH.build(sshd.target, identity=str(stranger), options=sshd.ssh_options()).run_script(
            "true"
        )


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
        'for a; do case "$a" in */c.conf) echo "mv: I/O error" >&2; exit 1;; esac; done\n'
        'exec /bin/mv "$@"\n',
    )
    with pytest.raises(OperationError, match=r"c\.conf into place .* the host was left as it was"):
        run_write_job(_ssh(sshd), job)
    assert _snapshot(root) == before

    (sshd.bin_dir / "mv").unlink()
    run_write_job(_ssh(sshd), job)
    assert (root / "etc/c.conf").read_text() == "new c\n"
    assert (root / "etc/a.conf.bak").read_text() == "old a\n"
    assert (root / "etc/new/b.key").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/new").stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in (root / "etc").iterdir()) == [
        "a.conf",
        "a.conf.bak",
        "c.conf",
        "new",
    ]


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mode and content: what 'left as it was' compares."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, p.read_bytes() if p.is_file() else None)
    return out


# ---------------------------------------------------------------- reading and planning


def _seed_host(root: Path) -> None:
    """A host with user settings, Debian's unit, a user drop-in and old cert files."""
    (root / "etc/docker/certkit").mkdir(parents=True, mode=0o700)
    (root / "etc/docker/daemon.json").write_text('{\n    "log-driver": "journald"\n}\n')
    (root / "etc/docker/daemon.json").chmod(0o640)
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system/docker.service").write_text(
        "[Service]\nExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS\n"
    )
    dropins = root / "etc/systemd/system/docker.service.d"
    dropins.mkdir(parents=True)
    (dropins / "10-proxy.conf").write_text(
        '[Service]\nEnvironment="HTTP_PROXY=http://proxy:3128"\n'
    )
    (dropins / "notes.txt").write_text("not a drop-in\n")
    (root / "etc/default").mkdir()
    (root / "etc/default/docker").write_text('DOCKER_OPTS="--dns 10.0.0.2"\n')
    (root / "etc/docker/certkit/server-key.pem").write_bytes(b"old key\n")


def test_remote_reading_gives_what_local_reading_gives(sshd: SSHServer, sandbox: Path) -> None:
    from certkit.host.remote import read_remote_host_files, remote_paths
    from certkit.paths import system_paths

    root = sandbox / "host"
    _seed_host(root)
    local = read_host_files(system_paths(root))
    remote = read_remote_host_files(_ssh(sshd), remote_paths(str(root)))
    assert remote == local
    assert remote.daemon_json_mode == 0o640
    assert [Path(p).name for p, _ in remote.dropins] == ["10-proxy.conf"]


def test_remote_plan_applied_is_complete_and_idempotent(sshd: SSHServer, sandbox: Path) -> None:
    from certkit.host.remote import read_remote_host_files, remote_paths
    from certkit.paths import system_paths

    root = sandbox / "host"
    _seed_host(root)
    paths = remote_paths(str(root))
    options = InstallOptions(listen="127.0.0.1", port=12376, method="systemd")
    pems = (b"ca\n", b"cert\n", b"key\n")
    ssh = _ssh(sshd)
    plan = plan_install(read_remote_host_files(ssh, paths), paths, options, *pems)
    assert plan.changed and plan.backup
    SSHTarget(ssh, paths).apply(plan, restart=False)

    # What landed is what the plan says, with the plan's modes, plus the backup.
    for change in plan.changes:
        p = Path(change.path)
        assert (p.read_bytes(), p.stat().st_mode & 0o777) == (change.content, change.mode)
    backup = Path(plan.backup[1])
    assert backup.read_text() == '{\n    "log-driver": "journald"\n}\n'
    assert backup.stat().st_mode & 0o777 == 0o640
    assert (root / "etc/docker/certkit").stat().st_mode & 0o777 == 0o700
    assert not list(root.rglob(".*certkit-*")), "temp files left behind"

    # Planned again, locally or remotely: nothing to do.
    assert not plan_install(read_host_files(system_paths(root)), paths, options, *pems).changed
    assert not plan_install(read_remote_host_files(ssh, paths), paths, options, *pems).changed


def test_a_file_changed_since_it_was_read_is_not_overwritten(
    sshd: SSHServer, sandbox: Path
) -> None:
    from certkit.host.remote import read_remote_host_files, remote_paths

    root = sandbox / "host"
    _seed_host(root)
    paths = remote_paths(str(root))
    options = InstallOptions(listen="127.0.0.1", port=12376, method="daemon-json")
    ssh = _ssh(sshd)
    plan = plan_install(read_remote_host_files(ssh, paths), paths, options, b"c", b"c", b"k")
    (root / "etc/docker/daemon.json").write_text('{"debug": true}\n')  # someone else's edit
    before = _snapshot(root)
    with pytest.raises(
        OperationError, match=r"daemon\.json on 127\.0\.0\.1 changed since certkit read it"
    ):
        SSHTarget(ssh, paths).apply(plan, restart=False)
    assert _snapshot(root) == before


# ---------------------------------------------------------------- the command


def _logging_ssh(sandbox: Path) -> tuple[dict[str, str], Path]:
    """An ``ssh`` first on the local PATH that logs its argv and runs the real one."""
    real = shutil.which("ssh")
    assert real
    wrap, log = sandbox / "wrap", sandbox / "ssh-argv.log"
    wrap.mkdir(exist_ok=True)
    write_fake(wrap, "ssh", f'printf "%s\\n" "$*" >> {log}\nexec {real} "$@"\n')
    return {"PATH": f"{wrap}:{os.environ['PATH']}"}, log


def _seed_daemon_json(root: Path, sandbox: Path, sock: str) -> dict[str, object]:
    settings: dict[str, object] = {
        **sandbox_daemon_settings(sandbox / "d"),
        "hosts": [f"unix://{sock}"],
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m"},
        "registry-mirrors": ["https://mirror.example.com"],
    }
    write_json(root / "etc/docker/daemon.json", settings)
    return settings


def test_issue_server_over_ssh_serves_mutual_tls_from_a_real_dockerd(
    sshd: SSHServer, sandbox: Path, dockerd: Any
) -> None:
    assert run_certkit("init-ca").returncode == 0
    root, port, sock = sandbox / "remote", free_port(), str(sandbox / "docker.sock")
    user_settings = _seed_daemon_json(root, sandbox, sock)
    env, argv_log = _logging_ssh(sandbox)
    # On the "remote", base64 -d records the mode of the file it writes into:
    # the temp file must be private before the first byte of the key lands.
    modes = sandbox / "base64-modes.log"
    write_fake(
        sshd.bin_dir,
        "base64",
        f'[ "$1" = -d ] && stat -L -c %a /proc/$$/fd/1 >> {modes}\nexec /usr/bin/base64 "$@"\n',
    )
    cmd = [
        "issue-server", "localhost", "--san", "127.0.0.1", *sshd.cli_args(), "--root", str(root),
        "--method", "daemon-json", "--listen", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    first = run_certkit(*cmd, env=env)
    assert first.returncode == 0, first.stderr
    assert "Restart needed" in first.stdout

    daemon_json = root / "etc/docker/daemon.json"
    config = json.loads(daemon_json.read_text())
    for key, value in user_settings.items():
        if key != "hosts":
            assert config[key] == value
    assert config["hosts"] == [f"unix://{sock}", f"tcp://127.0.0.1:{port}"]
    certdir = root / "etc/docker/certkit"
    assert config["tlskey"] == str(certdir / "server-key.pem")
    assert (certdir / "server-key.pem").stat().st_mode & 0o777 == 0o600
    assert certdir.stat().st_mode & 0o777 == 0o700
    assert set(modes.read_text().split()) == {"600"}

    # The key went over ssh's stdin only: never in an argument list.
    key_pem = (certdir / "server-key.pem").read_text()
    key_body = "".join(key_pem.splitlines()[1:-1])
    logged = argv_log.read_text()
    assert "127.0.0.1" in logged
    assert "PRIVATE KEY" not in logged and key_body[:40] not in logged

    store = CAStore("default")
    (record,) = store.inventory().find(kind="server")
    assert isinstance(record.origin, ServerOrigin)
    assert record.origin.target.ssh == sshd.target
    assert f"{sshd.target}:{certdir / 'server-key.pem'}" in record.installed

    dockerd(config_file=daemon_json, unix_socket=sock, tcp=[("127.0.0.1", port)])
    client = issue(store, "client", "tester", "tester", names.parse_names(["tester"]))
    ctx = strict_context(store.cert_path, client.cert_path, client.key_path)
    assert tls_get("127.0.0.1", port, "/_ping", ctx, server_hostname="localhost") == (200, b"OK")
    assert refused("127.0.0.1", port, strict_context(store.cert_path), server_hostname="localhost")

    # The docker CLI through a context from client-context.
    made = run_certkit("client-context", "remote", "--host", "127.0.0.1", "--port", str(port))
    assert made.returncode == 0, made.stderr
    version = subprocess.run(
        ["docker", "--context", "remote", "version", "--format", "{{.Server.Version}}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert version.returncode == 0 and version.stdout.strip(), version.stderr

    # The same command again: daemon.json untouched, no second backup.
    backups = sorted(p.name for p in daemon_json.parent.glob("daemon.json.certkit-backup-*"))
    assert len(backups) == 1
    before = daemon_json.read_bytes()
    second = run_certkit(*cmd, "--json", env=env)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert daemon_json.read_bytes() == before
    assert daemon_json.parent.joinpath(backups[0]).exists()
    assert (
        sorted(p.name for p in daemon_json.parent.glob("daemon.json.certkit-backup-*")) == backups
    )
    assert str(daemon_json) not in result["install"]["written"]
    assert "PRIVATE KEY" not in argv_log.read_text()


def test_invalid_remote_daemon_json_is_refused_and_left_untouched(
    sshd: SSHServer, sandbox: Path
) -> None:
    assert run_certkit("init-ca").returncode == 0
    root = sandbox / "remote"
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/docker/daemon.json").write_text('{"log-driver": "journald",}\n')
    before = _snapshot(root)
    r = run_certkit("issue-server", "localhost", *sshd.cli_args(), "--root", str(root))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "is not valid JSON" in r.stderr and "line 1, column 27" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert _snapshot(root) == before
    # Refused before issuing: no certificate was recorded.
    assert CAStore("default").inventory().find(kind="server") == []


def test_connection_failure_is_one_error_and_exit_1(sshd: SSHServer, sandbox: Path) -> None:
    assert run_certkit("init-ca").returncode == 0
    args = ["--identity", str(sshd.identity)]
    for opt in sshd.ssh_options():
        args += ["--ssh-option", opt]
    closed = free_port()
    r = run_certkit("issue-server", "localhost", "--ssh", f"root@127.0.0.1:{closed}", *args)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"certkit: error: Cannot connect to 127.0.0.1 port {closed}: "
        "connection refused; check the host, the port and that sshd runs there."
    ]
    assert CAStore("default").inventory().find(kind="server") == []


def test_dry_run_over_ssh_shows_the_diff_and_writes_nothing(sshd: SSHServer, sandbox: Path) -> None:
    assert run_certkit("init-ca").returncode == 0
    root = sandbox / "remote"
    write_json(root / "etc/docker/daemon.json", {"log-driver": "journald"})
    before = _snapshot(root)
    r = run_certkit(
        "issue-server", "docker1.example.com", *sshd.cli_args(), "--root", str(root), "--dry-run"
    )
    assert r.returncode == 0, r.stderr
    assert f"+++ {root}/etc/docker/daemon.json" in r.stdout
    assert '+  "tlsverify": true,' in r.stdout
    assert _snapshot(root) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sudo"], "only apply with --ssh"),
        (["--ssh", "root@host:99999"], "not a valid SSH destination"),
        (["--ssh", "host", "--ssh-option", "StrictHostKeyChecking=no"], "host key checking"),
        (["--ssh", "host", "--identity", "/nonexistent/key"], "not a readable key file"),
        (["--ssh", "host", "--root", "relative/dir"], "absolute path on the host"),
        (["--ssh", "host", "--out", "/tmp/x"], "use one of them"),
    ],
)
def test_bad_ssh_usage_is_exit_2(args: list[str], message: str) -> None:
    assert run_certkit("init-ca").returncode == 0
    r = run_certkit("issue-server", "localhost", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr


def test_odd_paths_are_quoted_not_interpreted(sshd: SSHServer, sandbox: Path) -> None:
    odd = sandbox / 'it\'s a "dir" $(touch pwned) `x`'
    odd.mkdir()
    target = PurePosixPath(odd) / "new dir" / "file $HOME.pem"
    run_write_job(
        _ssh(sshd), WriteJob([Write(target, b"data\n", 0o600)], dirs=[(target.parent, 0o700)])
    )
    assert Path(target).read_bytes() == b"data\n"
    assert not (sandbox / "pwned").exists() and not Path("pwned").exists()

    # A directory where a file should go: refused with the path intact, nothing changed.
    Path(target).unlink()
    Path(target).mkdir()
    before = _snapshot(odd)
    with pytest.raises(OperationError) as refused_write:
        run_write_job(_ssh(sshd), WriteJob([Write(target, b"x", 0o600)]))
    assert f"{target} on 127.0.0.1 is a directory" in refused_write.value.message
    assert _snapshot(odd) == before


def test_sudo_install_runs_the_remote_side_under_sudo_n(sshd: SSHServer, sandbox: Path) -> None:
    assert run_certkit("init-ca").returncode == 0
    root = sandbox / "remote"
    write_json(root / "etc/docker/daemon.json", {"log-driver": "journald"})
    # sudo is not installed here: a fake logs how it was called and runs the command.
    calls = sandbox / "sudo.log"
    write_fake(sshd.bin_dir, "sudo", f'echo "$*" >> {calls}\n[ "$1" = -n ] && shift\nexec "$@"\n')
    r = run_certkit("issue-server", "localhost", *sshd.cli_args(), "--sudo", "--root", str(root))
    assert r.returncode == 0, r.stderr
    assert calls.read_text().splitlines() == ["-n env LC_ALL=C sh -s"] * 2  # read, then write
    assert "tlsverify" in (root / "etc/docker/daemon.json").read_text()
