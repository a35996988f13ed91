"""The latency an authorization plugin adds to each Docker API request.

:func:`request_latencies` times ``GET /version`` over one kept-alive mutual-TLS
connection (what the docker CLI's one request costs, without its start-up);
:func:`cli_latencies` times whole ``docker version`` runs.  Run each once with
the plugin registered and once without, and compare with :func:`summary`.
Standard library only, so tests and scripts/bench can both use it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import statistics
import subprocess
import time
from typing import Any


def request_latencies(host: str, port: int, ctx: ssl.SSLContext, runs: int = 300) -> list[float]:
    """Milliseconds of each of ``runs`` ``GET /version`` on one TLS connection."""
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
    out = []
    try:
        for _ in range(runs + 5):
            start = time.perf_counter()
            conn.request("GET", "/v1.41/version")
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET /version answered {resp.status}")
            out.append((time.perf_counter() - start) * 1000)
    finally:
        conn.close()
    return out[5:]  # the first ones pay for the handshake and warm-up


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


def plugin_latencies(sock_path: str, request: dict[str, object], runs: int = 1000) -> list[float]:
    """Milliseconds of each AuthZReq + AuthZRes pair (what dockerd asks per API request)
    sent straight to the plugin's socket on one kept-alive connection."""
    conn = _UnixHTTP(sock_path)
    body = json.dumps(request)
    out = []
    try:
        for _ in range(runs + 5):
            start = time.perf_counter()
            for endpoint in ("/AuthZPlugin.AuthZReq", "/AuthZPlugin.AuthZRes"):
                conn.request("POST", endpoint, body, {"Content-Type": "application/json"})
                conn.getresponse().read()
            out.append((time.perf_counter() - start) * 1000)
    finally:
        conn.close()
    return out[5:]


def cli_latencies(context: str, docker_config: str, runs: int = 30) -> list[float]:
    """Milliseconds of each of ``runs`` ``docker --context CONTEXT version`` runs."""
    env = {**os.environ, "DOCKER_CONFIG": docker_config}
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            ["docker", "--context", context, "version", "--format", "{{.Server.Version}}"],
            env=env,
            check=True,
            capture_output=True,
        )
        out.append((time.perf_counter() - start) * 1000)
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(without: list[float], with_plugin: list[float]) -> dict[str, float]:
    """p50 and p99 of both runs, and what the plugin added (milliseconds)."""
    p50_0, p99_0 = statistics.median(without), percentile(without, 99)
    p50_1, p99_1 = statistics.median(with_plugin), percentile(with_plugin, 99)
    return {
        "p50_without_ms": round(p50_0, 3),
        "p99_without_ms": round(p99_0, 3),
        "p50_with_ms": round(p50_1, 3),
        "p99_with_ms": round(p99_1, 3),
        "p50_added_ms": round(p50_1 - p50_0, 3),
        "p99_added_ms": round(p99_1 - p99_0, 3),
    }


# ---------------------------------------------------------------- revoke -> denial on N hosts


