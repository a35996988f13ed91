"""The firewall step of an install on real systemd lab hosts with ufw active (tests/lab.py).

ufw comes from this machine's root (the lab overlays it; .ci/run installs it),
and is only ever enabled inside lab hosts.
"""

from __future__ import annotations

import socket

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_ok, run_certkit

pytestmark = pytest.mark.lab

HOLD_2376 = (
    "systemd-run --unit=holder python3 -c 'import socket, time; s = socket.socket(); "
    's.bind(("0.0.0.0", 2376)); s.listen(); time.sleep(3600)\''
)


@pytest.fixture
def host(lab: Lab) -> LabHost:
    h = lab.host()
    # What an Ubuntu admin does: deny incoming, allow SSH, enable.
    h.check("ufw default deny incoming && ufw allow 22/tcp && ufw --force enable")
    cli_ok("init-ca")
    return h


def ufw_rules(host: LabHost) -> list[str]:
    """`ufw status` lines that mention port 2376."""
    return [ln for ln in host.check("ufw status").splitlines() if ln.startswith("2376")]


def reachable(host: LabHost) -> bool:
    try:
        with socket.create_connection((host.address, 2376), timeout=3):
            return True
    except OSError:
        return False


def test_allow_from_opens_2376_to_this_machine_only(host: LabHost) -> None:
    source = f"{host.gateway}/32"
    args = ("issue-server", host.address, *host.cli_args("root"), "--restart")
    dry = cli_ok(*args[:-1], "--dry-run", "--allow-from", source)
    assert (
        f"Firewall (ufw): would run ufw allow from {source} to any port 2376 proto tcp "
        "comment certkit" in dry
    )
    assert ufw_rules(host) == []
    out = cli_ok(*args, "--allow-from", source)
    assert "Docker restarted and listens on tcp://0.0.0.0:2376." in out
    assert "Firewall (ufw): ran ufw allow from " + source in out
    assert [ln.split() for ln in ufw_rules(host)] == [
        ["2376/tcp", "ALLOW", host.gateway, "#", "certkit"]
    ]
    cli_ok("client-context", "lab", "--host", host.address)
    assert "All 11 checks passed." in cli_ok("verify", "--context", "lab")
    assert host.ssh("root", "true").returncode == 0  # SSH still allowed

    # A re-run adds nothing: the rule is there already.
    again = cli_ok(*args, "--allow-from", source)
    assert f"Firewall (ufw): port 2376/tcp already allowed from {source}" in again
    assert "ran ufw" not in again
    assert len(ufw_rules(host)) == 1

    # Renewal keeps the rule (recorded with the certificate), adding nothing.
    cli_ok("renew", "server", host.address, *host.cli_args("root")[2:], "--restart")
    assert len(ufw_rules(host)) == 1
    assert "All 11 checks passed." in cli_ok("verify", "--context", "lab")


def test_without_allow_from_nothing_changes_and_the_output_names_ufw(host: LabHost) -> None:
    r = run_certkit("issue-server", host.address, *host.cli_args("root"), "--restart")
    assert r.returncode == 0, r.stderr
    assert (
        "port 2376/tcp is blocked by ufw on the host and certkit changed nothing there: open it "
        "to your clients with `ufw allow from CIDR to any port 2376 proto tcp`" in r.stderr
    )
    assert ufw_rules(host) == []
    assert not reachable(host)


def test_a_failed_restart_leaves_no_certkit_rule(host: LabHost) -> None:
    host.check(HOLD_2376)
    r = run_certkit(
        "issue-server", host.address, *host.cli_args("root"), "--restart",
        "--allow-from", f"{host.gateway}/32",
    )  # fmt: skip
    assert r.returncode == 1
    assert "Docker did not come back after the restart" in r.stderr
    assert "could not all be removed" not in r.stderr
    assert ufw_rules(host) == []
    assert "certkit" not in host.check("ufw status")
