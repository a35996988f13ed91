"""`certkit revoke NAME` for a CA bound to OpenBao (issue 28): the inventory, the policy the
plugin enforces, and OpenBao's CRL all say revoked, on a real `bao server -dev`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bao_support import ROOT_TOKEN, BaoNode, api, running_dev
from cryptography import x509
from support import run_certkit
from test_openbao import init_team

pytestmark = pytest.mark.bao


@pytest.fixture
def bao_dev(tmp_path: Path) -> Iterator[BaoNode]:
    with running_dev(tmp_path) as node:
        yield node


def _certkit(node: BaoNode, *args: str, rc: int = 0) -> Any:
    r = run_certkit(*args, "--json", env=node.env(ROOT_TOKEN))
    assert r.returncode == rc, r.stdout + r.stderr
    return json.loads(r.stdout) if rc == 0 else r.stderr


def _crl_serials(node: BaoNode) -> set[str]:
    crl = api(node.addr, "GET", "pki-docker/cert/crl", token=ROOT_TOKEN)["data"]["certificate"]
    return {f"{c.serial_number:x}" for c in x509.load_pem_x509_crl(crl.encode())}


def _bare(serial: str) -> str:
    return serial.replace(":", "").lstrip("0")


@pytest.mark.slow
def test_revoke_on_an_openbao_ca_revokes_in_openbao_and_in_the_policy(
    bao_dev: BaoNode, tmp_path: Path
) -> None:
    init_team(bao_dev)
    for name, n in (("alice", 1), ("alice", 2), ("bob", 1)):
        _certkit(bao_dev, "issue-client", name, "--out", str(tmp_path / f"{name}{n}"))

    done = _certkit(bao_dev, "revoke", "alice", "--reason", "keyCompromise")
    assert done["kind"] == "client" and done["revoked_at"]
    assert done["openbao"]["identity"] == "alice"
    revoked = {_bare(s) for s in done["openbao"]["revoked"]}
    assert len(revoked) == 2  # both of her certificates, the one recorded last included
    assert _bare(done["serial"]) in revoked
    crl = _crl_serials(bao_dev)
    assert revoked <= crl
    # bob's certificate is on no list.
    policy = _certkit(bao_dev, "policy", "show")["policy"]
    # Her earlier certificate is marked revoked in the inventory too: the plugin denies both.
    assert len(done["openbao"]["also_recorded"]) == 1
    assert sorted(_bare(r["serial"]) for r in policy["revoked"]) == sorted(revoked)
    assert {r["identity"] for r in policy["revoked"]} == {"alice"}
    assert "bob" in policy["identities"] and "alice" not in policy["identities"]
    assert not any(s not in revoked for s in crl)

    # Again: nothing more to revoke in OpenBao, the first time and reason are kept.
    again = _certkit(bao_dev, "revoke", "alice")
    assert again["already_revoked"] is True and again["openbao"]["revoked"] == []
    # A name neither knows: one sentence, exit 2.
    err = _certkit(bao_dev, "revoke", "carol", rc=2)
    assert "Neither CA 'default'" in err and len(err.strip().splitlines()) == 1