def _certkit(*args: str) -> str:
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "certkit", *args], capture_output=True, text=True, timeout=1200
    )
    if done.returncode != 0:
        raise SystemExit(f"certkit {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def _client(work: str, name: str) -> ssl.SSLContext:
    """``name``'s client certificate (``client-context --client-only``) as a TLS context."""
    out = os.path.join(work, name)
    _certkit("client-context", name, "--client-only", "--out", out)
    ctx = ssl.create_default_context(cafile=os.path.join(out, "ca.pem"))
    ctx.load_cert_chain(os.path.join(out, "cert.pem"), os.path.join(out, "key.pem"))
    return ctx


def _status(address: str, ctx: ssl.SSLContext) -> int:
    conn = http.client.HTTPSConnection(address, 2376, context=ctx, timeout=10)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status
    finally:
        conn.close()


def _until_denied(addresses: list[str], ctx: ssl.SSLContext, started: float) -> float:
    """Seconds from ``started`` until every address answers 403 (polled every 50 ms)."""
    left = set(addresses)
    while left:
        left = {a for a in left if _status(a, ctx) != 403}
        if left:
            if time.monotonic() - started > 300:
                raise SystemExit(f"still allowed after 300 s: {sorted(left)}")
            time.sleep(0.05)
    return time.monotonic() - started


def bench_revoke(work: str, count: int = 12) -> dict[str, object]:
    """Boot ``count`` lab hosts (tests/lab.py), install TLS with ``fleet apply``, put the
    plugin on each (``policy push``), then time revoke -> denial on every host: pushed by
    ``certkit revoke``, and by ``revoke --no-push`` + ``fleet apply``; and the plugin's
    added latency on one host (kept-alive ``GET /version`` and whole ``docker version``)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from lab import booted_lab
    from test_fleet import inventory

    os.environ["CERTKIT_HOME"] = os.path.join(work, "home")
    os.environ["DOCKER_CONFIG"] = os.path.join(work, "docker")
    _certkit("init-ca")
    result: dict[str, object] = {"hosts": count}
    with booted_lab() as lab:
        t0 = time.monotonic()
        hosts = lab.boot(count)
        result["boot_s"] = round(time.monotonic() - t0, 1)
        inv = str(inventory(Path(work) / "hosts.ini", hosts))
        _certkit("fleet", "apply", inv, "--restart")
        for i, h in enumerate(hosts, 1):
            _certkit("policy", "push", f"h{i}", *h.cli_args("root"))
        addresses = [h.address for h in hosts]
        alice, bob = _client(work, "alice"), _client(work, "bob")
        assert all(_status(a, alice) == 200 for a in addresses)
        known = " ".join(str(h.known_hosts) for h in hosts)
        started = time.monotonic()
        _certkit(
            "revoke", "alice", "--identity", str(hosts[0].key),
            "--ssh-option", f"UserKnownHostsFile={known}", "--ssh-option", "IdentitiesOnly=yes",
        )  # fmt: skip
        result["revoke_push_s"] = round(time.monotonic() - started, 2)
        result["revoke_to_denial_s"] = round(_until_denied(addresses, alice, started), 2)
        _certkit("revoke", "bob", "--no-push")
        started = time.monotonic()
        _certkit("fleet", "apply", inv)
        result["fleet_apply_s"] = round(time.monotonic() - started, 2)
        result["fleet_apply_to_denial_s"] = round(_until_denied(addresses, bob, started), 2)
        result["latency"] = _lab_latency(work, hosts[0], hosts[1])
    return result


def _lab_latency(work: str, with_host: Any, without_host: Any) -> dict[str, object]:
    """The plugin's added latency: two identical lab hosts, the plugin taken off the second
    (daemon.json + SIGHUP, the docs' recovery line), measured in alternating rounds so the
    shared machine's load drifts the same way on both."""
    ctx = _client(work, "lat")
    config = os.environ["DOCKER_CONFIG"]
    for name, h in (("lat-with", with_host), ("lat-without", without_host)):
        _certkit("client-context", name, "--host", str(h.address))
    without_host.check(
        'python3 -c \'import json; p="/etc/docker/daemon.json"; c=json.load(open(p)); '
        'c.pop("authorization-plugins"); json.dump(c, open(p, "w"))\' && '
        "kill -HUP $(cat /var/run/docker.pid) && sleep 2"
    )
    req: dict[str, list[float]] = {"with": [], "without": []}
    cli: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(8):
        req["with"] += request_latencies(str(with_host.address), 2376, ctx, 50)
        req["without"] += request_latencies(str(without_host.address), 2376, ctx, 50)
        cli["with"] += cli_latencies("lat-with", config, 5)
        cli["without"] += cli_latencies("lat-without", config, 5)
    return {
        "get_version_kept_alive": summary(req["without"], req["with"]),
        "docker_version_cli": summary(cli["without"], cli["with"]),
    }


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="revoke -> denial on N lab hosts (issue 28)")
    parser.add_argument("--hosts", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ck-authz-bench-") as tmp:
        print(json.dumps(bench_revoke(tmp, args.hosts), indent=2))
