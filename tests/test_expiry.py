"""Which certificate expired, said before Docker does: ``verify`` (before it connects) and
``doctor`` give an expired client certificate, an expired server certificate and an
expired CA each a sentence of its own, with the command that fixes it.

The expired certificates are real ones: signed by the store's CA with a notAfter in the
past (``ca.issue(..., not_after=...)``), or a CA made with past validity
(``certs.make_ca(now=...)``); the daemons are real dockerds serving them.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from support import cli_ok, run_certkit, tlsverify_settings, write_json, write_tcp_daemon_json

from certkit import ca, certs, files, names
from certkit.store import CAStore
from certkit.verify import api_floor_problem

PAST = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
CLIENT_SAYS = (
    "dockerd refuses it, and the docker CLI does not say why "
    '("remote error: tls: bad certificate", or a connection reset)'
)


def _lines(out: str) -> list[tuple[str, str, str]]:
    """(status, check, message) of every check line, in order."""
    found = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("PASS", "WARN", "FAIL", "SKIP"):
            found.append((parts[0], parts[1], parts[2]))
    return found


def _serve(dockerd: Any, base: Path, ca_pem: Path, cert: Path, key: Path) -> int:
    base.mkdir()
    daemon = write_tcp_daemon_json(base, tlsverify_settings(ca_pem, cert, key))
    dockerd(**daemon.start_args())
    return daemon.port


def _files(store: CAStore, name: str, **kw: Any) -> list[str]:
    issued = ca.issue(store, "client", name, name, **kw)
    return [
        "--ca",
        str(store.cert_path),
        "--cert",
        str(issued.cert_path),
        "--key",
        str(issued.key_path),
    ]


def _server(store: CAStore, **kw: Any) -> tuple[Path, Path]:
    issued = ca.issue(
        store, "server", "localhost", "localhost", names.parse_names(["localhost"]), **kw
    )
    return issued.cert_path, issued.key_path


def _first_check(out: str) -> tuple[str, str, str]:
    return _lines(out)[0]


def test_expired_client_certificate_is_named_before_connecting(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    port = _serve(dockerd, sandbox / "d", store.cert_path, *_server(store))
    args = _files(store, "late", not_after=PAST)
    r = run_certkit("verify", f"localhost:{port}", *args, "--insecure-port", "0")
    assert r.returncode == 1
    status, name, message = _first_check(r.stdout)  # before tls-version: before connecting
    assert (status, name) == ("FAIL", "client-cert-expiry"), r.stdout
    assert message == (
        f"the client certificate expired on {PAST:%Y-%m-%d %H:%M} UTC: {CLIENT_SAYS}; "
        "fix: certkit renew client late"
    )
    assert [c for c in _lines(r.stdout) if c[1] == "client-cert-expiry"] == [
        (status, name, message)
    ]
    # What the docker CLI itself says with the same files: no reason at all.
    if shutil.which("docker"):
        ca_pem, cert, key = args[1], args[3], args[5]
        docker = subprocess.run(
            ["docker", "--tlsverify", "--tlscacert", ca_pem, "--tlscert", cert, "--tlskey", key,
             "-H", f"tcp://localhost:{port}", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "DOCKER_CONFIG": str(sandbox / "cli")},
        )  # fmt: skip
        assert docker.returncode != 0
        # TLS 1.3: the alert comes after the client's handshake is done, so the CLI reads
        # either the alert or a reset, depending on timing; the word "expired", never.
        assert "bad certificate" in docker.stderr or "reset by peer" in docker.stderr
        assert "expired" not in docker.stderr


def test_expired_server_certificate_is_named_from_the_inventory_first(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    cert, key = _server(store, not_after=PAST)
    serial = certs.serial_hex(certs.load_cert(cert.read_bytes()))
    port = _serve(dockerd, sandbox / "d", store.cert_path, cert, key)
    r = run_certkit("verify", f"localhost:{port}", *_files(store, "ok"), "--insecure-port", "0")
    assert r.returncode == 1
    status, name, message = _first_check(r.stdout)
    assert (status, name) == ("FAIL", "server-cert-expiry"), r.stdout
    assert message == (
        f"the server certificate of localhost (serial {serial}, in the inventory) expired on "
        f"{PAST:%Y-%m-%d %H:%M} UTC: every client refuses the server "
        '("x509: certificate has expired"); fix: certkit renew server localhost --restart'
    )
    # The served certificate is the same one: said once.
    assert [c[1] for c in _lines(r.stdout)].count("server-cert-expiry") == 1
    chain = next(c for c in _lines(r.stdout) if c[1] == "chain")
    assert chain[0] == "FAIL" and "expired" in chain[2]


def _expired_ca(tmp: Path) -> tuple[Path, Path, Path, Path, Path]:
    """A CA that ended at PAST (3 days ago), with a server and a client it signed."""
    start = PAST - dt.timedelta(days=30)
    ca_key = certs.generate_key()
    ca_cert = certs.make_ca(ca_key, "old CA", days=30, now=start)
    out = {}
    for kind, cn, sans in (("server", "localhost", ["localhost"]), ("client", "laptop", None)):
        key = certs.generate_key()
        leaf = certs.make_leaf(
            ca_cert, ca_key, key.public_key(), kind, cn,  # type: ignore[arg-type]
            names.parse_names(sans) if sans else None, days=30, now=start,
        )  # fmt: skip
        out[kind] = (tmp / f"{kind}-cert.pem", tmp / f"{kind}-key.pem")
        files.atomic_write(out[kind][0], certs.cert_pem(leaf))
        files.atomic_write(out[kind][1], certs.key_pem(key), files.PRIVATE_FILE)
    ca_pem = tmp / "ca.pem"
    files.atomic_write(ca_pem, certs.cert_pem(ca_cert))
    return ca_pem, *out["server"], *out["client"]


def test_expired_ca_is_named_before_connecting(sandbox: Path, dockerd: Any, tmp_path: Path) -> None:
    ca_pem, server_cert, server_key, client_cert, client_key = _expired_ca(tmp_path)
    port = _serve(dockerd, sandbox / "d", ca_pem, server_cert, server_key)
    r = run_certkit(
        "verify", f"localhost:{port}", "--ca", str(ca_pem), "--cert", str(client_cert),
        "--key", str(client_key), "--insecure-port", "0",
    )  # fmt: skip
    assert r.returncode == 1
    checks = _lines(r.stdout)
    ca_line = next(c for c in checks if c[1] == "ca-expiry")
    assert checks.index(ca_line) < [c[1] for c in checks].index("tls-version")
    assert ca_line[0] == "FAIL"
    assert ca_line[2].startswith(
        f"the CA 'old CA' in {ca_pem} expired on {PAST:%Y-%m-%d %H:%M} UTC: nothing it signed "
        "is accepted any more, by the clients or by dockerd; fix: certkit rotate-ca start"
    )
    # The leaves themselves expired with it: each said on its own line too.
    assert next(c for c in checks if c[1] == "client-cert-expiry")[0] == "FAIL"
    assert next(c for c in checks if c[1] == "server-cert-expiry")[0] == "FAIL"


# ---------------------------------------------------------------- doctor


def test_doctor_names_each_expired_certificate(
    store: CAStore, tmp_path: Path, docker_config: Path
) -> None:
    # A host whose daemon.json points at an expired server certificate and an expired CA.
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    ca_pem, _, _, _, _ = _expired_ca(tmp_path)
    cert, key = _server(store, not_after=PAST)
    write_json(root / "etc/docker/daemon.json", tlsverify_settings(ca_pem, cert, key))
    # A docker context whose client certificate expired (re-written with an expired pair).
    cli_ok("client-context", "laptop", "--host", "docker1.example.com")
    late = ca.issue(store, "client", "laptop", "laptop", not_after=PAST)
    tls = next(docker_config.glob("contexts/tls/*/docker"))
    shutil.copyfile(late.cert_path, tls / "cert.pem")
    shutil.copyfile(late.key_path, tls / "key.pem")

    r = run_certkit("doctor", "--root", str(root))
    assert r.returncode == 1
    checks = {(c[0], c[1]): c[2] for c in _lines(r.stdout)}
    server = checks[("FAIL", "server-cert-expiry")]
    assert server == (
        f"the server certificate expired on {PAST:%Y-%m-%d}: every client refuses the server "
        '("x509: certificate has expired"); fix: certkit renew server localhost --restart'
    )
    assert checks[("FAIL", "ca-expiry")].startswith(
        f"tlscacert: the CA 'old CA' in {ca_pem} expired on {PAST:%Y-%m-%d}: nothing it signed"
    )
    client = checks[("FAIL", "context")]  # "context laptop": split on the first blanks
    assert client.startswith("laptop ") and (
        f"the client certificate expired on {PAST:%Y-%m-%d}: {CLIENT_SAYS}; "
        "fix: certkit renew client laptop" in client
    )


# ---------------------------------------------------------------- API version floor


def test_api_floor_above_the_client_is_one_sentence(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    # Docker 29.0-29.2 answered /version with MinAPIVersion 1.44; a 20.10 CLI speaks 1.41.
    problem = api_floor_problem("1.44", "1.41")
    assert problem is not None and "the server refuses API versions below 1.44" in problem
    assert '"client version 1.41 is too old"' in problem
    assert api_floor_problem("1.40", "1.41") is None and api_floor_problem("1.44", "1.50") is None
    assert api_floor_problem(None, "1.41") is None and api_floor_problem("1.44", None) is None
    # The real dockerd here (20.10) gives its floor, below the docker CLI's: no line.
    port = _serve(dockerd, sandbox / "d", store.cert_path, *_server(store))
    data = cli_ok(
        "verify", f"localhost:{port}", *_files(store, "ok"), "--insecure-port", "0", "--json"
    )
    import json

    report = json.loads(data)
    assert report["min_api_version"] == "1.12"
    assert all(c["name"] != "api-version" for c in report["checks"])
