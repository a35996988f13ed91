"""`fleet apply` converges the authorization policy on fleet hosts that run certkit's plugin
(issue 28): real Ansible, two real systemd lab hosts, one with the plugin, one without."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lab import Lab, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_json, cli_ok, strict_context, tls_get
from test_fleet import fleet, inventory

pytestmark = pytest.mark.lab

POLICY = "/etc/docker/certkit/authz.json"


@pytest.mark.slow
def test_fleet_apply_pushes_the_policy_where_the_plugin_runs(lab: Lab, tmp_path: Path) -> None:
    h1, h2 = lab.boot(2)
    cli_ok("init-ca")
    inv = inventory(tmp_path / "hosts.ini", [h1, h2])
    rc, out = fleet("apply", str(inv), "--restart")
    assert rc == 0, out
    cli_ok("policy", "push", "h1", *h1.cli_args("root"))  # the plugin on h1 only
    tls = tmp_path / "alice"
    cli_ok("client-context", "alice", "--client-only", "--out", str(tls))
    ctx = strict_context(tls / "ca.pem", tls / "cert.pem", tls / "key.pem")
    assert tls_get(h1.address, 2376, "/_ping", ctx)[0] == 200

    # Revoked without pushing: h1's policy is behind until the next fleet apply.
    cli_ok("revoke", "alice", "--no-push")
    assert tls_get(h1.address, 2376, "/_ping", ctx)[0] == 200
    digest = cli_json("policy", "show")["policy"]["digest"]
    rc, out = fleet("apply", str(inv), "--check")
    assert rc == 0, out["hosts"]
    hosts = out["hosts"]
    assert isinstance(hosts, dict)
    assert hosts["h1"]["policy"]["behind"] is True and "policy" not in hosts["h2"]
    assert json.loads(h1.path(POLICY).read_text())["digest"] != digest  # --check wrote nothing

    rc, out = fleet("apply", str(inv))
    assert rc == 0, out
    hosts = out["hosts"]
    assert isinstance(hosts, dict)
    assert hosts["h1"]["policy"]["written"] == [POLICY], hosts["h1"]
    assert out["changed"] == ["h1"]
    assert "policy" not in hosts["h2"] and not h2.path(POLICY).exists()
    assert json.loads(h1.path(POLICY).read_text())["digest"] == digest
    status, body = tls_get(h1.address, 2376, "/_ping", ctx)
    assert status == 403 and b"certificate revoked on" in body, (status, body)
    assert tls_get(h2.address, 2376, "/_ping", ctx)[0] == 200  # no plugin there
    assert cli_json("policy", "show")["hosts"]["h1"]["behind"] is False
