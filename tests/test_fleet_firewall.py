"""certkit fleet with the host var ``certkit_allow_from``, on real systemd lab hosts.

h1 has ufw active (default deny, SSH allowed) and ``certkit_allow_from`` in the
inventory; h2 has no firewall and no such var.  What the fleet adds is read with
``ufw`` on the hosts themselves; reaching dockerd goes through h1's firewall.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_ok, run_certkit
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
