"""``rotate-ca`` on a CA bound to an OpenBao mount: a new root issuer, the same overlap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bao_support import ROOT_TOKEN, BaoNode, api, running_dev
from cryptography import x509
from support import run_certkit
from test_openbao import certkit, openssl_verify
from test_openbao_login import login, person_env

pytestmark = pytest.mark.bao


@pytest.fixture
def team(tmp_path: Path, certkit_home: Path) -> Iterator[BaoNode]:
    """OpenBao over TLS; CA default = a root issuer in pki-docker; alice can log in."""
    with running_dev(tmp_path, tls=True) as node:
        certkit(node, "init-ca", "--issuer", "openbao", "--mount", "pki-docker", "--create")
        api(node.addr, "POST", "auth/userpass/users/alice", ROOT_TOKEN,
            {"password": "pw-alice", "token_policies": "certkit-person"}, node.cacert)  # fmt: skip
        yield node


def bao(node: BaoNode, path: str, method: str = "GET") -> Any:
    return api(node.addr, method, path, ROOT_TOKEN, cacert=node.cacert)["data"]


@pytest.mark.slow
def test_rotation_makes_a_new_issuer_trusts_both_then_switches_the_default(
    team: BaoNode, certkit_home: Path, docker_config: Path, tmp_path: Path
) -> None:
    old_id = bao(team, "pki-docker/config/issuers")["default"]
    certkit(team, "issue-server", "docker1.test", "--out", str(tmp_path / "srv1"))
    first = login(team, "--host", "127.0.0.1", "--context", "team")
    started = certkit(team, "rotate-ca", "start")
    assert started["state"] == "started"
    assert [d["name"] for d in started["dependents"]] == ["docker1.test"]
    issuers = api(team.addr, "LIST", "pki-docker/issuers", ROOT_TOKEN, cacert=team.cacert)
    new_id = next(i for i in issuers["data"]["keys"] if i != old_id)
    assert len(issuers["data"]["keys"]) == 2
    assert bao(team, "pki-docker/config/issuers")["default"] == old_id  # switched at finish
    assert bao(team, "pki-docker/roles/certkit-server")["issuer_ref"] == new_id
    ca_dir = certkit_home / "cas" / "default"
    bundle = x509.load_pem_x509_certificates((ca_dir / "bundle.pem").read_bytes())
    assert [c.subject for c in bundle][1] == x509.load_pem_x509_certificate(
        (ca_dir / "previous" / "ca.pem").read_bytes()
    ).subject
    # From now on the new root signs; what is written trusts both roots.
    certkit(team, "issue-server", "docker2.test", "--out", str(tmp_path / "srv2"))
    srv2 = x509.load_pem_x509_certificate((tmp_path / "srv2" / "server-cert.pem").read_bytes())
    assert srv2.issuer == bundle[0].subject
    openssl_verify(tmp_path / "srv2" / "ca.pem", tmp_path / "srv2" / "server-cert.pem",
                   "sslserver")  # fmt: skip
    # alice renews with her old-root certificate (the cert login trusts both roots).
    r = run_certkit("team", "renew", "--force", "--json", env=person_env(team, None))
    assert r.returncode == 0, r.stdout + r.stderr
    (renewed,) = json.loads(r.stdout)
    leaf = x509.load_pem_x509_certificate(Path(renewed["files"]["cert.pem"]).read_bytes())
    assert leaf.issuer == bundle[0].subject and renewed["serial"] != first["serial"]
    roots = x509.load_pem_x509_certificates(Path(renewed["files"]["ca.pem"]).read_bytes())
    assert {c.subject for c in roots} == {c.subject for c in bundle}  # both, mid-rotation
    # finish: refused while docker1 depends on the old root; --force cuts it off.
    r = run_certkit("rotate-ca", "finish", env=team.env())
    assert r.returncode == 1 and "docker1.test" in r.stderr
    assert bao(team, "pki-docker/config/issuers")["default"] == old_id  # nothing changed
    certkit(team, "rotate-ca", "finish", "--force")
    assert bao(team, "pki-docker/config/issuers")["default"] == new_id
    assert bao(team, "pki-docker/roles/certkit-person")["issuer_ref"] == "default"
    trust = bao(team, "auth/cert/certs/certkit-person")["certificate"]
    assert [c.subject for c in x509.load_pem_x509_certificates(trust.encode())] == [
        bundle[0].subject
    ]
    assert not (ca_dir / "bundle.pem").exists()
    api(team.addr, "GET", f"pki-docker/issuer/{old_id}", ROOT_TOKEN, cacert=team.cacert)
    r = run_certkit("team", "renew", "--force", "--json", env=person_env(team, None))
    assert r.returncode == 0, r.stdout + r.stderr  # her new-root certificate still logs in
    # An intermediate issuer (a CA under the new root) is refused in one sentence, nothing made.
    certkit(team, "init-ca", "--ca", "inter", "--issuer", "openbao", "--mount", "pki-inter",
            "--create", "--parent-mount", "pki-docker")  # fmt: skip
    listed = ("LIST", "pki-inter/issuers", ROOT_TOKEN)
    before = api(team.addr, *listed, cacert=team.cacert)["data"]["keys"]
    r = run_certkit("rotate-ca", "start", "--ca", "inter", env=team.env())
    assert r.returncode == 2 and "intermediate" in r.stderr and r.stderr.count("\n") == 1
    assert api(team.addr, *listed, cacert=team.cacert)["data"]["keys"] == before
    # The second CA added its mount to certkit's policies: alice still renews on the first.
    r = run_certkit("team", "renew", "--force", "--json", env=person_env(team, None))
    assert r.returncode == 0, r.stdout + r.stderr
