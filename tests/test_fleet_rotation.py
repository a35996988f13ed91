"""A CA rotation across a fleet locks nobody out (issue 34), on real systemd lab hosts.

Three hosts converged by ``certkit fleet apply --contexts``, plus a docker
context ``laptop`` made before the rotation; a client polls every 0.25 s with
each context's files (read again for every request, as the docker CLI does)
while the documented rotation runs: ``rotate-ca start``, ``fleet apply``
(trust bundle only), ``renew client laptop``, ``fleet apply`` (the fleet's
contexts, then the servers), ``rotate-ca finish``, ``fleet apply``.  Also: a
firewall-blocked 2376 does not restart dockerd, a failed issue is counted, and
a ``--renew-within`` as long as a lifetime is refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_json, cli_ok, run_certkit
from test_fleet import docker_via_context, fleet, inventory
from test_lab import HOLD_2376

from certkit.fleet.admin import admin_record
from certkit.store import CAStore

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from benchlib.fleetrotation import (  # noqa: E402
    ContextPoller,
    Timeline,
    context_tls,
    documented_rotation,
)


def run_json(argv: list[str]) -> Any:
    r = run_certkit(*argv, "--json")
    assert r.returncode == 0, f"certkit {' '.join(argv)}: {r.stdout}{r.stderr}"
    return json.loads(r.stdout)


def test_renew_within_as_long_as_a_lifetime_is_refused(tmp_path: Path) -> None:
    cli_ok("init-ca")
    inv = tmp_path / "hosts.ini"
    inv.write_text("[docker_hosts]\nh1 ansible_host=127.0.0.1 ansible_port=1\n")
    r = run_certkit("fleet", "apply", str(inv), "--renew-within", "400")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        "certkit: error: --renew-within 400 is not below the 365-day lifetime of the fleet's "
        "client certificate: every run would issue a new one and rewrite every fleet context; "
        "give fewer days (121 renews it at 2/3 of its lifetime)."
    ]
    assert cli_json("list", "--kind", "client") == []  # nothing issued
    # A host whose certkit_days is within the window fails alone, before it is touched.
    inv.write_text("[docker_hosts]\nh1 ansible_host=127.0.0.1 ansible_port=1 certkit_days=20\n")
    rc, out = fleet("apply", str(inv))
    assert rc == 1 and out["failed"] == ["h1"], out
    assert "renew_within 30 days is not below the 20-day lifetime" in str(out["hosts"]["h1"]["msg"])


def _status_lines(status: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d["kind"], d["name"]) for d in status["dependents"]]


@pytest.mark.lab
@pytest.mark.slow
def test_fleet_rotation_locks_nobody_out(lab: Lab, tmp_path: Path, docker_config: Path) -> None:
    hosts = lab.boot(3)
    h1, h2, h3 = hosts
    cli_ok("init-ca")
    inv = inventory(tmp_path / "hosts.ini", hosts)
    rc, out = fleet("apply", str(inv), "--restart", "--contexts")
    assert rc == 0 and sorted(out["contexts"]) == ["h1", "h2", "h3"], out
    assert out["admin"]["issued"], out  # the fleet's client certificate is counted
    cli_ok("client-context", "laptop", "--host", h1.address)
    # Every context certkit wrote is in the inventory: the fleet's with its client cert.
    record = admin_record(CAStore())
    assert record is not None
    contexts = {str(context_tls(docker_config, n)) for n in ("h1", "h2", "h3")}
    assert contexts <= set(record.installed), record.installed

    pollers = [
        ContextPoller(n, h.address, 2376, context_tls(docker_config, n))
        for n, h in (("h1", h1), ("h2", h2), ("h3", h3), ("laptop", h1))
    ]
    key_before = (context_tls(docker_config, "h1") / "key.pem").read_bytes()
    timeline = Timeline()
    for p in pollers:
        p.start(timeline.t0)
    try:
        documented_rotation(run_json, str(inv), ["laptop"], timeline)
    finally:
        for p in pollers:
            p.stop()
    _check_documented_steps(pollers, timeline, inv, hosts, docker_config, key_before)
    _second_rotation(inv, hosts, docker_config)
    _firewall_blocked_and_failed_issue(inv, hosts, tmp_path)


def _check_documented_steps(
    pollers: list[ContextPoller],
    timeline: Timeline,
    inv: Path,
    hosts: list[LabHost],
    docker_config: Path,
    key_before: bytes,
) -> None:
    """No lockout on any context; each step did what docs/renewal.md says."""
    results = {p.name: p.to_json() for p in pollers}
    for name, r in results.items():
        assert r["sent"] > 40, results
        assert r["lockout"] == 0, json.dumps([name, r["lockouts"], timeline.steps])
    o = timeline.outputs

    # 1: every server keeps its certificate and trusts both CAs; nothing issued.
    first = o["fleet apply 1 (trust bundle)"]
    assert first["ok"] and first["issued"] == [] and first["changed"] == ["h1", "h2", "h3"]
    assert all("trust both CAs" in d["rotation"] for d in first["hosts"].values()), first
    assert first["admin"]["issued"] is None  # the servers did not trust the new CA yet
    status = o["status after fleet apply 1 (trust bundle)"]
    assert sorted(_status_lines(status)) == sorted(
        [("server", h.address) for h in hosts] + [("client", "certkit-fleet"), ("client", "laptop")]
    )
    assert all(d["trusts_new"] for d in status["dependents"] if d["kind"] == "server")
    fleet_step = f"certkit fleet apply {inv} --restart"
    assert f"     {fleet_step}" in status["steps"], status["steps"]
    assert "     certkit renew client laptop" in status["steps"]

    # 2: laptop renewed first: the fleet's client and contexts, then the servers.
    second = o["fleet apply 2 (fleet contexts, servers)"]
    assert second["ok"] and second["issued"] == ["h1", "h2", "h3"], second
    assert second["admin"]["issued"] and len(second["admin"]["contexts_rewritten"]) == 3
    # Renewed with its key: a context is never read with a certificate and another key.
    assert (context_tls(docker_config, "h1") / "key.pem").read_bytes() == key_before
    status = o["status after fleet apply 2 (fleet contexts, servers)"]
    assert status["dependents"] == [], status
    assert o["rotate-ca finish"]["state"] == "finished"

    # After finish, the fleet's contexts and servers are listed until fleet apply drops the
    # old CA (the command finish gives fixes them); laptop's ca.pem is listed on its own.
    finished = o["status after rotate-ca finish"]
    listed = {(d["kind"], d["name"]): d["command"] for d in finished["reinstall"]}
    assert listed[("client", "certkit-fleet")] == fleet_step
    assert listed[("server", hosts[0].address)] == fleet_step
    last = o["fleet apply 3 (old CA dropped)"]
    assert last["ok"] and last["issued"] == [], last
    after = o["status after fleet apply 3 (old CA dropped)"]
    assert [(d["kind"], d["name"]) for d in after["reinstall"]] == [("client", "laptop")]
    for name in ("h1", "h2", "h3", "laptop"):
        assert docker_via_context(name)


def _second_rotation(inv: Path, hosts: list[LabHost], docker_config: Path) -> None:
    """Laptop not renewed: servers keep their certificates; a context left behind is fixed."""
    fleet_step = f"certkit fleet apply {inv} --restart"
    # Rotation 2, laptop not renewed: the servers keep their certificates and say why.
    tls3 = context_tls(docker_config, "h3")
    old = {f: (tls3 / f).read_bytes() for f in ("ca.pem", "cert.pem", "key.pem")}
    run_json(["rotate-ca", "start"])
    rc, out = fleet("apply", str(inv), "--restart")  # step 1 again
    assert rc == 0 and out["admin"]["issued"] is None, out
    human = run_certkit("fleet", "apply", str(inv), "--restart")
    assert human.returncode == 0, human.stdout + human.stderr
    assert "  ok       h1: kept (CA rotation)" in human.stdout
    assert "0 certificates issued" in human.stdout
    assert "while client laptop trusts only the old CA" in human.stdout
    assert "renew first: certkit renew client laptop" in human.stdout
    assert "Fleet client certificate " in human.stdout  # renewed: the servers trust both CAs
    # A fleet context left behind (its files of the old CA put back) is counted, and the
    # command the status gives fixes it.
    for f, data in old.items():
        (tls3 / f).write_bytes(data)
    status = run_json(["rotate-ca", "status"])
    fleet_dep = [d for d in status["dependents"] if d["name"] == "certkit-fleet"]
    assert len(fleet_dep) == 1 and fleet_dep[0]["installed"] == [str(tls3)], status
    assert "docker context(s) still hold" in fleet_dep[0]["why"]
    assert fleet_dep[0]["command"] == fleet_step
    rc, out = fleet("apply", str(inv), "--restart")
    assert rc == 0 and out["admin"]["contexts_rewritten"] == [str(tls3)], out
    assert out["admin"]["issued"] is None
    status = run_json(["rotate-ca", "status"])
    assert ("client", "certkit-fleet") not in _status_lines(status), status
    assert docker_via_context("h3")


def _firewall_blocked_and_failed_issue(inv: Path, hosts: list[LabHost], tmp_path: Path) -> None:
    _, h2, h3 = hosts
    # A firewall-blocked 2376 on a converged host: no restart, the message says what to check.
    started = h2.check("systemctl show -p ExecMainStartTimestamp --value docker")
    h2.check("ufw default deny incoming && ufw allow 22/tcp && ufw --force enable")
    rc, out = fleet("apply", str(inv), "--restart", "--limit", "h2")
    assert rc == 1 and out["failed"] == ["h2"], out
    msg = str(out["hosts"]["h2"]["msg"])
    assert "listens on port 2376" in msg and "check the firewall" in msg, msg
    assert "dockerd was not restarted" in msg and not out["hosts"]["h2"]["restarted"]
    assert h2.check("systemctl show -p ExecMainStartTimestamp --value docker") == started
    h2.check("ufw --force disable")

    # A failed issue is counted, and recorded as never installed.
    h3.check("systemctl stop docker.socket docker.service && " + HOLD_2376)
    inv_sans = inventory(tmp_path / "sans.ini", hosts, extra={"h3": "certkit_sans=\"['h3.lab']\""})
    rc, out = fleet("apply", str(inv_sans), "--restart", "--limit", "h3")
    assert rc == 1 and out["failed"] == ["h3"] and out["issued"] == ["h3"], out
    serial = out["hosts"]["h3"]["issued"]
    assert f"certificate {serial} was issued and recorded as not installed" in str(
        out["hosts"]["h3"]["msg"]
    )
    listed_h3 = [c for c in cli_json("list", "--kind", "server") if c["serial"] == serial]
    assert not listed_h3 or listed_h3[0]["status"] != "valid", listed_h3
