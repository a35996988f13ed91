"""First real use: a CA from `init-ca` and leaves from `certkit.certs` serve a real dockerd."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from support import (
    refused,
    run_certkit,
    strict_context,
    tls_get,
    tlsverify_settings,
    write_tcp_daemon_json,
)

from certkit import certs, names
from certkit.store import CAStore


def _leaf(store: CAStore, out: Path, kind: certs.Kind, hosts: list[str]) -> tuple[Path, Path]:
    ca_cert, ca_key = store.load_cert(), store.load_key()
    key = certs.generate_key()
    cert = certs.make_leaf(
        ca_cert, ca_key, key.public_key(), kind, hosts[0], names.parse_names(hosts)
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{kind}-cert.pem").write_bytes(certs.cert_pem(cert))
    (out / f"{kind}-key.pem").write_bytes(certs.key_pem(key))
    return out / f"{kind}-cert.pem", out / f"{kind}-key.pem"


def test_real_dockerd_serves_mutual_tls_to_a_strict_client(sandbox: Path, dockerd: Any) -> None:
    assert run_certkit("init-ca").returncode == 0
    store = CAStore("default")
    files = sandbox / "pki"
    server_cert, server_key = _leaf(store, files, "server", ["localhost", "127.0.0.1"])
    client_cert, client_key = _leaf(store, files, "client", ["client"])

    # openssl agrees the chain is valid under strict X.509 rules.
    for leaf in (server_cert, client_cert):
        ok = subprocess.run(
            ["openssl", "verify", "-x509_strict", "-CAfile", str(store.cert_path), str(leaf)],
            capture_output=True,
            text=True,
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr

    tls = tlsverify_settings(store.cert_path, server_cert, server_key)
    daemon = write_tcp_daemon_json(sandbox, tls)
    dockerd(**daemon.start_args())
    port = daemon.port

    ctx = strict_context(store.cert_path, client_cert, client_key)
    status, body = tls_get("127.0.0.1", port, "/_ping", ctx, server_hostname="localhost")
    assert (status, body) == (200, b"OK")

    assert refused("127.0.0.1", port, strict_context(store.cert_path), server_hostname="localhost")
