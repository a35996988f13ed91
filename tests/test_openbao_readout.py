"""OpenBao's word in the ordinary commands: list, status, verify and doctor read the mount."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bao_support import ROOT_TOKEN, BaoNode, api, running_dev
from support import free_port, run_certkit
from test_openbao import init_team
from test_openbao_login import login

pytestmark = pytest.mark.bao


@pytest.fixture
def team(tmp_path: Path, certkit_home: Path) -> Iterator[BaoNode]:
    """OpenBao over TLS, the team set up, alice (pw-alice) able to log in."""
    with running_dev(tmp_path, tls=True) as node:
        init_team(node)
        api(node.addr, "POST", "auth/userpass/users/alice", ROOT_TOKEN,
            {"password": "pw-alice", "token_policies": "certkit-person"}, node.cacert)  # fmt: skip
        yield node


def admin(node: BaoNode, *args: str, code: int = 0, token: str = ROOT_TOKEN) -> Any:
    r = run_certkit(*args, "--json", env=node.env(token))
    assert r.returncode == code, r.stdout + r.stderr
    return json.loads(r.stdout)


def verify_access(node: BaoNode) -> dict[str, str]:
    """``verify --context team``'s access line, from her laptop (no admin token)."""
    person = {**node.env(token=None), "BAO_TOKEN": ""}
    r = run_certkit("verify", "--context", "team", "--insecure-port", "0", "--timeout", "1",
                    "--json", env=person)  # fmt: skip
    assert r.returncode == 1  # nothing listens there: connect FAILs, the access line remains
    (found,) = [c for c in json.loads(r.stdout)["checks"] if c["name"] == "access"]
    return found  # type: ignore[no-any-return]


@pytest.mark.slow
def test_list_status_and_verify_show_people_and_revocations_from_the_mount(
    team: BaoNode, docker_config: Path, tmp_path: Path
) -> None:
    admin(team, "issue-server", "docker1.test", "--out", str(tmp_path / "srv"))
    doc = login(team, "--host", "127.0.0.1", "--port", str(free_port()), "--context", "team")
    assert verify_access(team)["status"] == "PASS"  # her laptop: no CA, no token, not revoked
    rows = admin(team, "list")
    alice = [r for r in rows if r["name"] == "alice"]
    assert len(alice) == 1 and alice[0]["status"] == "valid" and alice[0]["kind"] == "client"
    assert alice[0]["serial"] == doc["serial"]  # the same serial as certkit's own format
    assert "OU=certkit-person" in alice[0]["subject"]
    assert any(r["kind"] == "server" and r["name"] == "docker1.test" for r in rows)
    status = admin(team, "status")
    assert status["openbao"]["default"] == {"issued": 2, "people": 1, "revoked": 0,
                                            "revoked_serials": []}  # fmt: skip
    admin(team, "team", "revoke", "--identity", "alice")
    rows = admin(team, "list", "--kind", "client")
    (alice,) = rows
    assert alice["status"] == "revoked" and alice["revoked_at"]
    status = admin(team, "status")
    assert status["openbao"]["default"]["revoked_serials"] == [doc["serial"]]
    text = run_certkit("status", env=team.env()).stdout
    assert "1 revoked (alice)" in text
    found = verify_access(team)
    assert found["status"] == "FAIL" and "revoked in OpenBao (pki-docker)" in found["message"]
    # A dead OpenBao: list still shows the inventory, and says in one line what it missed.
    dead = {**team.env(), "BAO_ADDR": f"http://127.0.0.1:{free_port()}"}
    r = run_certkit("list", "--json", env=dead)
    assert r.returncode == 0 and "OpenBao not read" in r.stderr
    assert not any(i["name"] == "alice" for i in json.loads(r.stdout))


@pytest.mark.slow
def test_doctor_checks_the_mount_profile_token_and_login_contexts(
    team: BaoNode, docker_config: Path, tmp_path: Path
) -> None:
    root = tmp_path / "sysroot"
    root.mkdir()
    login(team, "--host", "127.0.0.1", "--context", "team")

    def checks(token: str = ROOT_TOKEN) -> dict[str, list[dict[str, str]]]:
        r = run_certkit("doctor", "--root", str(root), "--json", env=team.env(token))
        out: dict[str, list[dict[str, str]]] = {}
        for c in json.loads(r.stdout)["checks"]:
            out.setdefault(c["name"], []).append(c)
        return out

    found = checks()
    assert [c["status"] for c in found["openbao"]] == ["PASS", "PASS"]  # root and default
    assert {c["status"] for c in found["openbao-profile"]} == {"PASS"}
    assert found["openbao-token"][0]["status"] == "PASS"
    assert found["login"][0]["status"] == "PASS" and "alice" in found["login"][0]["message"]
    # Someone "fixes" the person role with OpenBao's default key usage: a FAIL, by name.
    path = "pki-docker/roles/certkit-person"
    role = api(team.addr, "GET", path, ROOT_TOKEN, cacert=team.cacert)["data"]
    role["key_usage"] = ["DigitalSignature", "KeyEncipherment"]
    api(team.addr, "POST", path, ROOT_TOKEN, role, team.cacert)  # a write replaces the role
    short = api(team.addr, "POST", "auth/token/create", ROOT_TOKEN,
                {"policies": ["root"], "ttl": "10m"},
                team.cacert)["auth"]["client_token"]  # fmt: skip
    found = checks(short)
    bad = [c for c in found["openbao-profile"] if c["status"] == "FAIL"]
    assert len(bad) == 1 and "'certkit-person'" in bad[0]["message"]
    assert "KeyEncipherment" in bad[0]["message"]
    (token,) = found["openbao-token"]
    assert token["status"] == "WARN" and "ends in" in token["message"]
    api(team.addr, "POST", "auth/token/revoke-self", short, {}, team.cacert)
    assert checks(short)["openbao-token"][0]["status"] == "FAIL"
