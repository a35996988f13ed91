"""The firewall step of an install on real systemd lab hosts with ufw or firewalld active
(tests/lab.py).

ufw and firewalld come from this machine's root (the lab overlays it; .ci/run
installs them and leaves firewalld disabled here): they are only ever enabled
or started inside lab hosts, where they filter the host's own network
namespace (firewalld with its nftables backend).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_json, cli_ok, run_certkit

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


def renew_args(host: LabHost) -> tuple[str, ...]:
    """``renew server`` for the host, reached over SSH the way it was installed."""
    return ("renew", "server", host.address, *host.cli_args("root")[2:])


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


def test_renew_replaces_the_sources_and_removes_only_certkits_dropped_rules(
    host: LabHost,
) -> None:
    mine, other = f"{host.gateway}/32", "10.1.2.3/32"
    host.check("ufw allow from 10.9.9.9 to any port 2376 proto tcp")  # the admin's rule
    cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart", "--allow-from", mine)
    cli_ok("client-context", "lab", "--host", host.address)

    dry = cli_ok(*renew_args(host), "--allow-from", other, "--dry-run")
    assert f"Firewall (ufw): would run ufw allow from {other} to any port 2376 proto tcp " in dry
    assert f"Firewall (ufw): would run ufw delete allow from {mine} to any port 2376" in dry
    assert len(ufw_rules(host)) == 2

    out = cli_ok(*renew_args(host), "--allow-from", other, "--restart")
    assert f"Firewall (ufw): ran ufw delete allow from {mine} to any port 2376 proto tcp" in out
    assert sorted(ln.split() for ln in ufw_rules(host)) == [
        ["2376/tcp", "ALLOW", "10.1.2.3", "#", "certkit"],
        ["2376/tcp", "ALLOW", "10.9.9.9"],
    ]
    assert not reachable(host)

    # Renewing again keeps the recorded source and changes nothing on the firewall.
    again = cli_json(*renew_args(host), "--restart")
    assert again["firewall"]["add"] == again["firewall"]["remove"] == []
    assert again["firewall"]["present"] == [other]
    assert len(ufw_rules(host)) == 2

    back = cli_ok(*renew_args(host), "--allow-from", mine, "--restart")
    assert f"ran ufw delete allow from {other}" in back
    assert sorted(ln.split()[2] for ln in ufw_rules(host)) == [host.gateway, "10.9.9.9"]
    assert "All 11 checks passed." in cli_ok("verify", "--context", "lab")

    # certkit firewall show / remove: certkit's rule only, never the admin's.
    where = ("--identity", str(host.key), *host.cli_args("root")[4:])
    shown = cli_json("firewall", "show", host.address, *where)
    assert (shown["manager"], shown["rules"], shown["recorded"]) == ("ufw", [mine], [mine])
    cli_ok("firewall", "remove", host.address, *where, "--dry-run")
    assert len(ufw_rules(host)) == 2
    removed = cli_ok("firewall", "remove", host.address, *where)
    assert f"ran ufw delete allow from {mine} to any port 2376 proto tcp" in removed
    assert [ln.split() for ln in ufw_rules(host)] == [["2376/tcp", "ALLOW", "10.9.9.9"]]
    # The record asks for no source now: renewal adds nothing back.
    assert cli_json(*renew_args(host), "--restart")["firewall"] is None
    assert len(ufw_rules(host)) == 1


# ---------------------------------------------------------------- firewalld


@pytest.fixture
def fwd_host(lab: Lab) -> LabHost:
    h = lab.host()
    # Debian's firewalld: default zone public (ssh and dhcpv6-client allowed, the rest
    # rejected), nftables backend, no zone bound to the interface.
    h.check("systemctl start firewalld && firewall-cmd --state")
    assert h.check("ufw status").strip() == "Status: inactive"
    cli_ok("init-ca")
    return h


def rich_rules(host: LabHost, zone: str, permanent: bool = True) -> list[str]:
    flag = "--permanent " if permanent else ""
    listed = host.check(f"firewall-cmd {flag}--zone={zone} --list-rich-rules")
    return [line for line in listed.splitlines() if line]


def rule_for(source: str) -> str:
    return f'rule family="ipv4" source address="{source}" port port="2376" protocol="tcp" accept'


def test_firewalld_allow_from_opens_2376_in_the_zone_and_survives_a_reload(
    fwd_host: LabHost,
) -> None:
    host, source = fwd_host, f"{fwd_host.gateway}/32"
    args = ("issue-server", host.address, *host.cli_args("root"), "--restart")
    dry = cli_ok(*args[:-1], "--dry-run", "--allow-from", source)
    assert "Firewall (firewalld): would run firewall-cmd --permanent --zone=public " in dry
    assert rich_rules(host, "public") == []

    out = cli_ok(*args, "--allow-from", source)
    assert "Docker restarted and listens on tcp://0.0.0.0:2376." in out
    assert "--reload" not in out
    assert rich_rules(host, "public") == [rule_for(source)]
    cli_ok("client-context", "lab", "--host", host.address)
    assert "All 11 checks passed." in cli_ok("verify", "--context", "lab")

    host.check("firewall-cmd --reload")  # permanent: still there after a reload
    assert rich_rules(host, "public", permanent=False) == [rule_for(source)]
    assert "All 11 checks passed." in cli_ok("verify", "--context", "lab")
    assert host.ssh("root", "true").returncode == 0  # SSH still allowed

    again = cli_json(*args, "--allow-from", source)
    assert again["install"]["firewall"]["add"] == []
    assert again["install"]["firewall"]["present"] == [source]

    # A renewal with another source: certkit's rule goes, the admin's stays.
    host.check(
        f"firewall-cmd --permanent --zone=public --add-rich-rule='{rule_for('10.9.9.9/32')}'"
    )
    cli_ok(*renew_args(host), "--allow-from", "10.1.2.3", "--restart")
    assert sorted(rich_rules(host, "public")) == [rule_for("10.1.2.3/32"), rule_for("10.9.9.9/32")]
    assert not reachable(host)

    where = ("--identity", str(host.key), *host.cli_args("root")[4:])
    shown = cli_json("firewall", "show", host.address, *where)
    assert (shown["manager"], shown["zone"], shown["rules"]) == (
        "firewalld",
        "public",
        ["10.1.2.3/32"],
    )
    # issue-server again for the same host knows the rule certkit added (from the record).
    cli_ok(*args, "--allow-from", "10.1.2.4")
    assert sorted(rich_rules(host, "public")) == [rule_for("10.1.2.4/32"), rule_for("10.9.9.9/32")]
    cli_ok("firewall", "remove", host.address, *where)
    assert rich_rules(host, "public") == [rule_for("10.9.9.9/32")]
    # The admin added that one permanently only: certkit never reloads, so it is not running.
    assert rich_rules(host, "public", permanent=False) == []


def test_firewalld_uses_the_zone_the_interface_is_bound_to(fwd_host: LabHost) -> None:
    host = fwd_host
    iface = host.check("ip -o route show default").split(" dev ")[1].split()[0]
    host.check(
        f"firewall-cmd --permanent --zone=work --change-interface={iface} && firewall-cmd --reload"
    )
    assert host.check("firewall-cmd --get-default-zone").strip() == "public"

    # Without --allow-from: nothing added, and the fix names firewalld and the active zone.
    r = run_certkit("issue-server", host.address, *host.cli_args("root"), "--restart")
    assert r.returncode == 0, r.stderr
    assert "port 2376/tcp is blocked by firewalld on the host and certkit changed nothing" in (
        r.stderr
    )
    assert "`firewall-cmd --zone=work --add-rich-rule=" in r.stderr
    assert "&& firewall-cmd --permanent --zone=work --add-rich-rule=" in r.stderr
    assert rich_rules(host, "work") == rich_rules(host, "public") == []
    assert not reachable(host)

    source = f"{host.gateway}/32"
    cli_ok(
        "issue-server", host.address, *host.cli_args("root"), "--restart", "--allow-from", source
    )
    assert rich_rules(host, "work") == [rule_for(source)]
    assert rich_rules(host, "public") == []
    assert reachable(host)
    assert host.ssh("root", "true").returncode == 0


@pytest.mark.parametrize("fixture", ["host", "fwd_host"])
def test_a_failed_restart_leaves_no_certkit_rule(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    host: LabHost = request.getfixturevalue(fixture)  # ufw, then firewalld
    host.check(HOLD_2376)
    r = run_certkit(
        "issue-server", host.address, *host.cli_args("root"), "--restart",
        "--allow-from", f"{host.gateway}/32",
    )  # fmt: skip
    assert r.returncode == 1
    assert "Docker did not come back after the restart" in r.stderr
    assert "could not all be removed" not in r.stderr
    if fixture == "host":
        assert ufw_rules(host) == []
        assert "certkit" not in host.check("ufw status")
    else:
        assert rich_rules(host, "public") == []
        assert rich_rules(host, "public", permanent=False) == []


def test_firewalld_never_reloads_a_runtime_only_ssh_port_survives_the_install(
    fwd_host: LabHost, tmp_path: Path
) -> None:
    """Issue 27 item 2: sshd on 2222, opened in firewalld at runtime only (as an admin tries
    a port out before making it permanent).  ``firewall-cmd --reload`` threw that rule away
    in the middle of the install: SSH was cut and the rollback could not reach the host.
    certkit adds its rule at runtime and permanently and never reloads."""
    host = fwd_host
    # dockerd itself reloads firewalld once, when it first creates its `docker` zone (a host
    # where docker ran under firewalld before has it): restart it once to be that host.
    host.check("systemctl restart docker")
    host.check(
        "printf 'Port 22\\nPort 2222\\n' > /etc/ssh/sshd_config.d/certkit-2222.conf && "
        "systemctl restart ssh && firewall-cmd --zone=public --add-port=2222/tcp"
    )
    known = tmp_path / "known_hosts"
    line = host.known_hosts.read_text().splitlines()[0].split(None, 1)[1]
    known.write_text(f"[{host.address}]:2222 {line}\n")
    via_2222 = [
        "--ssh", f"root@{host.address}", "--identity", str(host.key),
        "--ssh-option", f"UserKnownHostsFile={known}", "--ssh-option", "Port=2222",
        "--ssh-option", "GlobalKnownHostsFile=/dev/null", "--ssh-option", "IdentitiesOnly=yes",
    ]  # fmt: skip
    source = f"{host.gateway}/32"
    out = cli_ok("issue-server", host.address, *via_2222, "--restart", "--allow-from", source)
    assert "Docker restarted and listens on tcp://0.0.0.0:2376." in out
    assert "--reload" not in out
    assert "Firewall (firewalld): ran firewall-cmd --zone=public '--add-rich-rule=" in out
    # The runtime-only port is still open, and certkit's rule is in both configurations.
    assert "2222/tcp" in host.check("firewall-cmd --zone=public --list-ports").split()
    assert "2222/tcp" not in host.check("firewall-cmd --permanent --zone=public --list-ports")
    assert rich_rules(host, "public") == rich_rules(host, "public", False) == [rule_for(source)]
    assert reachable(host)
    # Removing it goes through SSH on 2222 again and leaves the runtime port alone.
    where = ("--identity", str(host.key), *via_2222[4:])
    cli_ok("firewall", "remove", host.address, "--ssh", f"root@{host.address}", *where)
    assert rich_rules(host, "public") == rich_rules(host, "public", False) == []
    assert "2222/tcp" in host.check("firewall-cmd --zone=public --list-ports").split()
