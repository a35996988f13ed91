"""A rootless dockerd on a real systemd lab host, reached as its user over SSH (issue 31).

The daemon is the one Debian's own ``dockerd-rootless-setuptool.sh`` sets up
for the lab's ``guest`` user (no sudo: tests/rootless_support.py).  certkit
connects as ``guest`` with ``--rootless``: no root, no sudo.  The system
dockerd of the same host runs all along and must stay byte-for-byte untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from lab import VENV_CERTKIT, Lab, LabHost, booted_lab, require_lab
from rootless_support import Rootless, setup_rootless
from support import run_certkit

from certkit import api
from certkit.host.engine import served_serial

CONFIG = "/home/guest/.config/docker"
SYSTEM_FILES = (
    "/etc/docker/daemon.json",
    "/lib/systemd/system/docker.service",
    "/lib/systemd/system/docker.socket",
    "/etc/default/docker",
)


@pytest.fixture(scope="module", name="rootless")
def rootless_fixture() -> Iterator[Rootless]:
    """One lab host with guest's rootless dockerd, shared by this module's tests (setting
    it up takes most of a minute)."""
    require_lab()
    with booted_lab() as lab:
        yield setup_rootless(_host(lab))


def _host(lab: Lab) -> LabHost:
    return lab.host()


def _system_state(host: LabHost) -> dict[str, str]:
    """The system daemon's files (their digest; "absent") and its drop-in directory."""
    out = {}
    for path in SYSTEM_FILES:
        p = host.path(path)
        out[path] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else "absent"
    dropins = host.path("/etc/systemd/system/docker.service.d")
    out["dropins"] = " ".join(sorted(os.listdir(dropins))) if dropins.exists() else "absent"
    out["pid"] = host.check("systemctl show -p MainPID --value docker").strip()
    return out


def _args(rl: Rootless, *more: str) -> list[str]:
    return [rl.host.address, *rl.host.cli_args(rl.user), "--rootless", *more]


def _user_unit_started(rl: Rootless) -> str:
    rc, out = rl.as_user("systemctl --user show -p ExecMainStartTimestamp docker")
    assert rc == 0, out
    return out.strip()


def _installed_serial(rl: Rootless) -> str:
    from certkit import certs

    pem = rl.host.path(f"{CONFIG}/certkit/server-cert.pem").read_bytes()
    return certs.serial_hex(certs.load_cert(pem))


def _served(rl: Rootless, port: int = 2376) -> str | None:
    ca = rl.host.path(f"{CONFIG}/certkit/ca.pem").read_bytes()
    return served_serial(rl.host.address, port, ca, None, 5)[0]


