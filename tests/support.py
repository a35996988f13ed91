"""Test helpers: run the real CLI, start a real dockerd, talk strict TLS.

Imported by the tests directly (``from support import ...``) and through the
fixtures in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def run_certkit(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m certkit ARGS`` as a user would; never raises on failure."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "certkit", *args],
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def cli_ok(*args: str, env: dict[str, str] | None = None) -> str:
    """Run certkit, assert it exits 0 (showing its output when not), return its stdout."""
    r = run_certkit(*args, env=env)
    assert r.returncode == 0, f"certkit {' '.join(args)}: {r.stdout}{r.stderr}"
    return r.stdout


def cli_json(*args: str) -> Any:
    """:func:`cli_ok` with ``--json``: the parsed document."""
    return json.loads(cli_ok(*args, "--json"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def short_tempdir(prefix: str = "ck") -> Path:
    """A short /tmp dir: containerd's socket path must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def wait_port(
    host: str, port: int, timeout: float = 30, proc: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {host}:{port} opened")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


def unix_ping(sock_path: str, timeout: float = 2) -> bool:
    """True when a Docker API answers ``/_ping`` with OK on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = s.recv(4096)
            return b" 200 " in data.split(b"\r\n", 1)[0]
    except OSError:
        return False


def sandbox_daemon_settings(base: Path) -> dict[str, Any]:
    """daemon.json keys a test dockerd needs to run beside anything else on the machine."""
    return {
        "data-root": str(base / "data"),
        "exec-root": str(base / "exec"),
        "pidfile": str(base / "docker.pid"),
        "iptables": False,
        "ip6tables": False,
        "bridge": "none",
        "storage-driver": "vfs",
    }


@dataclass
class TCPDaemonConfig:
    """A test daemon.json serving a unix socket and a free loopback TCP port."""

    path: Path
    unix_socket: str
    port: int

    def start_args(self) -> dict[str, Any]:
        """The keyword arguments of :func:`start_dockerd` (and the ``dockerd`` fixture)."""
        return {
            "config_file": self.path,
            "unix_socket": self.unix_socket,
            "tcp": [("127.0.0.1", self.port)],
        }


def write_tcp_daemon_json(base: Path, settings: dict[str, Any]) -> TCPDaemonConfig:
    """Write ``base/daemon.json``: the sandbox keys, the two listeners, then ``settings``."""
    port = free_port()
    sock = str(base / "docker.sock")
    config = base / "daemon.json"
    write_json(
        config,
        {
            **sandbox_daemon_settings(base),
            "hosts": [f"unix://{sock}", f"tcp://127.0.0.1:{port}"],
            **settings,
        },
    )
    return TCPDaemonConfig(config, sock, port)


def tlsverify_settings(ca: Path | str, cert: Path | str, key: Path | str) -> dict[str, Any]:
    """The daemon.json keys certkit installs: mutual TLS against ``ca``."""
    return {"tlsverify": True, "tlscacert": str(ca), "tlscert": str(cert), "tlskey": str(key)}


@dataclass
class Dockerd:
    """A running test dockerd (see :func:`start_dockerd`)."""

    proc: subprocess.Popen[bytes]
    base: Path
    log_path: Path
    unix_socket: str | None
    tcp: list[tuple[str, int]] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.proc, timeout=20)
        # containerd is started by dockerd in the same process group: make sure it is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def stop_process_group(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM a process started with ``start_new_session``, SIGKILL it after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def dockerd_available() -> bool:
    return shutil.which("dockerd") is not None


def start_dockerd(
    base: Path,
    config_file: Path | None = None,
    args: list[str] | None = None,
    unix_socket: str | None = None,
    tcp: list[tuple[str, int]] | None = None,
    timeout: float = 60,
) -> Dockerd:
    """Start ``dockerd [--config-file FILE] ARGS`` in its own process group and wait for it.

    ``unix_socket`` (when the daemon serves one) is polled for ``/_ping``;
    every ``tcp`` address is waited for.  The caller stops it (the fixture does).
    """
    cmd = ["dockerd"]
    if config_file is not None:
        cmd += ["--config-file", str(config_file)]
    cmd += args or []
    log_path = base / "dockerd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    d = Dockerd(proc, base, log_path, unix_socket, list(tcp or []))
    deadline = time.monotonic() + timeout
    try:
        if unix_socket:
            while not unix_ping(unix_socket):
                if proc.poll() is not None:
                    raise RuntimeError(f"dockerd exited with {proc.returncode}:\n{d.log()[-3000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"dockerd did not answer on {unix_socket}:\n{d.log()[-3000:]}"
                    )
                time.sleep(0.1)
        for host, port in d.tcp:
            wait_port(host, port, max(1.0, deadline - time.monotonic()), proc)
    except BaseException:
        d.stop()
        raise
    return d


def strict_context(
    ca: Path | str, cert: Path | str | None = None, key: Path | str | None = None
) -> ssl.SSLContext:
    """A client context as strict as Python 3.13's default: VERIFY_X509_STRICT, TLS 1.2+."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


def tls_get(
    host: str, port: int, path: str, ctx: ssl.SSLContext, server_hostname: str | None = None
) -> tuple[int, bytes]:
    """GET ``path`` over TLS; returns (status, body).  Raises ssl/OSError on refusal."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=server_hostname or host) as s,
    ):
        s.sendall(request.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def refused(host: str, port: int, ctx: ssl.SSLContext, server_hostname: str | None = None) -> bool:
    """True when the server refuses the connection (handshake or first request fails)."""
    try:
        status, _ = tls_get(host, port, "/_ping", ctx, server_hostname)
    except (ssl.SSLError, OSError):
        return True
    return status != 200


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
