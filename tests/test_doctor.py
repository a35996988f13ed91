"""`certkit doctor`: local checks of a sandboxed Docker host (--root) and a docker config dir."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from support import run_certkit, write_json

from certkit import ca, certs, names
from certkit.store import CAStore

DEBIAN_UNIT = Path("/lib/systemd/system/docker.service")


def _checks(stdout: str) -> dict[str, str]:
    """check name -> its line, from the human output."""
    found = {}
    for line in stdout.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) > 1 and parts[0] in ("PASS", "WARN", "FAIL", "SKIP"):
            found.setdefault(parts[1] if parts[1] != "context" else line.split()[2], line)
    return found


def _install(root: Path, store: CAStore, **extra: object) -> dict[str, Path]:
    """A certkit-style TLS setup under ROOT, written by hand: files 0600/0644, daemon.json."""
    issued = ca.issue(store, "server", "docker1", "docker1", names.parse_names(["docker1"]))
    cert_dir = root / "etc" / "docker" / "certkit"
    cert_dir.mkdir(parents=True, mode=0o700)
    files = {
        "tlscacert": cert_dir / "ca.pem",
        "tlscert": cert_dir / "server-cert.pem",
        "tlskey": cert_dir / "server-key.pem",
    }
    files["tlscacert"].write_bytes(store.trust_bundle_pem())
    files["tlscert"].write_bytes(issued.cert_pem)
    files["tlskey"].write_bytes(issued.key_pem)
    for name, path in files.items():
        path.chmod(0o600 if name == "tlskey" else 0o644)
    config = {"tlsverify": True, **{k: str(v) for k, v in files.items()}, **extra}
    write_json(root / "etc" / "docker" / "daemon.json", config)
    return files


def _context(config_dir: Path, name: str, host: str, store: CAStore, mode: int = 0o600) -> Path:
    """A docker CLI context with TLS files (store layout of facts doc section 2)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    issued = ca.issue(store, "client", name, name)
    tls = config_dir / "contexts" / "tls" / digest / "docker"
    tls.mkdir(parents=True)
    for fname, data in (
        ("ca.pem", store.trust_bundle_pem()),
        ("cert.pem", issued.cert_pem),
        ("key.pem", issued.key_pem),
    ):
        (tls / fname).write_bytes(data)
        (tls / fname).chmod(mode)
    meta = {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}}
    write_json(config_dir / "contexts" / "meta" / digest / "meta.json", meta)
    return tls


def test_debian_unit_plus_hosts_in_daemon_json_is_reported_with_the_fix(
    tmp_path: Path, store: CAStore
) -> None:
    if not DEBIAN_UNIT.exists():
        pytest.skip("Debian's docker.io unit is not installed")
    root = tmp_path / "root"
    unit = root / "lib" / "systemd" / "system" / "docker.service"
    unit.parent.mkdir(parents=True)
    shutil.copy(DEBIAN_UNIT, unit)
    _install(root, store, hosts=["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"])

    r = run_certkit("doctor", "--root", str(root))
    assert r.returncode == 1, r.stdout
    line = _checks(r.stdout)["hosts-conflict"]
    assert line.startswith("FAIL")
    assert "hosts" in line
    # The fix is part of the message: a drop-in without -H, or hosts out of daemon.json.
    assert "drop-in" in line or "remove" in line.lower()
    # Everything else about this host is fine.
    others = {k: v for k, v in _checks(r.stdout).items() if k != "hosts-conflict"}
    assert not [v for v in others.values() if v.startswith("FAIL")], r.stdout


def test_a_certkit_style_host_and_client_are_healthy(
    tmp_path: Path, store: CAStore, docker_config: Path
) -> None:
    root = tmp_path / "root"
    _install(root, store)
    _context(docker_config, "docker1", "tcp://docker1:2376", store)

    r = run_certkit("doctor", "--root", str(root), "--json")
    assert r.returncode == 0, r.stdout
    data = json.loads(r.stdout)
    status = {c["name"]: c["status"] for c in data["checks"]}
    assert status["daemon-json"] == "PASS"
    assert status["tlskey"] == "PASS" and status["key-matches-cert"] == "PASS"
    assert status["ca-signed-server"] == "PASS"
    assert status["hosts-conflict"] == "PASS" and status["insecure-listener"] == "PASS"
    assert status["context docker1"] == "PASS"
    assert status["DOCKER_HOST"] == "PASS" and status["ca-bundle-env"] == "PASS"
    signed = next(c for c in data["checks"] if c["name"] == "ca-signed-server")
    assert "certkit CA 'default'" in signed["message"]


