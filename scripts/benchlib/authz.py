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
