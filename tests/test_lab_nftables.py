"""The firewall step on a real systemd lab host whose firewall is plain nftables (tests/lab.py).

The ``nft`` binary comes from this machine's root through the overlay (.ci/run
installs Debian's nftables, whose nftables.service ships disabled): the ruleset
is loaded inside the lab host only, where it filters the host's own network
namespace.  It is what a hardened /etc/nftables.conf holds: an ``inet filter``
input base chain with ``policy drop`` that accepts established traffic,
loopback and SSH.  certkit never writes nftables rules: it detects nftables
and prints the exact ``nft`` command, which the test then runs.
"""

from __future__ import annotations

import json
import re

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_ok, run_certkit
from test_lab_firewall import reachable

pytestmark = pytest.mark.lab

RULESET = """\
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif "lo" accept
        tcp dport 22 accept
    }
}
"""


@pytest.fixture
def host(lab: Lab) -> LabHost:
    h = lab.host()
    # No "flush ruleset": dockerd's own (iptables-nft) tables in the host stay as they are.
    h.path("/etc/nftables.conf").write_text(RULESET)
    h.check("nft -f /etc/nftables.conf")
    assert h.check("ufw status").strip() == "Status: inactive"
    assert h.sh("systemctl is-active firewalld").stdout.strip() != "active"
    cli_ok("init-ca")
    return h


def filter_table(host: LabHost) -> str:
    return host.check("nft list table inet filter")


def exposure_line(host: LabHost) -> tuple[str, dict[str, object]]:
    """doctor run inside the host: its tls-port-exposure line and JSON finding."""
    out = host.certkit("doctor")
    assert "Traceback" not in out.stderr, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if " tls-port-exposure " in f" {ln} ")
    data = json.loads(host.certkit("doctor", "--json").stdout)
    return line, next(f for f in data["exposure"] if f["name"] == "tls-port-exposure")


def test_nftables_is_detected_nothing_changes_and_the_printed_command_opens_the_port(
    host: LabHost,
) -> None:
    before = filter_table(host)
    assert "policy drop" in before
    source = f"{host.gateway}/32"
    args = ("issue-server", host.address, *host.cli_args("root"), "--restart")

    # With --allow-from: refused before anything is written, with the exact command.
    daemon_json = host.path("/etc/docker/daemon.json")
    had_json = daemon_json.read_text() if daemon_json.exists() else None
    r = run_certkit(*args, "--allow-from", source)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "port 2376/tcp is blocked by nftables on the host" in r.stderr
    exact = f"nft insert rule inet filter input tcp dport 2376 ip saddr {source} accept"
    assert f"run `{exact}` there" in r.stderr, r.stderr
    assert filter_table(host) == before
    assert (daemon_json.read_text() if daemon_json.exists() else None) == had_json

    # Without: installed, nothing changed on the firewall, the warning names nftables.
    r = run_certkit(*args)
    assert r.returncode == 0, r.stderr
    assert (
        "port 2376/tcp is blocked by nftables on the host and certkit changed nothing there: "
        "open it to your clients with "
        "`nft insert rule inet filter input tcp dport 2376 ip saddr CIDR accept`"
    ) in r.stderr
    assert filter_table(host) == before
    assert not reachable(host)
    cli_ok("client-context", "lab", "--host", host.address)
    blocked = run_certkit("verify", "--context", "lab", "--timeout", "3")
    assert blocked.returncode == 1

    # doctor on the host: blocked for everyone by nftables (its parser reads the real
    # `nft list ruleset`).
    line, f = exposure_line(host)
    assert line.startswith("WARN") and "port 2376/tcp is blocked by nftables" in line, line
    assert (f["firewall"], f["allowed_from"]) == ("nftables", [])

    # The admin runs the printed command: verify from here passes through the firewall.
    printed = re.search(r"run `([^`]+)` there", run_certkit(*args, "--allow-from", source).stderr)
    assert printed is not None and printed.group(1) == exact
    host.check(printed.group(1))
    assert reachable(host)
    assert "All 11 checks passed." in cli_ok("verify", "--context", "lab")
    assert host.ssh("root", "true").returncode == 0  # SSH still allowed

    line, f = exposure_line(host)
    assert line.startswith("PASS"), line
    assert f"port 2376/tcp is reachable only from {source} (nftables)" in line
    assert (f["status"], f["firewall"], f["allowed_from"]) == ("PASS", "nftables", [source])

    # A rule from anywhere: doctor warns that the port is open to every network.
    host.check("nft insert rule inet filter input tcp dport 2376 accept")
    line, f = exposure_line(host)
    assert line.startswith("WARN") and "nftables allows it from anywhere" in line, line
    assert f["allowed_from"] == ["any"]
