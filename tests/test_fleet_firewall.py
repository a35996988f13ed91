"""certkit fleet with the host var ``certkit_allow_from``, on real systemd lab hosts.

h1 has ufw active (default deny, SSH allowed) and ``certkit_allow_from`` in the
inventory; h2 has no firewall and no such var.  What the fleet adds is read with
``ufw`` on the hosts themselves; reaching dockerd goes through h1's firewall.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_json, cli_ok, run_certkit
from test_fleet import docker_via_context, fleet, inventory
from test_lab import snapshot

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def ufw_2376(host: LabHost) -> list[list[str]]:
    """``ufw status`` lines about port 2376, split in words."""
    return [ln.split() for ln in host.check("ufw status").splitlines() if ln.startswith("2376")]


def test_fleet_adds_exactly_the_allow_from_rule_where_the_var_is_set(
    lab: Lab, tmp_path: Path, docker_config: Path
) -> None:
    h1, h2 = lab.boot(2)
    h1.check("ufw default deny incoming && ufw allow 22/tcp && ufw --force enable")
    cli_ok("init-ca")
    source = f"{h1.gateway}/32"  # this machine, as h1 sees it
    inv = inventory(
        tmp_path / "hosts.ini", [h1, h2], extra={"h1": f"certkit_allow_from=\"['{source}']\""}
    )
    rule = f"ufw allow from {source} to any port 2376 proto tcp comment certkit"

    # --check: the rule it would add is reported, nothing is added.
    rc, out = fleet("apply", str(inv), "--check", "--restart")
    assert rc == 0, out
    fw = out["hosts"]["h1"]["firewall"]
    assert (fw["manager"], fw["port"], fw["present"]) == ("ufw", 2376, []), out
    assert [(r["source"], r["add"]) for r in fw["add"]] == [(source, rule)]
    assert out["hosts"]["h2"]["firewall"] is None
    human = run_certkit("fleet", "apply", str(inv), "--check")
    assert f"would allow port 2376/tcp from {source} in ufw" in human.stdout, human.stdout
    assert ufw_2376(h1) == []

    # apply: exactly that rule on h1, nothing on h2; dockerd reached through the firewall.
    rc, out = fleet("apply", str(inv), "--restart", "--contexts")
    assert rc == 0, out
    assert out["changed"] == ["h1", "h2"] and sorted(out["contexts"]) == ["h1", "h2"]
    assert ufw_2376(h1) == [["2376/tcp", "ALLOW", h1.gateway, "#", "certkit"]]
    assert "(None)" in h2.check("ufw show added") and "inactive" in h2.check("ufw status")
    assert any("open to every network" in w for w in out["hosts"]["h2"]["warnings"])
    assert docker_via_context("h1") and docker_via_context("h2")
    rc, report = fleet("verify", str(inv))
    assert rc == 0, report
    assert "All 11 checks passed." in cli_ok("verify", "--context", "h1")

    # A second apply changes nothing, on the hosts or in the firewall; --check agrees.
    files = {h.name: snapshot(h) for h in (h1, h2)}
    rc, out = fleet("apply", str(inv), "--restart")
    assert rc == 0 and out["changed"] == [], out
    assert out["hosts"]["h1"]["firewall"]["present"] == [source]
    assert out["hosts"]["h1"]["firewall"]["add"] == []
    rc, out = fleet("apply", str(inv), "--check", "--restart")
    assert rc == 0 and out["changed"] == [], out
    assert {h.name: snapshot(h) for h in (h1, h2)} == files
    assert ufw_2376(h1) == [["2376/tcp", "ALLOW", h1.gateway, "#", "certkit"]]

    # A source added to the var later: one more rule, no certificate, no restart.
    more = inventory(
        tmp_path / "more.ini", [h1, h2],
        extra={"h1": f"certkit_allow_from=\"['{source}', '192.0.2.0/24']\""},
    )  # fmt: skip
    rc, out = fleet("apply", str(more), "--restart")
    assert rc == 0, out
    assert out["changed"] == ["h1"] and out["issued"] == [], out
    assert out["hosts"]["h1"]["restarted"] is False
    assert [r[2] for r in ufw_2376(h1)] == [h1.gateway, "192.0.2.0/24"]
    assert {h.name: snapshot(h) for h in (h1, h2)} == files

    # The admin's own rule for 2376, then a source dropped from the var: certkit's rule for
    # it goes (a change, no certificate, no restart), the admin's stays.
    h1.check("ufw allow from 10.9.9.9 to any port 2376 proto tcp")
    rc, out = fleet("apply", str(inv), "--restart")
    assert rc == 0, out
    assert out["changed"] == ["h1"] and out["issued"] == [], out
    assert [r["source"] for r in out["hosts"]["h1"]["firewall"]["remove"]] == ["192.0.2.0/24"]
    assert "remove certkit's ufw rule for 192.0.2.0/24" in out["hosts"]["h1"]["msg"]
    assert sorted(r[2] for r in ufw_2376(h1)) == sorted(["10.9.9.9", h1.gateway])
    assert out["hosts"]["h1"]["restarted"] is False


def rich_rules(host: LabHost) -> list[str]:
    """The active zone's (public) permanent and runtime rich rules, which must agree."""
    listed = [
        sorted(filter(None, host.check(f"firewall-cmd {p}--zone=public --list-rich-rules")
                      .splitlines()))
        for p in ("--permanent ", "")
    ]  # fmt: skip
    assert listed[0] == listed[1], listed
    return listed[0]


