"""``certkit login --method jwt`` against OpenBao's real jwt auth method.

The identity provider is played by this test: an EC P-256 key whose public half is in
the jwt method's ``jwt_validation_pubkeys``, signing ES256 tokens with ``cryptography``
(no OIDC server runs here: the browser ``oidc`` flow is not built, see docs/team.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bao_support import ROOT_TOKEN, BaoNode, api, running_dev
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from support import run_certkit
from test_openbao import init_team, openssl_verify

from certkit.certs import generate_key
from certkit.openbao.issue import make_csr

pytestmark = pytest.mark.bao
IDP_KEY = ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(sub: str, *, aud: str = "certkit", lifetime: int = 300) -> str:
    """An ES256 JWT from the test's identity provider."""
    now = int(time.time())
    claims = {"sub": sub, "aud": aud, "iat": now, "nbf": now - 5, "exp": now + lifetime}
    head = _b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(IDP_KEY.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{head}.{body}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@pytest.fixture
def team(tmp_path: Path, certkit_home: Path) -> Iterator[BaoNode]:
    """OpenBao over TLS, jwt auth trusting the test's key, then certkit's set-up (which
    names the jwt method in the person role's identity templates)."""
    with running_dev(tmp_path, tls=True) as node:
        pub = IDP_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

        def root(path: str, body: Any) -> None:
            api(node.addr, "POST", path, ROOT_TOKEN, body, node.cacert)

        root("sys/auth/jwt", {"type": "jwt"})
        root("auth/jwt/config", {"jwt_validation_pubkeys": [pub.decode()]})
        root("auth/jwt/role/certkit-person", {
            "role_type": "jwt", "user_claim": "sub", "bound_audiences": ["certkit"],
            "token_policies": ["certkit-person"], "token_ttl": "5m",
        })  # fmt: skip
        init_team(node)
        yield node


def jwt_login(node: BaoNode, token: str, *args: str) -> Any:
    env = {**node.env(token=None), "BAO_TOKEN": "", "CERTKIT_BAO_JWT": token}
    return run_certkit("login", "--method", "jwt", *args, "--json", env=env)


@pytest.mark.slow
def test_a_jwt_login_in_the_tokens_name_renewed_by_renew_contexts(
    team: BaoNode, docker_config: Path
) -> None:
    r = jwt_login(team, make_jwt("alice"), "--host", "127.0.0.1", "--context", "team",
                  "--ttl", "20s")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["identity"] == "alice" and doc["method"] == "jwt"
    cert_pem = Path(doc["files"]["cert.pem"])
    leaf = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0]
    assert leaf.subject.rfc4514_string() == "CN=alice,OU=certkit-person"
    openssl_verify(Path(doc["files"]["ca.pem"]), cert_pem, "sslclient")
    # Renewal needs no JWT: `renew --contexts` logs in with the current certificate once
    # 2/3 of its lifetime has passed (20 s asked; OpenBao back-dates 30 s).
    env = {**team.env(token=None), "BAO_TOKEN": "", "CERTKIT_BAO_JWT": ""}
    due = dt.datetime.fromisoformat(doc["renew_after"])
    time.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
    r = run_certkit("renew", "--contexts", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    (renewed,) = json.loads(r.stdout)
    assert renewed["method"] == "cert" and renewed["identity"] == "alice"
    assert renewed["serial"] != doc["serial"]
    r = run_certkit("renew", "client", "team", "--json", env=env)  # by name: now
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)[0]["serial"] not in (doc["serial"], renewed["serial"])
    bad = run_certkit("renew", "--contexts", "--due", env=env)
    assert bad.returncode == 2 and "on its own" in bad.stderr
    # bob (a valid JWT of his own) cannot have alice's name signed.
    bob = api(team.addr, "POST", "auth/jwt/login", body={"role": "certkit-person",
              "jwt": make_jwt("bob")}, cacert=team.cacert)["auth"]["client_token"]  # fmt: skip
    csr = make_csr(generate_key("ec-p256"), "alice")
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(team.addr, "POST", "pki-docker/sign/certkit-person", bob,
            {"csr": csr, "common_name": "alice"}, team.cacert)  # fmt: skip
    assert refused.value.code == 400
    for token, words in (
        (make_jwt("alice", lifetime=-60), "token is expired"),
        (make_jwt("alice", aud="someone-else"), "aud"),
        ("not-a-jwt", "auth/jwt/login"),
    ):
        r = jwt_login(team, token, "--host", "h.test", "--context", "xx")
        assert r.returncode == 1 and "OpenBao refused" in r.stderr and words in r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = jwt_login(team, "", "--host", "h.test")
    assert r.returncode == 2 and "CERTKIT_BAO_JWT" in r.stderr
