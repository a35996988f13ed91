"""`certkit verify` against real dockerds: certkit-style, badly configured, plain HTTP."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from support import (
    free_port,
    run_certkit,
    sandbox_daemon_settings,
    tlsverify_settings,
    write_json,
    write_tcp_daemon_json,
)

from certkit import ca, certs, names
from certkit.store import CAStore


def _server_files(store: CAStore, hosts: list[str]) -> tuple[Path, Path]:
    issued = ca.issue(store, "server", hosts[0], hosts[0], names.parse_names(hosts))
    return issued.cert_path, issued.key_path


def _client(store: CAStore, name: str = "it", **kw: Any) -> list[str]:
    """The --ca/--cert/--key arguments for a fresh client certificate of ``store``."""
    issued = ca.issue(store, "client", name, name, **kw)
    return [
        "--ca",
        str(store.cert_path),
        "--cert",
        str(issued.cert_path),
        "--key",
        str(issued.key_path),
    ]


def _start(dockerd: Any, sandbox: Path, tls: dict[str, Any], sub: str = "d1") -> int:
    base = sandbox / sub
    base.mkdir()
    daemon = write_tcp_daemon_json(base, tls)
    dockerd(**daemon.start_args())
    return daemon.port


def _certkit_style(store: CAStore, names: list[str]) -> dict[str, Any]:
    cert, key = _server_files(store, names)
    return tlsverify_settings(store.cert_path, cert, key)


def _lines(out: str) -> dict[str, str]:
    """check name -> its line, from the human output."""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[0] in ("PASS", "WARN", "FAIL"):
            found[parts[1]] = line
    return found


def test_certkit_daemon_passes_every_check_even_with_requests_ca_vars_set(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    port = _start(dockerd, sandbox, _certkit_style(store, ["localhost"]))
    closed = free_port()
    system_bundle = ssl.get_default_verify_paths().openssl_cafile
    env = {
        "REQUESTS_CA_BUNDLE": system_bundle,
        "CURL_CA_BUNDLE": system_bundle,
        "SSL_CERT_FILE": system_bundle,
    }
    r = run_certkit(
        "verify", f"localhost:{port}", *_client(store), "--insecure-port", str(closed), env=env
    )
    assert r.returncode == 0, r.stdout + r.stderr
    checks = _lines(r.stdout)
    assert set(checks) == {
        "tls-version",
        "chain",
        "name",
        "handshake",
        "api",
        "client-cert-required",
        "unknown-ca-refused",
        "server-cert-expiry",
        "client-cert-expiry",
        "plain-http-closed",
        "docker-py",
        "docker-py-env",
        # localhost is this machine: who can reach its ports (listeners, firewall) too.
        "plain-port",
        "tls-port-exposure",
    }
    assert f"port {port} listens on loopback only" in checks["tls-port-exposure"]
    # docker-py works through certkit's client; plain docker-py code would not, with the
    # CA-bundle variables set: a warning with the fix, not a failure.
    env_warning = checks.pop("docker-py-env")
    assert env_warning.startswith("WARN") and "trust_env = False" in env_warning, r.stdout
    assert all(line.startswith("PASS") for line in checks.values()), r.stdout
    assert "TLSv1." in checks["tls-version"]
    assert "Docker Engine 20.10" in checks["api"] or "Docker Engine" in checks["api"]

    data = json.loads(
        run_certkit(
            "verify",
            f"localhost:{port}",
            *_client(store, "it2"),
            "--json",
            "--insecure-port",
            str(closed),
            env=env,
        ).stdout
    )
    assert (
        data["ok"] is True
        and data["engine_version"]
        and data["tls_version"] in ("TLSv1.2", "TLSv1.3")
    )
    assert data["server_names"] == ["localhost"]


def test_name_not_in_the_certificate_fails_and_lists_the_names_it_covers(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    port = _start(dockerd, sandbox, _certkit_style(store, ["localhost", "docker1.lan"]))
    r = run_certkit("verify", f"127.0.0.1:{port}", *_client(store), "--insecure-port", "0")
    assert r.returncode == 1
    name = _lines(r.stdout)["name"]
    assert name.startswith("FAIL")
    assert "valid for localhost, docker1.lan, not 127.0.0.1" in name
    # The mismatch does not hide the rest: chain and client-cert checks still pass.
    assert _lines(r.stdout)["chain"].startswith("PASS")
    assert _lines(r.stdout)["client-cert-required"].startswith("PASS")


def test_daemon_with_tls_but_no_client_verification_fails(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    cert, key = _server_files(store, ["localhost"])
    # tlsverify must be given as false: dockerd 20.10 with `tls: true` alone still
    # demanded client certificates when checked here.
    tls = {"tls": True, "tlsverify": False, "tlscert": str(cert), "tlskey": str(key)}
    port = _start(dockerd, sandbox, tls)
    r = run_certkit("verify", f"localhost:{port}", *_client(store), "--insecure-port", "0")
    assert r.returncode == 1, r.stdout
    checks = _lines(r.stdout)
    assert checks["client-cert-required"].startswith("FAIL")
    assert "WITHOUT a client certificate" in checks["client-cert-required"]
    assert checks["unknown-ca-refused"].startswith("FAIL")
    assert checks["api"].startswith("PASS")  # it works, which is exactly the danger


def test_plain_http_docker_api_on_the_insecure_port_fails(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    port = _start(dockerd, sandbox, _certkit_style(store, ["localhost"]))
    # With TLS on, every TCP host of a daemon is TLS: a second dockerd without TLS
    # stands in for a host that also exposes plain HTTP.
    plain = _start(dockerd, sandbox, {}, sub="d2")
    r = run_certkit("verify", f"localhost:{port}", *_client(store), "--insecure-port", str(plain))
    assert r.returncode == 1
    checks = _lines(r.stdout)
    assert checks["plain-http-closed"].startswith("FAIL")
    assert f"port {plain} serves the Docker API in plain HTTP" in checks["plain-http-closed"]
    # Run on this machine, verify also sees the plain listener itself (loopback only: WARN).
    assert checks["plain-port"].startswith("WARN")
    assert (
        f"port {plain} (Docker's plain-HTTP API port) is listening on 127.0.0.1 (dockerd)"
        in (checks["plain-port"])
    )
    others = {k: v for k, v in checks.items() if k not in ("plain-http-closed", "plain-port")}
    assert all(v.startswith("PASS") for v in others.values()), r.stdout
    data = json.loads(
        run_certkit(
            "verify", f"localhost:{port}", *_client(store, "j"), "--insecure-port", str(plain),
            "--json",
        ).stdout
    )  # fmt: skip
    plain_finding = next(f for f in data["exposure"] if f["name"] == "plain-port")
    assert (
        plain_finding["addresses"] == ["127.0.0.1"]
        and "--remove-insecure" in (plain_finding["next"])
    )

    # The TLS port of the good daemon given as the insecure port: it speaks TLS only.
    r = run_certkit(
        "verify", f"localhost:{port}", *_client(store, "b"), "--insecure-port", str(port)
    )
    assert r.returncode == 0
    assert "speaks TLS only" in _lines(r.stdout)["plain-http-closed"]

    # Pointing verify at the plain port itself explains it is not TLS.
    r = run_certkit("verify", f"localhost:{plain}", *_client(store, "c"), "--insecure-port", "0")
    assert r.returncode == 1
    assert "does not speak TLS" in _lines(r.stdout)["connect"]


def test_expired_client_certificate_is_explained(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    port = _start(dockerd, sandbox, _certkit_style(store, ["localhost"]))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    args = _client(store, "late", not_after=past)
    r = run_certkit("verify", f"localhost:{port}", *args, "--insecure-port", "0")
    assert r.returncode == 1
    checks = _lines(r.stdout)
    assert checks["handshake"].startswith("FAIL")  # the daemon refuses it
    assert checks["client-cert-expiry"].startswith("FAIL")
    assert f"client certificate expired on {past:%Y-%m-%d}" in checks["client-cert-expiry"]


def test_context_supplies_endpoint_and_files(
    store: CAStore, sandbox: Path, dockerd: Any, docker_config: Path
) -> None:
    port = _start(dockerd, sandbox, _certkit_style(store, ["localhost"]))
    issued = ca.issue(store, "client", "ctx", "ctx")
    # The docker CLI's context store layout (facts doc section 2), written by hand here.
    digest = hashlib.sha256(b"ctx").hexdigest()
    tls = docker_config / "contexts" / "tls" / digest / "docker"
    tls.mkdir(parents=True)
    (tls / "ca.pem").write_bytes(store.cert_path.read_bytes())
    (tls / "cert.pem").write_bytes(issued.cert_pem)
    (tls / "key.pem").write_bytes(issued.key_pem)
    write_json(
        docker_config / "contexts" / "meta" / digest / "meta.json",
        {
            "Name": "ctx",
            "Metadata": {},
            "Endpoints": {"docker": {"Host": f"tcp://localhost:{port}", "SkipTLSVerify": False}},
        },
    )
    r = run_certkit("verify", "--context", "ctx", "--insecure-port", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "context ctx" in r.stdout
    # HOST:PORT alone finds the context that points there.
    r = run_certkit("verify", f"localhost:{port}", "--insecure-port", "0")
    assert r.returncode == 0, r.stdout + r.stderr


def test_bad_input_is_a_usage_error(store: CAStore, tmp_path: Path) -> None:
    r = run_certkit("verify", "localhost:2376", "--ca", "x.pem")
    assert r.returncode == 2 and "go together" in r.stderr
    r = run_certkit("verify", "localhost:99999", "--context", "x")
    assert r.returncode == 2
    r = run_certkit(
        "verify", "localhost", "--ca", "/nope/ca.pem", "--cert", "/nope/c", "--key", "/nope/k"
    )
    assert r.returncode == 2 and "does not exist: check the --ca" in r.stderr
    r = run_certkit("verify", "--context", "missing")
    assert r.returncode == 2 and "No docker context named 'missing'" in r.stderr
    assert "Traceback" not in r.stderr


def test_unreachable_endpoint_fails_cleanly(store: CAStore) -> None:
    closed = free_port()
    r = run_certkit(
        "verify", f"127.0.0.1:{closed}", *_client(store), "--insecure-port", "0", "--timeout", "2"
    )
    assert r.returncode == 1
    assert "connection refused" in _lines(r.stdout)["connect"].lower()
    assert "Traceback" not in r.stderr


def test_a_silent_endpoint_costs_one_timeout_not_two(store: CAStore) -> None:
    # A listener that never completes a TLS handshake, like a firewall that drops.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        r = run_certkit(
            "verify", f"127.0.0.1:{port}", *_client(store), "--insecure-port", "0", "--timeout", "5"
        )
        took = time.monotonic() - started
    assert r.returncode == 1
    assert "no answer before the timeout" in _lines(r.stdout)["connect"]
    # Two timeouts would be 10 s; the 4 s between are start-up slack for a loaded machine.
    assert took < 9, f"took {took:.1f}s with --timeout 5: two timeouts, not one"


def test_a_key_that_does_not_fit_or_is_encrypted_is_refused_without_prompting(
    store: CAStore, tmp_path: Path
) -> None:
    issued = ca.issue(store, "client", "k", "k")
    for name, data in (
        ("other.pem", certs.key_pem(certs.generate_key())),
        ("encrypted.pem", certs.key_pem(issued.key, b"secret")),
    ):
        key = tmp_path / name
        key.write_bytes(data)
        r = run_certkit(
            "verify", "localhost", "--ca", str(store.cert_path), "--cert", str(issued.cert_path),
            "--key", str(key),
        )  # fmt: skip
        assert r.returncode == 2, r.stdout + r.stderr
        assert "belong together" in r.stderr


def test_the_whole_certkit_flow_verifies_and_doctors_clean(
    sandbox: Path, dockerd: Any, docker_config: Path
) -> None:
    """init-ca, issue-server --install, a real dockerd from that daemon.json, client-context."""
    assert run_certkit("init-ca").returncode == 0
    root, port = sandbox / "root", free_port()
    sock = str(sandbox / "docker.sock")
    daemon_json = root / "etc" / "docker" / "daemon.json"
    write_json(daemon_json, {**sandbox_daemon_settings(sandbox), "hosts": [f"unix://{sock}"]})
    r = run_certkit(
        "issue-server", "localhost", "--install", "--root", str(root), "--method", "daemon-json",
        "--listen", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    dockerd(config_file=daemon_json, unix_socket=sock, tcp=[("127.0.0.1", port)])
    r = run_certkit("client-context", "it", "--host", "localhost", "--port", str(port))
    assert r.returncode == 0, r.stdout + r.stderr

    r = run_certkit("verify", "--context", "it", "--insecure-port", str(free_port()), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    # docker-py too, and (localhost is this machine) plain-port and tls-port-exposure
    assert [c["status"] for c in data["checks"]] == ["PASS"] * 13, data["checks"]

    r = run_certkit("doctor", "--root", str(root))
    assert r.returncode == 0, r.stdout
    assert "FAIL" not in r.stdout and "context it" in r.stdout