@pytest.mark.lab
def test_setup_rootless_serves_mutual_tls_idempotent_and_renews(
    rootless: Rootless, docker_config: Path, certkit_home: Path
) -> None:
    rl, host = rootless, rootless.host
    system_before = _system_state(host)
    r = run_certkit("setup", *_args(rl, "--context", "rl", "--restart"), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    first = json.loads(r.stdout)
    assert first["restarted"] is True and first["verify"]["ok"] is True, first

    # The user's files, with explicit TLS paths under ~/.config/docker/certkit (0700/0600).
    config = json.loads(host.path(f"{CONFIG}/daemon.json").read_text())
    assert config["tlscacert"] == f"{CONFIG}/certkit/ca.pem" and config["tlsverify"] is True
    assert config["hosts"] == [f"unix://{rl.socket}", "tcp://0.0.0.0:2376"]
    assert host.path(f"{CONFIG}/certkit").stat().st_mode & 0o777 == 0o700
    assert host.path(f"{CONFIG}/certkit/server-key.pem").stat().st_mode & 0o777 == 0o600
    assert host.path(f"{CONFIG}/certkit/server-key.pem").stat().st_uid == rl.uid
    dropin = host.path(f"{rl.home}/.config/systemd/user/docker.service.d/certkit.conf")
    assert 'DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS=-p 0.0.0.0:2376:2376/tcp"' in dropin.read_text()
    assert "name=rootless" in rl.info_security()  # still the rootless daemon, now with TLS

    # The docker CLI and docker-py reach it from this machine through the context.
    docker = subprocess.run(
        ["docker", "info", "--format", "{{json .SecurityOptions}}"],
        env={**os.environ, "DOCKER_CONFIG": str(docker_config)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert docker.returncode == 0 and "name=rootless" in docker.stdout, docker.stderr
    assert any("rootless" in o for o in api.docker_client("rl").info()["SecurityOptions"])

    # A second run changes nothing and restarts nothing.
    started = _user_unit_started(rl)
    r = run_certkit("setup", *_args(rl, "--context", "rl", "--restart"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Nothing changed." in r.stdout
    assert _user_unit_started(rl) == started

    # Renewal reaches it again from the record alone: no flag at all.
    old = _installed_serial(rl)
    r = run_certkit("renew", "server", host.address, "--restart")
    assert r.returncode == 0, r.stdout + r.stderr
    new = _installed_serial(rl)
    assert new != old and _served(rl) == new

    # doctor, run on the host by the daemon's user, checks the user's daemon.json and files.
    # The virtualenv's python lives under /root (0700 here): let guest through, in the host's
    # overlay only (its upper layer: this machine's /root keeps its mode).
    host.check("chmod o+x /root")
    _, out = rl.as_user(f"{VENV_CERTKIT} doctor --json 2>/dev/null", timeout=180)
    assert out.strip(), rl.as_user(f"{VENV_CERTKIT} doctor")[1]
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["daemon-json"]["status"] == "PASS", checks
    assert f"{CONFIG}/daemon.json" in checks["daemon-json"]["message"]
    assert checks["tlsverify"]["status"] == "PASS" and checks["hosts-conflict"]["status"] == "PASS"
    assert not [c for c in checks.values() if c["status"] == "FAIL" and "tls" in c["name"]]

    assert _system_state(host) == system_before  # the system dockerd: untouched


@pytest.mark.lab
def test_setup_rootless_on_the_host_itself_as_the_user(rootless: Rootless) -> None:
    """``--rootless`` without --ssh: certkit run by guest on the host, for guest's daemon."""
    rl, host = rootless, rootless.host
    host.check("chmod o+x /root")  # the virtualenv's python, as in the test above
    env = "CERTKIT_HOME=$HOME/certkit-home DOCKER_CONFIG=$HOME/.docker"
    # --replace-ca: the module's host was set up by the earlier tests' stores (issue 26 item 3).
    cmd = f"{env} {VENV_CERTKIT} setup {host.address} --rootless --context here --restart"
    cmd += " --replace-ca"
    _, out = rl.as_user(f"{cmd} --json 2>/dev/null", timeout=300)
    assert out.strip(), rl.as_user(cmd, timeout=300)[1]
    result = json.loads(out)
    assert result.get("restarted") is True and result["verify"]["ok"] is True, result
    assert result["server"]["install"]["daemon_json"] == f"{CONFIG}/daemon.json"
    rc, out = rl.as_user(f"{env} docker --context here info --format '{{{{.SecurityOptions}}}}'")
    assert rc == 0 and "name=rootless" in out, out
    _, listed = rl.as_user(f"{env} {VENV_CERTKIT} list --json 2>/dev/null")
    assert f"{CONFIG}/certkit/server-cert.pem" in listed  # recorded as a path here


@pytest.mark.lab
def test_port_taken_fails_the_restart_and_rolls_back(
    rootless: Rootless, docker_config: Path, certkit_home: Path
) -> None:
    rl, host = rootless, rootless.host
    # --replace-ca: an earlier test set the shared host up from another store.
    r = run_certkit("setup", *_args(rl, "--context", "rl", "--restart", "--replace-ca"))
    assert r.returncode == 0, r.stdout + r.stderr
    system_before = _system_state(host)
    before = {
        p: host.path(p).read_bytes()
        for p in (f"{CONFIG}/daemon.json", f"{CONFIG}/certkit/server-cert.pem")
    }
    dropin = host.path(f"{rl.home}/.config/systemd/user/docker.service.d/certkit.conf")
    dropin_before = dropin.read_bytes()
    serving = _served(rl)
    assert serving is not None
    # Root holds port 2377 on the host: RootlessKit cannot publish it.
    host.check(
        "systemd-run --unit=squat python3 -c 'import socket,time; s=socket.socket(); "
        's.bind(("0.0.0.0", 2377)); s.listen(); time.sleep(3600)\' && sleep 1'
    )
    try:
        r = run_certkit("issue-server", *_args(rl, "--port", "2377", "--restart"))
    finally:
        host.sh("systemctl stop squat")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Docker did not come back" in r.stderr, r.stderr
    assert {p: host.path(p).read_bytes() for p in before} == before
    assert dropin.read_bytes() == dropin_before
    assert rl.as_user("systemctl --user is-active docker")[1].strip() == "active"
    assert _served(rl) == serving  # back on 2376 with the previous certificate
    assert _system_state(host) == system_before


@pytest.mark.lab
def test_low_port_and_root_are_refused(rootless: Rootless, certkit_home: Path) -> None:
    rl, host = rootless, rootless.host
    r = run_certkit("setup", *_args(rl, "--port", "443"))
    assert r.returncode == 2 and "below 1024" in r.stderr, r.stdout + r.stderr
    r = run_certkit("setup", host.address, *host.cli_args("root"), "--rootless")
    assert r.returncode == 2 and "not root" in r.stderr, r.stdout + r.stderr


# ---------------------------------------------------------------- without a lab host


def test_rootless_plan_publishes_the_port_and_keeps_the_units_flags() -> None:
    from certkit.errors import UsageError
    from certkit.host.hostfiles import HostFiles
    from certkit.host.plan import plan_install
    from certkit.install_options import InstallOptions
    from certkit.paths import RootlessPaths

    unit = (
        "/home/alice/.config/systemd/user/docker.service",
        "[Service]\nEnvironment=DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS=--port-driver=slirp4netns"
        "\nExecStart=/usr/bin/dockerd-rootless.sh\n",
    )
    sp = RootlessPaths(home=PurePosixPath("/home/alice"), uid=1000)
    pems = (b"ca", b"cert", b"key")
    plan = plan_install(HostFiles(units=[unit]), sp, InstallOptions(), *pems)
    assert plan.daemon_json_path == "/home/alice/.config/docker/daemon.json"
    assert plan.cert_paths["key"] == "/home/alice/.config/docker/certkit/server-key.pem"
    assert json.loads(plan.new_daemon_json or "")["hosts"] == [
        "unix:///run/user/1000/docker.sock",
        "tcp://0.0.0.0:2376",
    ]
    assert plan.new_dropin is not None and "ExecStart" not in plan.new_dropin
    assert plan.new_dropin.endswith(
        'Environment="DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS=--port-driver=slirp4netns '
        '-p 0.0.0.0:2376:2376/tcp"\n'
    )
    assert plan.dropin_path.endswith("/.config/systemd/user/docker.service.d/certkit.conf")
    # Another port later: 2376, kept in daemon.json, stays published too.
    moved = HostFiles(units=[unit], daemon_json=plan.new_daemon_json)
    later = plan_install(moved, sp, InstallOptions(port=2377), *pems)
    assert later.new_dropin is not None and later.new_dropin.endswith(
        '--port-driver=slirp4netns -p 0.0.0.0:2376:2376/tcp -p 0.0.0.0:2377:2377/tcp"\n'
    )
    assert plan.restart_command.startswith("systemctl --user restart docker")
    refused = [
        (InstallOptions(port=80), "below 1024"),
        (InstallOptions(listen="10.0.0.5"), "cannot go with --rootless"),
        (InstallOptions(allow_from=("10.0.0.0/8",)), "firewall is root's"),
    ]
    for bad, why in refused:
        with pytest.raises(UsageError, match=why):
            plan_install(HostFiles(units=[unit]), sp, bad, *pems)


def test_rootless_ref_is_recorded_and_reopened_from_the_flags() -> None:
    from certkit.errors import UsageError
    from certkit.rootless_kind import RootlessRef
    from certkit.targets import Reach, SSHRef, from_reach, ref_from_json, ref_to_json

    ref = from_reach(Reach(ssh="alice@h1", identity="/k", rootless=True))
    assert ref == RootlessRef("alice@h1", "/k")
    assert ref_from_json(json.loads(json.dumps(ref_to_json(ref)))) == ref
    assert from_reach(Reach(), ref) == ref  # renew: the record alone
    assert from_reach(Reach(ssh="alice@h1"), ref) == ref
    assert isinstance(from_reach(Reach(ssh="root@h1"), ref), SSHRef)
    assert from_reach(Reach(rootless=True)) == RootlessRef()  # this machine, as its user
    for reach in (Reach(root="/x", rootless=True), Reach(ssh="a@h", sudo=True, rootless=True)):
        with pytest.raises(UsageError):
            from_reach(reach)


@pytest.mark.lab
def test_linger_off_is_refused_with_the_command(rootless: Rootless, certkit_home: Path) -> None:
    """Last in this module: it leaves guest without linger (its daemon stops)."""
    rl, host = rootless, rootless.host
    config = host.path(f"{CONFIG}/daemon.json")
    before = config.read_bytes() if config.exists() else None
    host.check(f"loginctl disable-linger {rl.user}")
    r = run_certkit("setup", *_args(rl, "--port", "2380"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"`loginctl enable-linger {rl.user}`" in r.stderr and "as root" in r.stderr
    assert (config.read_bytes() if config.exists() else None) == before  # nothing written
