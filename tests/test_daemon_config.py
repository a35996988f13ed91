"""daemon.json merging, docker unit parsing and install planning, on real files under a root."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
from pathlib import Path, PurePosixPath

import pytest
from support import run_certkit

from certkit import paths
from certkit.errors import OperationError, UsageError
from certkit.host.daemonjson import parse_daemon_json
from certkit.host.hostfiles import HostFiles
from certkit.host.local import apply_plan_locally, read_host_files
from certkit.host.options import InstallOptions
from certkit.host.plan import InstallPlan, hosts_conflict, insecure_listeners, plan_install
from certkit.host.systemd import effective_execstart

DEBIAN_UNIT = Path("/lib/systemd/system/docker.service")
PEMS = (b"CA PEM\n", b"CERT PEM\n", b"KEY PEM\n")


def _root(tmp_path: Path, daemon_json: str | None = None, unit: bool = False) -> paths.SystemPaths:
    root = tmp_path / "root"
    (root / "etc" / "docker").mkdir(parents=True)
    if daemon_json is not None:
        (root / "etc" / "docker" / "daemon.json").write_text(daemon_json)
    if unit:
        (root / "lib" / "systemd" / "system").mkdir(parents=True)
        shutil.copy(_debian_unit(), root / "lib" / "systemd" / "system" / "docker.service")
    return paths.system_paths(root)


def _debian_unit() -> Path:
    if not DEBIAN_UNIT.exists():
        pytest.skip("Debian's docker.service (package docker.io) is not installed")
    return DEBIAN_UNIT


def _install(sp: paths.SystemPaths, **options: object) -> InstallPlan:
    plan = plan_install(read_host_files(sp), sp, InstallOptions(**options), *PEMS)  # type: ignore[arg-type]
    apply_plan_locally(plan)
    return plan


def _dropin(dir_: Path, name: str, text: str) -> None:
    dir_.mkdir(parents=True, exist_ok=True)
    (dir_ / name).write_text(text)


# ---------------------------------------------------------------- daemon.json


def test_invalid_json_names_line_and_column() -> None:
    with pytest.raises(UsageError, match=r"line 3, column 3"):
        parse_daemon_json('{\n  "a": 1\n  "b": 2\n}\n', "/etc/docker/daemon.json")


@pytest.mark.parametrize("text", ["[]", '"x"', "3"])
def test_daemon_json_must_be_an_object(text: str) -> None:
    with pytest.raises(UsageError, match="must hold a JSON object"):
        parse_daemon_json(text, "daemon.json")


def test_duplicate_keys_are_refused_not_silently_merged() -> None:
    with pytest.raises(UsageError, match="'debug' twice"):
        parse_daemon_json('{"debug": true, "debug": false}', "daemon.json")


def test_empty_daemon_json_is_an_empty_object() -> None:
    assert parse_daemon_json("  \n", "daemon.json") == {}


# ---------------------------------------------------------------- units


def test_last_execstart_wins_and_an_empty_one_resets(tmp_path: Path) -> None:
    sp = _root(tmp_path, unit=True)
    assert effective_execstart(read_host_files(sp)) == [
        "/usr/sbin/dockerd",
        "-H",
        "fd://",
        "--containerd=/run/containerd/containerd.sock",
        "$DOCKER_OPTS",
    ]
    _dropin(
        Path(sp.dropin_dir),
        "10-debug.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd \\\n  --debug\n",
    )
    assert effective_execstart(read_host_files(sp)) == ["/usr/bin/dockerd", "--debug"]
    _dropin(Path(sp.dropin_dir), "20-reset.conf", "[Service]\n# comment\nExecStart=\n")
    assert effective_execstart(read_host_files(sp)) is None


def test_hosts_conflict_is_found_with_its_fix(tmp_path: Path) -> None:
    sp = _root(tmp_path, '{"hosts": ["unix:///var/run/docker.sock"]}', unit=True)
    message = hosts_conflict(read_host_files(sp))
    assert message is not None
    assert "fd://" in message and 'remove "hosts" from daemon.json' in message
    assert "--method daemon-json" in message


def test_hosts_from_docker_opts_count_as_flags() -> None:
    unit = ("u", "[Service]\nExecStart=/usr/sbin/dockerd $DOCKER_OPTS\n")
    files = HostFiles(
        daemon_json='{"hosts": ["unix:///s"]}',
        units=[unit],
        default_docker='DOCKER_OPTS="-H tcp://0.0.0.0:2375 --debug"\n',
    )
    assert hosts_conflict(files) is not None
    assert insecure_listeners(files) == ["tcp://0.0.0.0:2375"]


def test_insecure_listeners_without_tls_and_the_plain_port_with_tls() -> None:
    no_tls = HostFiles(
        daemon_json='{"hosts": ["unix:///s", "tcp://0.0.0.0:2377", "tcp://10.0.0.1"]}'
    )
    assert insecure_listeners(no_tls) == ["tcp://0.0.0.0:2377", "tcp://10.0.0.1"]
    tls = HostFiles(
        daemon_json='{"tlsverify": true, "hosts": ["tcp://0.0.0.0:2376", "tcp://0.0.0.0:2375"]}'
    )
    assert insecure_listeners(tls) == ["tcp://0.0.0.0:2375"]


# ---------------------------------------------------------------- planning and applying


def test_systemd_method_on_debian_unit_keeps_every_flag(tmp_path: Path) -> None:
    sp = _root(tmp_path, '{"log-level": "warn"}\n', unit=True)
    plan = _install(sp, listen="127.0.0.1", port=2376)
    assert plan.method == "systemd"
    args = effective_execstart(read_host_files(sp))
    assert args == [
        "/usr/sbin/dockerd",
        "-H",
        "fd://",
        "--containerd=/run/containerd/containerd.sock",
        "$DOCKER_OPTS",
        "-H",
        "tcp://127.0.0.1:2376",
    ]
    config = json.loads(Path(sp.daemon_json).read_text())
    assert "hosts" not in config
    assert config["log-level"] == "warn"
    assert hosts_conflict(read_host_files(sp)) is None


def test_daemon_json_method_moves_listeners_out_of_the_unit(tmp_path: Path) -> None:
    sp = _root(tmp_path, unit=True)
    plan = _install(sp, method="daemon-json")
    host_files = read_host_files(sp)
    assert effective_execstart(host_files) == [
        "/usr/sbin/dockerd",
        "--containerd=/run/containerd/containerd.sock",
        "$DOCKER_OPTS",
    ]
    config = json.loads(Path(sp.daemon_json).read_text())
    assert config["hosts"] == [f"unix://{sp.docker_socket}", "tcp://0.0.0.0:2376"]
    assert hosts_conflict(host_files) is None
    # auto keeps the method of the first install
    again = plan_install(host_files, sp, InstallOptions(), *PEMS)
    assert (again.method, again.changed, again.backup) == (plan.method, False, None)


def test_install_merges_keeps_mode_backs_up_and_is_idempotent(tmp_path: Path) -> None:
    original = (
        '{\n    "log-driver": "local",\n    "hosts": ["unix:///x.sock"],\n'
        '    "tlsverify": false\n}\n'
    )
    sp = _root(tmp_path, original)
    dj = Path(sp.daemon_json)
    os.chmod(dj, 0o600)
    plan = _install(sp)
    config = json.loads(dj.read_text())
    assert config == {
        "log-driver": "local",
        "hosts": ["unix:///x.sock", "tcp://0.0.0.0:2376"],
        "tlsverify": True,
        "tlscacert": f"{sp.cert_dir}/ca.pem",
        "tlscert": f"{sp.cert_dir}/server-cert.pem",
        "tlskey": f"{sp.cert_dir}/server-key.pem",
    }
    assert dj.read_text().startswith('{\n    "log-driver"')  # the user's indent
    assert stat.S_IMODE(dj.stat().st_mode) == 0o600
    assert plan.backup is not None
    assert Path(plan.backup[1]).read_text() == original
    cert_dir = Path(sp.cert_dir)
    assert stat.S_IMODE(cert_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((cert_dir / "server-key.pem").stat().st_mode) == 0o600
    assert (cert_dir / "server-key.pem").read_bytes() == PEMS[2]
    # No unit: no drop-in at all.
    assert not Path(sp.dropin).exists()

    again = plan_install(read_host_files(sp), sp, InstallOptions(), *PEMS)
    assert (again.changed, again.backup, again.diff()) == (False, None, "")
    # A renewed certificate changes only the certificate files.
    renewed = plan_install(read_host_files(sp), sp, InstallOptions(), PEMS[0], b"NEW", b"NEWKEY")
    assert sorted(renewed.written) == [
        f"{sp.cert_dir}/server-cert.pem",
        f"{sp.cert_dir}/server-key.pem",
    ]
    assert renewed.backup is None


def test_untouched_keys_keep_their_exact_text(tmp_path: Path) -> None:
    original = (
        '{\n  "log-driver": "json-file",\n  "log-opts": {"max-size": "10m", "max-file": "3"},\n'
        '  "registry-mirrors": [ "https://mirror.example.com" ]\n}\n'
    )
    sp = _root(tmp_path, original)
    _install(sp)
    text = Path(sp.daemon_json).read_text()
    assert text.startswith(original[: original.rindex("\n}")])  # every user line verbatim
    assert json.loads(text)["tlsverify"] is True


def test_dry_run_plan_has_the_diff_and_writes_nothing(tmp_path: Path) -> None:
    sp = _root(tmp_path, '{"debug": true}', unit=True)
    before = sorted(p for p in Path(sp.root).rglob("*"))
    plan = plan_install(read_host_files(sp), sp, InstallOptions(), *PEMS)
    diff = plan.diff()
    assert f"+++ {sp.daemon_json}" in diff and '+  "tlsverify": true,' in diff
    assert f"+++ {sp.dropin}" in diff and "+ExecStart=\n" in diff
    assert sorted(p for p in Path(sp.root).rglob("*")) == before


def test_insecure_listener_must_be_kept_or_removed(tmp_path: Path) -> None:
    sp = _root(tmp_path, '{"hosts": ["unix:///x.sock", "tcp://0.0.0.0:2375"]}')
    with pytest.raises(UsageError, match=r"tcp://0.0.0.0:2375 serves the Docker API without TLS"):
        plan_install(read_host_files(sp), sp, InstallOptions(), *PEMS)
    kept = plan_install(read_host_files(sp), sp, InstallOptions(keep_insecure=True), *PEMS)
    assert any("keeping tcp://0.0.0.0:2375" in w for w in kept.warnings)
    assert "tcp://0.0.0.0:2375" in json.loads(kept.new_daemon_json or "")["hosts"]
    removed = plan_install(read_host_files(sp), sp, InstallOptions(remove_insecure=True), *PEMS)
    assert json.loads(removed.new_daemon_json or "")["hosts"] == [
        "unix:///x.sock",
        "tcp://0.0.0.0:2376",
    ]


def test_insecure_flag_in_unit_is_removed_from_the_dropin(tmp_path: Path) -> None:
    sp = _root(tmp_path, unit=True)
    _dropin(
        Path(sp.dropin_dir),
        "00-override.conf",
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// -H tcp://0.0.0.0:2375\n",
    )
    _install(sp, remove_insecure=True)
    assert effective_execstart(read_host_files(sp)) == [
        "/usr/sbin/dockerd",
        "-H",
        "fd://",
        "-H",
        "tcp://0.0.0.0:2376",
    ]


def test_a_later_dropin_with_execstart_is_refused(tmp_path: Path) -> None:
    sp = _root(tmp_path, unit=True)
    _dropin(
        Path(sp.dropin_dir),
        "override.conf",
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd://\n",
    )
    with pytest.raises(UsageError, match=r"override\.conf sets ExecStart.*00-override\.conf"):
        plan_install(read_host_files(sp), sp, InstallOptions(), *PEMS)


def test_systemd_method_refuses_hosts_in_daemon_json(tmp_path: Path) -> None:
    sp = _root(tmp_path, '{"hosts": ["unix:///x.sock"]}', unit=True)
    with pytest.raises(UsageError, match="use --method daemon-json"):
        plan_install(read_host_files(sp), sp, InstallOptions(method="systemd"), *PEMS)
    # daemon-json resolves the existing conflict: the unit's -H goes, hosts stay.
    plan = _install(sp, method="daemon-json")
    assert hosts_conflict(read_host_files(sp)) is None
    assert plan.method == "daemon-json"


def test_failed_write_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    original = '{"debug": true}\n'
    sp = _root(tmp_path, original, unit=True)
    plan = plan_install(read_host_files(sp), sp, InstallOptions(), *PEMS)
    Path(sp.dropin).mkdir(parents=True)  # a directory where the drop-in goes
    with pytest.raises(OperationError, match="changed since certkit read it"):
        apply_plan_locally(plan)
    assert Path(sp.daemon_json).read_text() == original
    assert not any(Path(sp.cert_dir).glob("*.pem"))


def test_reinstall_on_another_address_replaces_the_listener_on_that_port(tmp_path: Path) -> None:
    sp = _root(tmp_path, '{\n  "hosts": ["unix:///x.sock"]\n}\n')
    _install(sp)
    plan = _install(sp, listen="::")
    assert plan.tcp_host == "tcp://[::]:2376"
    assert json.loads(Path(sp.daemon_json).read_text())["hosts"] == [
        "unix:///x.sock",
        "tcp://[::]:2376",
    ]
    assert any("tcp://0.0.0.0:2376 used port 2376" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("listen", "port"), [("0.0.0.0", 0), ("0.0.0.0", 70000), ("not an address", 2376)]
)
def test_bad_listen_or_port_is_refused(tmp_path: Path, listen: str, port: int) -> None:
    sp = _root(tmp_path)
    with pytest.raises(UsageError):
        plan_install(read_host_files(sp), sp, InstallOptions(listen=listen, port=port), *PEMS)


@pytest.mark.parametrize(
    "cert_dir", ["/../../etc/docker/x", "//etc/docker/x", "/etc/../etc/docker/x"]
)
def test_cert_dir_stays_under_the_root(tmp_path: Path, cert_dir: str) -> None:
    # --root is a sandbox: no spelling of --cert-dir may write (or point dockerd) outside it.
    root = tmp_path / "root"
    sp = paths.system_paths(root, cert_dir)
    assert sp.cert_dir == PurePosixPath(root / "etc" / "docker" / "x")
    plan = plan_install(HostFiles(), sp, InstallOptions(), *PEMS)
    config = json.loads(plan.new_daemon_json or "")
    assert config["tlscacert"] == str(root / "etc" / "docker" / "x" / "ca.pem")


def test_two_installs_in_one_second_keep_both_backups(tmp_path: Path) -> None:
    original = '{"debug": true}\n'
    sp = _root(tmp_path, original)
    t = dt.datetime(2026, 11, 27, 4, 11, 7, 100, tzinfo=dt.UTC)
    for port, now in ((2376, t), (2377, t + dt.timedelta(milliseconds=300))):
        plan = plan_install(read_host_files(sp), sp, InstallOptions(port=port), *PEMS, now=now)
        apply_plan_locally(plan)
    backups = sorted(Path(sp.daemon_json).parent.glob("daemon.json.certkit-backup-*"))
    assert len(backups) == 2
    assert backups[0].read_text() == original  # the user's own file is never overwritten
    assert '"tcp://0.0.0.0:2376"' in backups[1].read_text()


def test_a_symlinked_daemon_json_is_updated_where_it_points(tmp_path: Path) -> None:
    """Configuration managers link daemon.json to a file they own: keep the link."""
    sp = _root(tmp_path, "{}\n")
    link = Path(sp.daemon_json)
    managed = tmp_path / "managed" / "daemon.json"
    managed.parent.mkdir()
    managed.write_text('{"debug": true}\n')
    link.unlink()
    link.symlink_to(managed)
    plan = plan_install(read_host_files(sp), sp, InstallOptions(), *PEMS)
    apply_plan_locally(plan, sp)
    assert link.is_symlink()
    config = json.loads(managed.read_text())
    assert config["debug"] is True and config["tlsverify"] is True


# ---------------------------------------------------------------- flags daemon.json also sets

RECIPE = (
    "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// -H tcp://0.0.0.0:2376 "
    "--tlsverify --tlscacert=/etc/docker/tls/ca.pem --tlscert /etc/docker/tls/cert.pem "
    "--tlskey=/etc/docker/tls/key.pem --debug\n"
)


@pytest.mark.parametrize("method", ["auto", "systemd", "daemon-json"])
def test_the_units_tls_flags_move_out_of_certkits_dropin(tmp_path: Path, method: str) -> None:
    """Docker's recipe (issue 26): the TLS flags and daemon.json's TLS keys stopped dockerd."""
    sp = _root(tmp_path, unit=True)
    _dropin(Path(sp.dropin_dir), "00-override.conf", RECIPE)
    assert hosts_conflict(read_host_files(sp)) is None  # as it runs today: no conflict
    plan = _install(sp, method=method)
    files = read_host_files(sp)
    args = effective_execstart(files)
    assert args is not None and args[0] == "/usr/sbin/dockerd"
    assert not [a for a in args if a.startswith("--tls")] and "/etc/docker/tls/cert.pem" not in args
    assert "--debug" in args  # every other flag kept
    assert json.loads(Path(sp.daemon_json).read_text())["tlscert"] == plan.cert_paths["cert"]
    assert hosts_conflict(files) is None


def test_the_state_the_recipe_left_is_found_by_doctors_check(tmp_path: Path) -> None:
    sp = _root(tmp_path, '{"tlsverify": true, "tlscert": "/x", "debug": false}\n', unit=True)
    _dropin(Path(sp.dropin_dir), "00-override.conf", RECIPE)
    message = hosts_conflict(read_host_files(sp))
    assert message is not None
    assert message.startswith("debug, tlscert, tlsverify are set both as a flag of docker.service")
    # A key the install does not own stays where the user put it: refused, one sentence.
    with pytest.raises(UsageError, match=r"^debug is set both as a flag .* nothing was issued\.$"):
        plan_install(read_host_files(sp), sp, InstallOptions(), *PEMS)


def test_tls_flags_from_docker_opts_cannot_be_moved_and_are_refused(tmp_path: Path) -> None:
    sp = _root(tmp_path, unit=True)
    default = Path(sp.default_docker)
    default.parent.mkdir(parents=True, exist_ok=True)
    default.write_text('DOCKER_OPTS="--tlsverify --tlskey=/k.pem"\n')
    with pytest.raises(UsageError, match=r"^tlskey, tlsverify are set both as a flag"):
        plan_install(read_host_files(sp), sp, InstallOptions(), *PEMS)


def test_a_deeply_nested_daemon_json_is_one_sentence(store: object, tmp_path: Path) -> None:
    sp = _root(tmp_path, '{"a": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    r = run_certkit("issue-server", "docker1", "--install", "--root", str(sp.root))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "more than 64 levels deep" in r.stderr
