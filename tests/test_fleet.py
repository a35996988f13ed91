"""certkit fleet: many Docker hosts through Ansible, on real systemd lab hosts.

The lab tests run the real ``ansible-playbook`` (through ansible-runner, or
directly with the shipped role) against three booted hosts with Debian's
``docker.service``; what they check is read on the hosts themselves and
through the docker CLI with the contexts ``--contexts`` wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lab import SUDO_USER, Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_json, cli_ok, run_certkit
from test_lab import HOLD_2376, snapshot

DROPIN = "/etc/systemd/system/docker.service.d/certkit.conf"


def inventory(
    path: Path, hosts: list[LabHost], user: str = "root", extra: dict[str, str] | None = None
) -> Path:
    """An INI inventory of the lab hosts, group docker_hosts, named h1, h2, ...; each host's
    own known_hosts (Ansible checks host keys, and so must certkit fleet)."""
    lines = ["[docker_hosts]"]
    for i, h in enumerate(hosts, 1):
        ssh_args = " ".join(f"-o {o}" for o in h.ssh_options())
        line = f"h{i} ansible_host={h.address} ansible_ssh_common_args='{ssh_args}'"
        if extra and f"h{i}" in extra:
            line += " " + extra[f"h{i}"]
        lines.append(line)
    lines += [
        "[docker_hosts:vars]",
        f"ansible_user={user}",
        f"ansible_ssh_private_key_file={hosts[0].key}",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    if user != "root":
        lines.append("ansible_become=true")
    path.write_text("\n".join(lines) + "\n")
    return path


def docker_via_context(name: str) -> str:
    done = subprocess.run(
        ["docker", "--context", name, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"docker --context {name}: {done.stdout}{done.stderr}"
    return done.stdout.strip()


def fleet(*args: str) -> tuple[int, dict[str, object]]:
    r = run_certkit("fleet", *args, "--json")
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"certkit fleet {' '.join(args)}: {r.stdout}{r.stderr}") from None


def server_records() -> int:
    return len(cli_json("list", "--kind", "server"))


# ---------------------------------------------------------------- without hosts


def test_help_does_not_import_ansible() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "certkit", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "fleet" in done.stdout
    imported = [ln for ln in done.stderr.splitlines() if "ansible" in ln]
    assert imported == []


def test_collection_path_holds_the_collection() -> None:
    path = Path(cli_ok("fleet", "collection-path").strip())
    collection = path / "ansible_collections" / "certkit" / "docker"
    assert (collection / "galaxy.yml").is_file()
    assert (collection / "plugins" / "action" / "daemon_tls.py").is_file()
    assert (collection / "roles" / "daemon_tls" / "tasks" / "main.yml").is_file()
    # Ansible itself finds the action plugin there.
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(path)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "-t", "role", "-l", "certkit.docker"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "certkit.docker.daemon_tls" in done.stdout, done.stderr


def test_bad_input_is_one_sentence(tmp_path: Path) -> None:
    cli_ok("init-ca")
    r = run_certkit("fleet", "apply", str(tmp_path / "missing.ini"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"certkit: error: Inventory {tmp_path / 'missing.ini'} does not exist: "
        "give an Ansible inventory file."
    ]
    inv = tmp_path / "hosts.ini"
    inv.write_text("[docker_hosts]\nh1 ansible_host=192.0.2.1\n")
    r = run_certkit("fleet", "verify", str(inv))
    assert r.returncode == 2
    assert "run `certkit fleet apply INVENTORY` first" in r.stderr
    r = run_certkit("fleet", "apply", str(inv), "--serial", "-1")
    assert r.returncode == 2
    assert "--serial must be 0" in r.stderr


def test_unreachable_host_is_named_and_exit_1(tmp_path: Path) -> None:
    cli_ok("init-ca")
    inv = tmp_path / "hosts.ini"
    # Port 1 on loopback: ssh is refused at once (a real connection failure, no waiting).
    inv.write_text("[docker_hosts]\nh1 ansible_host=127.0.0.1 ansible_port=1\n")
    r = run_certkit("fleet", "apply", str(inv), "--restart")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("  FAILED   h1: ") for ln in lines), r.stdout
    assert lines[-1] == "Failed: h1."
    rc, out = fleet("apply", str(inv), "--restart")
    assert rc == 1 and out["failed"] == ["h1"] and out["hosts"]["h1"]["unreachable"]


# ---------------------------------------------------------------- three lab hosts


@pytest.mark.lab
@pytest.mark.slow
def test_fleet_converges_rolls_back_one_host_and_stays_converged(
    lab: Lab, tmp_path: Path, docker_config: Path
) -> None:
    hosts = lab.boot(3)
    _, h2, h3 = hosts
    cli_ok("init-ca")
    inv = inventory(tmp_path / "hosts.ini", hosts)

    # h3's port 2376 is taken: its restart fails and is rolled back; h1 and h2 converge.
    before3, files3 = h3.dockerd_args(), snapshot(h3)
    h3.check(HOLD_2376)
    rc, out = fleet("apply", str(inv), "--group", "docker_hosts", "--restart", "--contexts")
    assert rc == 1, out
    assert out["failed"] == ["h3"]
    assert "Docker did not come back after the restart" in str(out["hosts"]["h3"]["msg"])
    assert "restarted with the previous configuration" in str(out["hosts"]["h3"]["msg"])
    assert h3.state() == "active" and not h3.start_limit_hit()
    assert h3.dockerd_args() == before3
    assert snapshot(h3) == files3
    assert sorted(out["contexts"]) == ["h1", "h2"]
    for name in ("h1", "h2"):
        assert docker_via_context(name)

    # Port freed: the next apply converges h3 and leaves h1, h2 alone.
    h3.check("systemctl stop holder")
    rc, out = fleet("apply", str(inv), "--restart", "--contexts")
    assert rc == 0, out
    assert out["changed"] == ["h3"] and out["issued"] == ["h3"]
    for name in ("h1", "h2", "h3"):
        assert docker_via_context(name)
    rc, report = fleet("verify", str(inv))
    assert rc == 0, report

    # A third apply changes no file on any host and issues nothing.
    files = {h.name: snapshot(h) for h in hosts}
    records = server_records()
    rc, out = fleet("apply", str(inv), "--restart", "--contexts", "--serial", "1", "--forks", "2")
    assert rc == 0, out
    assert out["changed"] == [] and out["issued"] == [] and out["contexts"] == []
    assert {h.name: snapshot(h) for h in hosts} == files
    assert server_records() == records

    # --check with a new name for h1: h1's pending change is shown, nothing changes.
    inv_sans = inventory(tmp_path / "sans.ini", hosts, extra={"h1": "certkit_sans=\"['h1.lab']\""})
    rc, out = fleet("apply", str(inv_sans), "--check", "--restart")
    assert rc == 0, out
    assert out["changed"] == ["h1"]
    assert out["issued"] == ["h1"]  # counted as the host line says (was: 0 to issue)
    assert "does not name h1.lab" in str(out["hosts"]["h1"]["reasons"])
    assert {h.name: snapshot(h) for h in hosts} == files
    assert server_records() == records
    human = run_certkit("fleet", "apply", str(inv_sans), "--check")
    assert human.returncode == 0, human.stderr
    assert "  pending  h1: would issue a certificate (does not name h1.lab)" in human.stdout
    assert "1 certificates to issue" in human.stdout
    assert "      +++ /etc/docker/certkit/server-cert.pem" not in human.stdout  # no PEM diffs

    # Fleet hosts are in the inventory like any other server.
    listed = {i["name"] for i in cli_json("list", "--kind", "server")}
    assert {h.address for h in hosts} <= listed

    # h2's docker stopped: verify fails; apply without --restart fails loudly; with it, back.
    h2.check("systemctl stop docker.socket docker.service")
    rc, report = fleet("verify", str(inv))
    assert rc == 1 and report["failed"] == ["h2"], report
    rc, out = fleet("apply", str(inv))
    assert rc == 1 and out["failed"] == ["h2"], out
    assert "does not serve the installed certificate" in str(out["hosts"]["h2"]["msg"])
    rc, out = fleet("apply", str(inv), "--restart")
    assert rc == 0 and out["changed"] == ["h2"] and out["issued"] == [], out
    assert h2.state() == "active"
    assert docker_via_context("h2")
    assert snapshot(h2) == files[h2.name]

    # Someone else breaks h1's daemon.json and restarts docker: apply fails loudly, naming it.
    h1 = hosts[0]
    h1.path("/etc/docker/daemon.json").write_text('{"tlsverify": true,,}\n')
    h1.sh("systemctl restart docker")
    assert h1.state() == "failed"
    rc, out = fleet("apply", str(inv), "--restart")
    assert rc == 1 and out["failed"] == ["h1"], out
    assert "/etc/docker/daemon.json" in str(out["hosts"]["h1"]["msg"])


@pytest.mark.lab
@pytest.mark.slow
def test_role_from_plain_ansible_playbook_with_become(
    lab: Lab, tmp_path: Path, docker_config: Path
) -> None:
    host = lab.host()
    cli_ok("init-ca")
    inv = inventory(tmp_path / "hosts.ini", [host], user=SUDO_USER)
    playbook = tmp_path / "site.yml"
    playbook.write_text(
        "- hosts: docker_hosts\n"
        "  gather_facts: false\n"
        "  vars:\n"
        "    certkit_restart: handler\n"
        "  roles:\n"
        "    - certkit.docker.daemon_tls\n"
    )
    path = cli_ok("fleet", "collection-path").strip()
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": path, "ANSIBLE_NOCOLOR": "1"}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), str(playbook)]

    # certkit fleet keeps Ansible's host key checking on (ansible-runner turns it off).
    before = snapshot(host)
    stranger = tmp_path / "stranger.ini"
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    stranger.write_text(
        inv.read_text().replace(str(host.known_hosts), str(empty)).replace("/dev/null", str(empty))
    )
    assert str(empty) in stranger.read_text()
    rc, out = fleet("apply", str(stranger), "--restart")
    assert rc == 1 and out["failed"] == ["h1"], out
    assert "Host key verification failed" in str(out["hosts"]["h1"]["msg"])
    assert snapshot(host) == before

    # Check mode: a diff, nothing written.
    done = subprocess.run([*argv, "--check", "--diff"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tlsverify" in done.stdout and "changed=1" in done.stdout
    assert snapshot(host) == before

    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RUNNING HANDLER [certkit.docker.daemon_tls : certkit restart docker]" in done.stdout
    assert "BEGIN" not in done.stdout  # no PEM, let alone a key, in Ansible's output
    assert host.state() == "active"
    assert host.path(DROPIN).exists()
    assert host.dockerd_args()[-2:] == ["-H", "tcp://0.0.0.0:2376"]

    # Converged: a second run changes nothing.
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "changed=0" in done.stdout
