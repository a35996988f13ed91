"""OpenBao through certkit's ordinary commands: a PKI-mount CA and a transit CA key.

The seams at work: an OpenBao-bound CA issues through ``ca.issue_many`` (so
``issue-server``, ``issue-client``, ``client-context`` need no change), and a
transit key is one more key backend (``certkit.keys``) that ``init-ca``,
issuance and ``rotate-ca`` reach by its URI scheme alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from bao_support import ROOT_TOKEN, BaoNode, api, running_dev
from support import run_certkit
from test_openbao import init_team, openssl_verify

pytestmark = pytest.mark.bao


@pytest.fixture
def bao_dev(tmp_path: Path) -> Iterator[BaoNode]:
    with running_dev(tmp_path) as node:
        yield node


def ok(node: BaoNode, *args: str) -> dict:  # type: ignore[type-arg]
    r = run_certkit(*args, "--json", env=node.env(ROOT_TOKEN))
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_the_ordinary_commands_issue_through_an_openbao_ca(
    bao_dev: BaoNode, tmp_path: Path
) -> None:
    init_team(bao_dev)
    ok(bao_dev, "issue-server", "docker1.test", "--out", str(tmp_path / "srv"))
    openssl_verify(tmp_path / "srv" / "ca.pem", tmp_path / "srv" / "server-cert.pem", "sslserver")
    ok(bao_dev, "issue-client", "--count", "3", "--prefix", "ci", "--out", str(tmp_path / "cl"))
    made = sorted(p.name for p in (tmp_path / "cl").iterdir())
    assert len(made) == 3
    for name in made:
        openssl_verify(tmp_path / "cl" / name / "ca.pem", tmp_path / "cl" / name / "cert.pem",
                       "sslclient")  # fmt: skip
    listed = ok(bao_dev, "list")
    assert {i["kind"] for i in listed} >= {"server", "client"}


def test_a_transit_key_is_a_key_backend_for_init_issue_and_rotation(
    bao_dev: BaoNode, tmp_path: Path, certkit_home: Path
) -> None:
    api(bao_dev.addr, "POST", "sys/mounts/transit", ROOT_TOKEN, {"type": "transit"})
    uri = "openbao-transit://transit/certkit-ca"
    ok(bao_dev, "init-ca", "--key-uri", uri)
    shown = ok(bao_dev, "ca", "show")
    assert uri in json.dumps(shown)
    ok(bao_dev, "issue-server", "docker1.test", "--out", str(tmp_path / "srv"))
    openssl_verify(tmp_path / "srv" / "ca.pem", tmp_path / "srv" / "server-cert.pem", "sslserver")
    ok(bao_dev, "issue-client", "--count", "2", "--prefix", "ci", "--out", str(tmp_path / "cl"))
    ok(bao_dev, "rotate-ca", "start")
    keys = api(bao_dev.addr, "LIST", "transit/keys", ROOT_TOKEN)["data"]["keys"]
    assert len(keys) == 2  # the next key was made beside the old one, in transit
    for key in keys:
        data = api(bao_dev.addr, "GET", f"transit/keys/{key}", ROOT_TOKEN)["data"]
        assert data["exportable"] is False
    assert not list(certkit_home.glob("**/ca-key.pem"))  # no key material on this machine
