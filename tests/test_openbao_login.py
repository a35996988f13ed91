"""``certkit login`` on a real OpenBao over TLS: identity binding, renewal, revocation, dockerd."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bao_support import ROOT_TOKEN, BaoNode, api, running_dev
from cryptography import x509
from support import run_certkit, tlsverify_settings, write_tcp_daemon_json
from test_openbao import init_team, openssl_verify, pkilint_clean

from certkit.openbao.issue import make_csr

pytestmark = pytest.mark.bao


@pytest.fixture
def team(tmp_path: Path, certkit_home: Path) -> Iterator[BaoNode]:
    """OpenBao over TLS with the team set up and a person, alice (password pw-alice)."""
    with running_dev(tmp_path, tls=True) as node:
        init_team(node)
        api(node.addr, "POST", "auth/userpass/users/alice", ROOT_TOKEN,
            {"password": "pw-alice", "token_policies": "certkit-person"}, node.cacert)  # fmt: skip
        yield node


def person_env(node: BaoNode, password: str | None = "pw-alice") -> dict[str, str]:
    """What a person has: the address and the CA of OpenBao, never an admin token."""
    env = node.env(token=None)
    env["BAO_TOKEN"] = ""
    env["CERTKIT_BAO_PASSWORD"] = password or ""
    return env


def login(node: BaoNode, *args: str, password: str | None = "pw-alice") -> Any:
    r = run_certkit("login", "--username", "alice", *args, "--json", env=person_env(node, password))
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def context_cert(docker_config: Path, doc: Any) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(doc["files"]["cert.pem"]).read_bytes())


def test_login_gives_her_own_name_for_8_hours_and_a_full_chain(
    team: BaoNode, docker_config: Path
) -> None:
    doc = login(team, "--host", "127.0.0.1", "--context", "team", "--use")
    leaf, intermediate = context_cert(docker_config, doc)
    assert leaf.subject.rfc4514_string() == "CN=alice,OU=certkit-person"
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert dt.timedelta(hours=8) <= lifetime <= dt.timedelta(hours=8, minutes=1)
    assert intermediate.subject == leaf.issuer
    ca = Path(doc["files"]["ca.pem"])
    openssl_verify(ca, Path(doc["files"]["cert.pem"]), "sslclient")
    pkilint_clean(Path(doc["files"]["cert.pem"]))
    assert Path(doc["files"]["key.pem"]).stat().st_mode & 0o777 == 0o600
    config = json.loads((docker_config / "config.json").read_text())
    assert config["currentContext"] == "team" and doc["used"]
    # Renewal is due at 2/3 of the lifetime.
    due = dt.datetime.fromisoformat(doc["renew_after"]) - leaf.not_valid_before_utc
    assert abs(due - lifetime * 2 / 3) < dt.timedelta(seconds=2)


def test_she_cannot_get_another_name_nor_more_than_the_cap(
    team: BaoNode, docker_config: Path
) -> None:
    token = api(team.addr, "POST", "auth/userpass/login/alice", body={"password": "pw-alice"},
                cacert=team.cacert)["auth"]["client_token"]  # fmt: skip
    from certkit.certs import generate_key

    csr = make_csr(generate_key("ec-p256"), "bob")
    for path, body in (
        ("pki-docker/sign/certkit-person", {"csr": csr, "common_name": "bob"}),
        ("pki-docker/sign/certkit-client", {"csr": csr, "common_name": "bob"}),
        ("pki-docker/issue/certkit-person", {"common_name": "alice"}),  # a key made by OpenBao
    ):
        with pytest.raises(urllib.error.HTTPError) as refused:
            api(team.addr, "POST", path, token, body, team.cacert)
        assert refused.value.code in (400, 403), path
    doc = login(team, "--host", "127.0.0.1", "--context", "long", "--ttl", "48h")
    leaf, _ = context_cert(docker_config, doc)
    cap = dt.timedelta(hours=12, seconds=30)  # the role's max_ttl (+ OpenBao's 30 s back-dating)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= cap
    wrong = run_certkit("login", "--username", "alice", "--host", "h", "--json",
                        env=person_env(team, "wrong"))  # fmt: skip
    assert wrong.returncode == 1 and "invalid username or password" in wrong.stderr
    assert wrong.stderr.count("\n") == 1


def test_renewal_with_the_current_certificate_then_revocation_stops_it(
    team: BaoNode, docker_config: Path
) -> None:
    first = login(team, "--host", "127.0.0.1", "--context", "team")
    env = person_env(team, password=None)  # no password from here on
    fresh = run_certkit("team", "renew", "--json", env=env)
    assert fresh.returncode == 0 and json.loads(fresh.stdout) == []  # not due before 2/3
    r = run_certkit("team", "renew", "--context", "team", "--force", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    (renewed,) = json.loads(r.stdout)
    assert renewed["serial"] != first["serial"] and renewed["identity"] == "alice"
    assert renewed["method"] == "cert"
    leaf, _ = context_cert(docker_config, renewed)
    assert leaf.subject.rfc4514_string() == "CN=alice,OU=certkit-person"
    # She leaves: the admin revokes her certificates; renewal is refused, in one sentence.
    out = run_certkit("team", "revoke", "--identity", "alice", "--json", env=team.env())
    assert out.returncode == 0, out.stdout + out.stderr
    revoked = json.loads(out.stdout)["revoked"]
    assert len(revoked) == 2  # the first and the renewed certificate
    crl = api(team.addr, "GET", "pki-docker/cert/crl", cacert=team.cacert)["data"]["certificate"]
    listed = {f"{c.serial_number:x}" for c in x509.load_pem_x509_crl(crl.encode())}
    assert {s.replace(":", "").lstrip("0") for s in revoked} <= listed
    rows = json.loads(run_certkit("team", "list", "--json", env=team.env()).stdout)
    people = [r for r in rows if r["kind"] == "person"]
    assert len(people) == 2 and all(r["name"] == "alice" and r["revoked"] for r in people)
    again = run_certkit("team", "renew", "--context", "team", "--force", env=env)
    assert again.returncode == 1 and "log in again" in again.stderr
    assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr


@pytest.mark.dockerd
def test_a_login_context_reaches_dockerd_whose_certificate_came_from_the_same_issuer(
    team: BaoNode, docker_config: Path, dockerd: Any, sandbox: Path, tmp_path: Path
) -> None:
    srv = tmp_path / "srv"
    r = run_certkit("team", "issue-server", "localhost", "--san", "127.0.0.1", "--out", str(srv),
                    env=team.env())  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    openssl_verify(srv / "ca.pem", srv / "server-cert.pem", "sslserver")
    cfg = write_tcp_daemon_json(sandbox, tlsverify_settings(
        srv / "ca.pem", srv / "server-cert.pem", srv / "server-key.pem"))  # fmt: skip
    dockerd(**cfg.start_args())
    doc = login(team, "--host", "127.0.0.1", "--port", str(cfg.port), "--context", "team")
    env = {"DOCKER_CONFIG": str(docker_config), "PATH": "/usr/bin:/bin"}
    version = ["docker", "--context", "team", "version", "--format", "{{.Server.Version}}"]
    out = subprocess.run(version, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    assert doc["host"] == f"tcp://127.0.0.1:{cfg.port}"


def test_a_dead_first_address_is_skipped_and_an_untrusted_server_is_one_sentence(
    team: BaoNode, docker_config: Path
) -> None:
    from support import free_port

    dead = f"https://127.0.0.1:{free_port()}"
    doc = login(team, "--issuer", f"{dead},{team.addr}", "--host", "h.test", "--context", "ha")
    assert doc["identity"] == "alice"
    env = {**person_env(team), "BAO_CACERT": "", "CERTKIT_BAO_RETRY_SECONDS": "0"}
    r = run_certkit("login", "--username", "alice", "--host", "h.test", "--context", "xx", env=env)
    assert r.returncode == 1 and "not trusted (set BAO_CACERT" in r.stderr
    assert r.stderr.count("\n") == 1
    everything_dead = {**env, "BAO_ADDR": dead}
    r = run_certkit("login", "--username", "alice", "--host", "h.test", env=everything_dead)
    assert r.returncode == 1 and "No OpenBao node could serve" in r.stderr


def test_login_with_a_token_from_any_openbao_login(team: BaoNode, docker_config: Path) -> None:
    """``--method token``: the token of a login made elsewhere (bao login -method=oidc...)."""
    auth = api(team.addr, "POST", "auth/userpass/login/alice", body={"password": "pw-alice"},
               cacert=team.cacert)["auth"]  # fmt: skip
    env = {**person_env(team), "BAO_TOKEN": auth["client_token"], "CERTKIT_BAO_PASSWORD": ""}
    r = run_certkit("login", "--method", "token", "--host", "h.test", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["identity"] == "alice" and doc["method"] == "token"
    # A token bound to no person (no entity behind it) gets no certificate, in one sentence.
    bare = api(team.addr, "POST", "auth/token/create", ROOT_TOKEN,
               {"policies": ["certkit-person"], "meta": {"username": "alice"}},
               team.cacert)["auth"]["client_token"]  # fmt: skip
    r = run_certkit("login", "--method", "token", "--host", "h2.test",
                    env={**env, "BAO_TOKEN": bare})  # fmt: skip
    assert r.returncode == 1 and "not allowed by this role" in r.stderr
    assert r.stderr.count("\n") == 1
