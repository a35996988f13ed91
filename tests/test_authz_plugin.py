"""certkit's authorization plugin deciding requests: the protocol over a real unix socket,
revocation, roles, and a policy file that changes or breaks under it."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import cli_json, cli_ok, short_tempdir

from certkit.authz import plugin
from certkit.store import CAStore


def _der(store: CAStore, name: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.certs import load_cert

    serial = cli_json("list", "--kind", "client")
    rec = next(i for i in serial if i["name"] == name)
    pem = (store.issued_dir(rec["serial"]) / "cert.pem").read_bytes()
    return load_cert(pem).public_bytes(Encoding.DER)


def _req(method: str, uri: str, user: str = "", der: bytes = b"") -> dict[str, Any]:
    """An AuthZReq as dockerd sends it: each peer certificate PEM, in base64 (JSON bytes)."""
    pem = ssl.DER_cert_to_PEM_cert(der).encode() if der else b""
    return {
        "User": user,
        "RequestMethod": method,
        "RequestUri": uri,
        "RequestPeerCertificates": [base64.b64encode(pem).decode()] if der else None,
    }


@pytest.fixture
def policy_file(store: CAStore, tmp_path: Path) -> Path:
    """alice (read-only), bob (full), carol revoked: the policy `certkit policy show` builds."""
    for name, role in [("alice", "read-only"), ("bob", "full"), ("carol", "full")]:
        cli_ok("client-context", name, "--host", "localhost", "--role", role)
    cli_ok("revoke", "carol", "--reason", "left the team", "--no-push")
    path = tmp_path / "authz.json"
    path.write_text(json.dumps(cli_json("policy", "show")["policy"]))
    return path


def test_decisions_revoked_roles_unix_socket_and_logging(store: CAStore, policy_file: Path) -> None:
    log: list[str] = []
    d = plugin.Decider(str(policy_file), log.append)
    carol, alice, bob = (_der(store, n) for n in ("carol", "alice", "bob"))

    allow, msg = d.decide(_req("GET", "/v1.41/containers/json", "carol", carol))
    assert not allow and msg.startswith("certificate revoked on 20") and "left the team" in msg
    assert d.decide(_req("GET", "/v1.41/containers/json?all=1", "alice", alice)) == (True, "")
    assert d.decide(_req("GET", "/v1.41/containers/abc/logs?stdout=1", "alice", alice))[0]
    assert d.decide(_req("POST", "/v1.41/containers/create?name=x", "alice", alice)) == (
        False,
        "role read-only may not POST /containers/create",
    )
    for method, uri in [
        ("POST", "/containers/abc/exec"),
        ("HEAD", "/containers/abc/archive?path=/etc"),
        ("GET", "/containers/abc/export"),
        ("POST", "/build"),
        ("GET", "/secrets"),
        ("GET", "/swarm"),
        ("POST", "/images/x/push"),
    ]:
        assert not d.decide(_req(method, uri, "alice", alice))[0], uri
    assert d.decide(_req("POST", "/v1.41/containers/create", "bob", bob)) == (True, "")
    assert d.decide(_req("POST", "/v1.41/containers/create")) == (True, "")  # unix socket
    serial = plugin.serial_of(carol)
    assert serial == next(i for i in cli_json("list") if i["name"] == "carol")["serial"]
    assert any(
        line.startswith(f"deny identity=carol serial={serial} method=GET path=/containers/json")
        for line in log
    )
    assert "allow identity=- serial=- method=POST path=/containers/create" in log


def test_unknown_identities_get_the_default_role(store: CAStore, policy_file: Path) -> None:
    d = plugin.Decider(str(policy_file), lambda _: None)
    assert d.decide(_req("POST", "/containers/create", "mallory"))[0]  # default full
    data = json.loads(policy_file.read_text())
    data["default_role"] = "deny"
    policy_file.write_text(json.dumps(data))
    allow, msg = d.decide(_req("GET", "/_ping", "mallory"))
    assert not allow and msg == "identity 'mallory' is not known to this host's policy"


def test_a_broken_policy_keeps_the_last_good_one(store: CAStore, policy_file: Path) -> None:
    log: list[str] = []
    d = plugin.Decider(str(policy_file), log.append)
    alice = _der(store, "alice")
    good = policy_file.read_text()
    for broken in [
        "{truncated",
        json.dumps({"format": 1}),
        json.dumps({**json.loads(good), "identities": {"x": "nope"}}),
    ]:
        policy_file.write_text(broken)
        assert not d.decide(_req("POST", "/containers/create", "alice", alice))[0]
        assert "keeping the previous policy" in log[-2], log[-2:]
    policy_file.unlink()
    assert not d.decide(_req("POST", "/containers/create", "alice", alice))[0]
    # A good file again is picked up.
    data = json.loads(good)
    data["identities"]["alice"] = "full"
    policy_file.write_text(json.dumps(data))
    assert d.decide(_req("POST", "/containers/create", "alice", alice))[0]


def test_without_any_policy_tls_requests_are_denied_and_the_unix_socket_allowed(
    tmp_path: Path,
) -> None:
    d = plugin.Decider(str(tmp_path / "missing.json"), lambda _: None)
    allow, msg = d.decide(_req("GET", "/_ping", "alice"))
    assert not allow and "no policy loaded" in msg
    assert d.decide(_req("GET", "/_ping"))[0]


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


@pytest.fixture
def running_plugin(policy_file: Path) -> Iterator[str]:
    """The plugin as a process, as dockerd sees it: ``python3 FILE --socket PATH``."""
    base = short_tempdir()
    sock = str(base / "p.sock")
    proc = subprocess.Popen(
        [sys.executable, "-I", plugin.__file__, "--policy", str(policy_file), "--socket", sock],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.02)
    yield sock
    proc.terminate()
    proc.wait(10)
    assert proc.stderr is not None
    proc.stderr.close()


def test_the_protocol_over_a_unix_socket_with_a_kept_alive_connection(
    store: CAStore, running_plugin: str
) -> None:
    assert os.stat(running_plugin).st_mode & 0o777 == 0o600
    conn = _UnixHTTP(running_plugin)

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())  # type: ignore[no-any-return]

    assert post("/Plugin.Activate", {}) == {"Implements": ["authz"]}
    carol = _der(store, "carol")
    denied = post("/AuthZPlugin.AuthZReq", _req("GET", "/v1.41/info", "carol", carol))
    assert denied["Allow"] is False and denied["Msg"].startswith("certificate revoked on")
    assert post("/AuthZPlugin.AuthZReq", _req("GET", "/v1.41/info"))["Allow"] is True
    assert post("/AuthZPlugin.AuthZRes", _req("GET", "/v1.41/info")) == {"Allow": True}
    conn.close()


def test_check_mode_validates_a_policy_file(policy_file: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-I", plugin.__file__, "--check", "--policy", str(policy_file)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0 and "OK (1 revoked" in ok.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    r = subprocess.run(
        [sys.executable, "-I", plugin.__file__, "--check", "--policy", str(bad)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 1 and "not a certkit authz policy" in r.stderr