def test_unsafe_modes_mismatched_key_and_foreign_ca_fail(tmp_path: Path, store: CAStore) -> None:
    root = tmp_path / "root"
    files = _install(root, store)
    files["tlskey"].chmod(0o644)
    r = run_certkit("doctor", "--root", str(root))
    assert r.returncode == 1
    line = _checks(r.stdout)["tlskey"]
    assert line.startswith("FAIL") and "0644" in line and f"chmod 600 {files['tlskey']}" in line

    # A key from another certificate, and a tlscacert from another CA.
    files["tlskey"].chmod(0o600)
    files["tlskey"].write_bytes(certs.key_pem(certs.generate_key()))
    other = CAStore("other")
    assert run_certkit("init-ca", "--ca", "other").returncode == 0
    files["tlscacert"].write_bytes(other.cert_path.read_bytes())
    checks = _checks(run_certkit("doctor", "--root", str(root)).stdout)
    assert checks["key-matches-cert"].startswith("FAIL")
    assert "does not belong to tlscert" in checks["key-matches-cert"]
    assert checks["ca-signed-server"].startswith("FAIL")

    # Missing files: dockerd would not start.
    files["tlscert"].unlink()
    checks = _checks(run_certkit("doctor", "--root", str(root)).stdout)
    assert checks["tlscert"].startswith("FAIL") and "does not exist" in checks["tlscert"]