def rule_for(source: str) -> str:
    return f'rule family="ipv4" source address="{source}" port port="2376" protocol="tcp" accept'


def test_fleet_records_its_firewalld_rules_and_removes_only_those_of_a_dropped_source(
    lab: Lab, tmp_path: Path, docker_config: Path
) -> None:
    (h1,) = lab.boot(1)
    h1.check("systemctl start firewalld && firewall-cmd --state")
    cli_ok("init-ca")
    source, extra = f"{h1.gateway}/32", "10.1.2.3/32"

    def apply(*sources: str) -> dict[str, object]:
        var = ", ".join(f"'{s}'" for s in sources)
        inv = inventory(tmp_path / "hosts.ini", [h1], extra={"h1": f'certkit_allow_from="[{var}]"'})
        rc, out = fleet("apply", str(inv), "--restart")
        assert rc == 0, out
        return out

    apply(source)  # issues the certificate, adds the rule
    # The admin's own rich rule for 2376: firewalld rules carry no mark, certkit never
    # touches a rule it did not record adding.
    h1.check(
        f"firewall-cmd --permanent --zone=public --add-rich-rule='{rule_for('10.9.9.9/32')}' "
        "&& firewall-cmd --reload"
    )
    out = apply(source, extra)  # no certificate: the added source is recorded all the same
    assert out["changed"] == ["h1"] and out["issued"] == [], out
    assert rich_rules(h1) == sorted(map(rule_for, [source, extra, "10.9.9.9/32"]))
    where = ("--identity", str(h1.key), *h1.cli_args("root")[4:])
    shown = cli_json("firewall", "show", h1.address, *where)
    assert (shown["manager"], shown["recorded"]) == ("firewalld", [source, extra]), shown
    assert sorted(shown["rules"]) == [extra, source]

    out = apply(source)  # the source dropped from the var: only certkit's rule for it goes
    assert out["changed"] == ["h1"] and out["issued"] == [], out
    assert [r["source"] for r in out["hosts"]["h1"]["firewall"]["remove"]] == [extra]
    assert rich_rules(h1) == sorted(map(rule_for, [source, "10.9.9.9/32"]))
    shown = cli_json("firewall", "show", h1.address, *where)
    assert (shown["recorded"], shown["rules"]) == ([source], [source]), shown

    out = apply(source)  # converged: nothing to add or remove
    assert out["changed"] == [], out
    assert rich_rules(h1) == sorted(map(rule_for, [source, "10.9.9.9/32"]))
