"""Who can reach the Docker ports, as `certkit doctor` and `certkit verify` report it, on
real systemd lab hosts (tests/lab.py): no firewall, ufw with certkit's rule, and a plain
tcp://0.0.0.0:2375 listener.

ufw comes from this machine's root through the overlay and is only ever enabled inside
a lab host (default deny, SSH allowed: what an Ubuntu admin does).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_ok, run_certkit

pytestmark = pytest.mark.lab

OPEN = "port 2376/tcp is open to every network"


@pytest.fixture
def host(lab: Lab) -> LabHost:
    return lab.host()


def inside(host: LabHost, *args: str) -> tuple[int, str]:
    r = host.certkit(*args)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout


def lines(out: str) -> dict[str, str]:
    """check name -> its line, from doctor's or verify's human output."""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[0] in ("PASS", "WARN", "FAIL", "SKIP"):
            found[parts[1]] = line
    return found


def finding(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in data["exposure"] if f["name"] == name)


def installed_with_allow_from(host: LabHost, manager: str) -> None:
    """Install from this machine with --allow-from it: doctor on the host PASSes (no
    warning), verify from here passes through the firewall."""
    cli_ok("init-ca")
    source = f"{host.gateway}/32"
    cli_ok(
        "issue-server", host.address, *host.cli_args("root"), "--restart", "--allow-from", source
    )
    rc, out = inside(host, "doctor")
    assert rc == 0, out
    assert lines(out)["tls-port-exposure"].startswith("PASS"), out
    assert f"port 2376/tcp is reachable only from {source} ({manager})" in out
    assert "No problem found." in out  # no warning at all
    f = finding(json.loads(inside(host, "doctor", "--json")[1]), "tls-port-exposure")
    assert (f["status"], f["firewall"], f["allowed_from"]) == ("PASS", manager, [source])
    cli_ok("client-context", "lab", "--host", host.address)
    # From this machine verify cannot see the firewall: only what it can probe.
    remote = cli_ok("verify", "--context", "lab")
    assert "tls-port-exposure" not in remote and "All 11 checks passed." in remote


def test_no_firewall_doctor_and_verify_on_the_host_warn_2376_open_to_every_network(
    host: LabHost,
) -> None:
    assert inside(host, "init-ca")[0] == 0
    rc, out = inside(host, "issue-server", host.address, "--install", "--restart")
    assert rc == 0, out
    rc, out = inside(host, "doctor")
    assert rc == 0, out  # a warning, not a failure: docker's default set-up
    exposure = lines(out)["tls-port-exposure"]
    assert exposure.startswith("WARN") and OPEN in exposure, out
    assert "no host firewall is active" in exposure and "--allow-from CIDR" in exposure
    assert "(dockerd)" in exposure  # who holds the socket, from /proc
    assert lines(out)["plain-port"].startswith("PASS")
    assert lines(out)["restart-impact"].startswith("WARN")  # issue 29's advice
    assert "No problem found, 2 warning(s)." in out

    data = json.loads(inside(host, "doctor", "--json")[1])
    f = finding(data, "tls-port-exposure")
    assert (f["status"], f["port"], f["firewall"], f["allowed_from"]) == (
        "WARN", 2376, "none", ["any"]
    )  # fmt: skip
    assert f["addresses"] in (["0.0.0.0"], ["::"]) and "--allow-from" in f["next"]  # Go: "::"
    assert f["processes"] == ["dockerd"]

    # verify run on the host itself says the same; from this machine it cannot tell.
    assert inside(host, "client-context", "self", "--host", host.address)[0] == 0
    rc, out = inside(host, "verify", "--context", "self")
    assert rc == 0, out
    assert lines(out)["tls-port-exposure"].startswith("WARN") and OPEN in out
    assert "All 13 checks passed, 1 warning(s)." in out


def test_ufw_with_the_allow_from_rule_gives_no_warning_and_a_rule_from_anywhere_does(
    host: LabHost,
) -> None:
    host.check("ufw default deny incoming && ufw allow 22/tcp && ufw --force enable")
    installed_with_allow_from(host, "ufw")

    # Someone adds "ufw allow 2376/tcp": open to everyone again, and doctor says so.
    host.check("ufw allow 2376/tcp")
    rc, out = inside(host, "doctor")
    assert rc == 0, out
    exposure = lines(out)["tls-port-exposure"]
    assert exposure.startswith("WARN") and f"{OPEN}: ufw allows it from anywhere" in exposure
    host.check("ufw delete allow 2376/tcp")
    assert lines(inside(host, "doctor")[1])["tls-port-exposure"].startswith("PASS")


def test_plain_2375_listener_fails_doctor_on_the_host_and_verify_from_here(
    host: LabHost,
) -> None:
    # The old insecure set-up: Debian's unit takes -H flags from /etc/default/docker.
    host.path("/etc/default/docker").write_text('DOCKER_OPTS="-H tcp://0.0.0.0:2375"\n')
    host.check("systemctl restart docker")
    assert host.state() == "active"
    assert host.dockerd_args()[-2:] == ["-H", "tcp://0.0.0.0:2375"]

    rc, out = inside(host, "doctor")
    assert rc == 1, out
    plain = lines(out)["plain-port"]
    assert plain.startswith("FAIL"), out
    assert "port 2375 (Docker's plain-HTTP API port) is listening on " in plain
    assert "(dockerd): whoever reaches it is root on this host" in plain
    assert "--remove-insecure" in plain
    assert lines(out)["insecure-listener"].startswith("FAIL")
    data = json.loads(inside(host, "doctor", "--json")[1])
    assert data["ok"] is False
    f = finding(data, "plain-port")
    assert (f["status"], f["port"]) == ("FAIL", 2375) and f["addresses"] in (["0.0.0.0"], ["::"])

    # From this machine: verify finds the plain Docker API on 2375 (and no TLS on 2376).
    cli_ok("init-ca")
    cli_ok("client-context", "lab", "--host", host.address)
    r = run_certkit("verify", "--context", "lab", "--timeout", "3")
    assert r.returncode == 1, r.stdout + r.stderr
    closed = lines(r.stdout)["plain-http-closed"]
    assert closed.startswith("FAIL")
    assert "port 2375 serves the Docker API in plain HTTP" in closed


def test_firewalld_rich_rule_gives_no_warning_and_an_open_port_does(host: LabHost) -> None:
    # firewalld needs D-Bus: both are started inside this lab host only.
    host.check("systemctl start dbus.socket dbus.service firewalld && firewall-cmd --state")
    installed_with_allow_from(host, "firewalld")

    host.check("firewall-cmd --add-port=2376/tcp")  # runtime only: what doctor reads
    exposure = lines(inside(host, "doctor")[1])["tls-port-exposure"]
    assert exposure.startswith("WARN") and f"{OPEN}: firewalld allows it from anywhere" in exposure
    data = json.loads(inside(host, "doctor", "--json")[1])
    f = finding(data, "tls-port-exposure")
    assert (f["firewall"], f["allowed_from"]) == ("firewalld", ["any"])
