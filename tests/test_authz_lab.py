"""certkit's authorization plugin on a real systemd host (tests/lab.py): the socket-activated,
hardened units `certkit policy push` installs over SSH, and what happens when the plugin dies.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_json, cli_ok, strict_context, tls_get

pytestmark = pytest.mark.lab


def _docker(config: Path, context: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    env.pop("DOCKER_HOST", None)
    return subprocess.run(
        ["docker", "--context", context, *args], env=env, capture_output=True, text=True, timeout=60
    )


def _main_pid(host: LabHost, unit: str) -> str:
    return host.check(f"systemctl show -p MainPID --value {unit}").strip()


def _wait_reloaded(host: LabHost) -> None:
    """Until dockerd has applied the SIGHUP (it activates the plugin first: a moment)."""
    deadline = time.monotonic() + 30
    while "Reloaded configuration" not in host.journal("docker"):
        assert time.monotonic() < deadline, host.journal("docker")[-2000:]
        time.sleep(0.2)


def test_socket_activated_plugin_survives_kill_9_and_enforces_revocation(
    lab: Lab, docker_config: Path
) -> None:
    host = lab.host()
    cli_ok("init-ca")
    cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart")
    for name in ("alice", "bob"):
        cli_ok("client-context", name, "--host", host.address)
    dockerd_pid = _main_pid(host, "docker")

    pushed = cli_json("policy", "push", "lab", *host.cli_args("root"))
    assert pushed["pushed"][0]["registered"] is True, pushed
    assert host.state("certkit-authz.socket") == "active"
    assert _main_pid(host, "docker") == dockerd_pid  # SIGHUP, not a restart
    assert "authorization-plugins" in host.path("/etc/docker/daemon.json").read_text()
    assert host.check("stat -c '%U %a' /etc/docker/certkit/authz.json").split() == ["root", "644"]
    assert _docker(docker_config, "bob", "version").returncode == 0
    assert _docker(docker_config, "alice", "version").returncode == 0

    # The service is the hardened one, started by its socket.
    show = host.check(
        "systemctl show certkit-authz.service -p Restart -p PrivateNetwork -p ProtectSystem "
        "-p NoNewPrivileges -p CapabilityBoundingSet -p ActiveState"
    )
    hardened = ("Restart=always", "PrivateNetwork=yes", "ProtectSystem=strict",
                "NoNewPrivileges=yes", "CapabilityBoundingSet=", "ActiveState=active")  # fmt: skip
    for line in hardened:
        assert line in show.splitlines(), show

    started = time.monotonic()
    ssh_flags = host.cli_args("root")[2:]  # --identity, --ssh-option: as the push had them
    done = cli_json("revoke", "alice", "--reason", "stolen laptop", *ssh_flags)
    assert [p["host"] for p in done["push"]["pushed"]] == ["lab"]
    denied = _docker(docker_config, "alice", "ps")
    assert denied.returncode != 0 and "certificate revoked on" in denied.stderr, denied.stderr
    print(f"revoke -> denial on 1 lab host: {time.monotonic() - started:.2f} s")
    assert _docker(docker_config, "bob", "ps").returncode == 0
    host.check("docker ps")  # the unix socket, as root on the host

    # kill -9: systemd's socket keeps the connection waiting; the next request succeeds.
    plugin_pid = _main_pid(host, "certkit-authz.service")
    assert plugin_pid != "0"
    started = time.monotonic()
    assert _docker(docker_config, "bob", "ps").returncode == 0
    print(f"the same request with the plugin running: {time.monotonic() - started:.2f} s")
    host.check(f"kill -9 {plugin_pid}")
    started = time.monotonic()
    after = _docker(docker_config, "bob", "ps")
    gap = time.monotonic() - started
    assert after.returncode == 0, after.stderr
    print(f"first request after kill -9 of the plugin: {gap:.2f} s (docker CLI included)")
    assert gap < 5
    new_pid = _main_pid(host, "certkit-authz.service")
    assert new_pid not in ("0", plugin_pid)
    assert _docker(docker_config, "alice", "ps").returncode != 0  # still revoked
    assert _main_pid(host, "docker") == dockerd_pid
    journal = host.journal("certkit-authz")
    assert "deny identity=alice" in journal and "allow identity=bob" in journal


def test_time_from_revoke_to_denial_on_three_hosts(lab: Lab, tmp_path: Path) -> None:
    """`certkit revoke` pushes to every recorded host (one after the other, over SSH): the
    time until the last one denies is printed for the report."""
    hosts = lab.boot(3)
    cli_ok("init-ca")
    tls = tmp_path / "alice"
    cli_ok("client-context", "alice", "--client-only", "--out", str(tls))
    ctx = strict_context(tls / "ca.pem", tls / "cert.pem", tls / "key.pem")
    for i, host in enumerate(hosts):
        cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart")
        cli_ok("policy", "push", f"lab{i}", *host.cli_args("root"))
        assert tls_get(host.address, 2376, "/_ping", ctx)[0] == 200
    started = time.monotonic()
    known = " ".join(str(h.known_hosts) for h in hosts)  # one push reaches all three
    done = cli_json(
        "revoke", "alice", "--identity", str(hosts[0].key),
        "--ssh-option", f"UserKnownHostsFile={known}", "--ssh-option", "IdentitiesOnly=yes",
        "--ssh-option", "GlobalKnownHostsFile=/dev/null",
    )  # fmt: skip
    pushed_in = time.monotonic() - started
    assert sorted(p["host"] for p in done["push"]["pushed"]) == ["lab0", "lab1", "lab2"]
    for host in hosts:
        status, body = tls_get(host.address, 2376, "/_ping", ctx)
        assert status == 403 and b"certificate revoked on" in body, (status, body)
    print(f"revoke -> denial on 3 lab hosts: {time.monotonic() - started:.2f} s "
          f"(push {pushed_in:.2f} s)")  # fmt: skip


def test_a_broken_plugin_is_named_by_doctor_and_the_recovery_needs_no_restart(
    lab: Lab, docker_config: Path
) -> None:
    host = lab.host()
    cli_ok("init-ca")
    cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart")
    cli_ok("client-context", "bob", "--host", host.address)
    cli_ok("policy", "push", "lab", *host.cli_args("root"))
    dockerd_pid = _main_pid(host, "docker")
    _wait_reloaded(host)
    assert _docker(docker_config, "bob", "version").returncode == 0

    # A broken program: systemd keeps restarting it, dockerd gets no answer and denies.
    host.check("echo 'raise SystemExit(3)' > /usr/local/lib/certkit/certkit-authz.py")
    host.check("systemctl kill -s KILL certkit-authz.service")
    assert host.sh("timeout 90 docker ps").returncode != 0  # the unix socket too
    doctor = host.certkit("doctor")
    assert doctor.returncode == 1
    assert "FAIL  authz-plugin          dockerd denies every request" in doctor.stdout
    recovery = "remove 'certkit-authz' from authorization-plugins in /etc/docker/daemon.json"
    assert recovery in doctor.stdout and "kill -HUP $(cat /var/run/docker.pid)" in doctor.stdout

    # The recovery, as doctor words it.
    host.check(
        'python3 -c \'import json; p = "/etc/docker/daemon.json"; c = json.load(open(p)); '
        'c["authorization-plugins"].remove("certkit-authz"); json.dump(c, open(p, "w"))\''
    )
    host.check("kill -HUP $(cat /var/run/docker.pid)")
    deadline = time.monotonic() + 20
    while host.sh("docker ps").returncode != 0:
        assert time.monotonic() < deadline, host.journal()[-2000:]
        time.sleep(0.5)
    assert _main_pid(host, "docker") == dockerd_pid

    # A push puts the program back and registers the plugin again.
    again = cli_json("policy", "push", "lab", *host.cli_args("root"))
    assert again["pushed"][0]["registered"] is True
    assert "/usr/local/lib/certkit/certkit-authz.py" in again["pushed"][0]["written"]
    assert _docker(docker_config, "bob", "version").returncode == 0
    assert _main_pid(host, "docker") == dockerd_pid