def test_invalid_daemon_json_and_plain_tcp_listener(tmp_path: Path) -> None:
    root = tmp_path / "root"
    daemon_json = root / "etc" / "docker" / "daemon.json"
    daemon_json.parent.mkdir(parents=True)
    daemon_json.write_text('{"hosts": ["tcp://0.0.0.0:2375"],\n  "debug": true,,}\n')
    r = run_certkit("doctor", "--root", str(root))
    assert r.returncode == 1
    line = _checks(r.stdout)["daemon-json"]
    assert line.startswith("FAIL") and "line 2" in line

    write_json(daemon_json, {"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]})
    r = run_certkit("doctor", "--root", str(root))
    assert r.returncode == 1
    line = _checks(r.stdout)["insecure-listener"]
    assert line.startswith("FAIL") and "tcp://0.0.0.0:2375" in line


def test_client_side_context_modes_docker_host_and_ca_bundle_variables(
    tmp_path: Path, store: CAStore, docker_config: Path
) -> None:
    root = tmp_path / "empty-root"
    root.mkdir()
    _context(docker_config, "loose", "tcp://docker1:2376", store, mode=0o644)
    broken = _context(docker_config, "broken", "tcp://docker2:2376", store)
    (broken / "key.pem").unlink()
    write_json(docker_config / "config.json", {"currentContext": "loose", "auths": {}})

    env = {"DOCKER_HOST": "tcp://elsewhere:2376", "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/x.pem"}
    r = run_certkit("doctor", "--root", str(root), env=env)
    assert r.returncode == 1
    checks = _checks(r.stdout)
    assert checks["daemon-json"].startswith("SKIP")  # a client machine, not a Docker host
    assert checks["loose"].startswith("FAIL") and "chmod 600" in checks["loose"]
    assert checks["broken"].startswith("FAIL") and "key.pem missing" in checks["broken"]
    assert checks["DOCKER_HOST"].startswith("WARN") and "context 'loose'" in checks["DOCKER_HOST"]
    assert checks["ca-bundle-env"].startswith("WARN")
    assert "trust_env = False" in checks["ca-bundle-env"]


def test_docker_config_option_and_no_daemon_means_exit_0(tmp_path: Path, store: CAStore) -> None:
    cfg = tmp_path / "elsewhere"
    _context(cfg, "prod", "tcp://prod:2376", store)
    os.chmod(cfg, 0o700)
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    r = run_certkit("doctor", "--root", str(laptop), "--docker-config", str(cfg))
    assert r.returncode == 0, r.stdout
    checks = _checks(r.stdout)
    assert checks["prod"].startswith("PASS")
    # No dockerd configured at all: nothing to pass or fail about its listeners.
    assert checks["hosts-conflict"].startswith("SKIP")
    assert checks["insecure-listener"].startswith("SKIP")
    assert "Traceback" not in r.stderr

    r = run_certkit("doctor", "--root", str(tmp_path / "typo"))
    assert r.returncode == 2 and "is not a directory" in r.stderr, r.stdout + r.stderr


def test_doctor_agrees_with_a_real_install_on_a_debian_unit(tmp_path: Path, store: CAStore) -> None:
    if not DEBIAN_UNIT.exists():
        pytest.skip("Debian's docker.io unit is not installed")
    root = tmp_path / "root"
    unit = root / "lib" / "systemd" / "system" / "docker.service"
    unit.parent.mkdir(parents=True)
    shutil.copy(DEBIAN_UNIT, unit)
    r = run_certkit("issue-server", "docker1.example.com", "--install", "--root", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_certkit("doctor", "--root", str(root))
    assert r.returncode == 0, r.stdout
    assert "PASS  hosts-conflict" in r.stdout and "PASS  key-matches-cert" in r.stdout


# ---------------------------------------------------------------- exposure (host/exposure.py)
# Lab hosts prove ufw, firewalld and the live listeners (tests/test_lab_exposure.py) and
# nftables (tests/test_lab_nftables.py); these cases feed the parsers the tools' own output,
# copied from firewall-cmd 1.3 and nft 1.0, for layouts the lab hosts do not produce.


def test_firewalld_and_nftables_sources_of_the_tls_port() -> None:
    from certkit.host.exposure import firewalld_sources, nft_sources

    zone = [
        "public (active)",
        "  target: default",
        "  interfaces: eth0",
        "  services: dhcpv6-client ssh",
        "  ports: 8080/tcp",
        "  rich rules: ",
        '\trule family="ipv4" source address="10.0.0.0/24" port port="2376" protocol="tcp" accept',
    ]
    assert firewalld_sources(zone, 2376) == ["10.0.0.0/24"]
    assert firewalld_sources([*zone, "  ports: 2000-3000/tcp"], 2376) == ["10.0.0.0/24", "any"]
    assert firewalld_sources(["  target: ACCEPT"], 2376) == ["any"]
    assert firewalld_sources(zone, 2377) == []
    ruleset = [
        "table inet filter {",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        "\t\ttcp dport 22 accept",
        "\t\tip saddr 192.0.2.7 tcp dport { 80, 2376 } accept",
        "\t}",
        "}",
    ]
    assert nft_sources(ruleset, 2376) == ["192.0.2.7/32"]
    assert nft_sources([*ruleset, "\t\ttcp dport 2376 accept"], 2376) == ["192.0.2.7/32", "any"]
    assert nft_sources(ruleset, 2375) == []


def test_ufw_sources_and_what_doctor_says_about_them() -> None:
    from certkit.host.exposure import Exposure, Listener, findings, ufw_sources
    from certkit.host.firewall import FirewallState

    status = [
        "Status: active",
        "Default: deny (incoming), allow (outgoing), disabled (routed)",
        "To                         Action      From",
        "22/tcp                     ALLOW IN    Anywhere",
        "2376/tcp                   ALLOW IN    10.77.5.1                  # certkit",
        "22/tcp (v6)                ALLOW IN    Anywhere (v6)",
    ]
    assert ufw_sources(status, 2376) == ["10.77.5.1/32"]
    assert ufw_sources([*status, "2000:2400/tcp   ALLOW IN    Anywhere"], 2376)[-1] == "any"
    assert ufw_sources([status[1].replace("deny (incoming)", "allow (incoming)")], 2376) == ["any"]
    live = [Listener("::", 2376), Listener("127.0.0.1", 2375)]
    fw = Exposure(FirewallState("ufw"), {"ufw": status})
    plain, tls = findings([2376], 2375, fw, live)
    assert (plain.status, tls.status) == ("WARN", "PASS")
    assert tls.check().message == "port 2376/tcp is reachable only from 10.77.5.1/32 (ufw)"
    blocked = findings([2376], None, Exposure(FirewallState("ufw"), {"ufw": status[:3]}), live)
    assert blocked[0].status == "WARN" and "blocked by ufw" in blocked[0].message
    assert "--allow-from CIDR" in blocked[0].check().message
    assert findings([2376], 2375, fw, [])[1].status == "SKIP"  # dockerd not listening


def test_root_sandbox_skips_the_live_exposure_checks(tmp_path: Path) -> None:
    r = run_certkit("doctor", "--root", str(tmp_path), "--json")
    data = json.loads(r.stdout)
    status = {c["name"]: (c["status"], c["message"]) for c in data["checks"]}
    assert status["plain-port"][0] == status["tls-port-exposure"][0] == "SKIP"
    assert "--root" in status["tls-port-exposure"][1] and data["exposure"] == []
