"""`certkit setup` end to end, then everything that talks to the daemon it set up.

One module-wide run: ``certkit setup localhost --install --root DIR --method
daemon-json --context ck`` against a daemon.json that already holds a
sandboxed dockerd's settings, then a real dockerd started from that very
daemon.json.  The tests reach it with the real docker CLI, with docker-py
through :func:`certkit.api.docker_client` while ``REQUESTS_CA_BUNDLE`` points
at an unrelated CA, with ``certkit verify``, ``certkit ci bootstrap --check``
and ``certkit status --format prometheus --verify``; and run setup again to
see that it changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import (
    Dockerd,
    cli_ok,
    dockerd_available,
    free_port,
    run_certkit,
    sandbox_daemon_settings,
    short_tempdir,
    start_dockerd,
    write_json,
)

from certkit import api


@dataclass
class Live:
    base: Path
    root: Path  # --root: the sandbox standing in for /
    env: dict[str, str]  # CERTKIT_HOME and DOCKER_CONFIG of the run
    port: int
    first: dict[str, object]  # the first run's --json
    dockerd: Dockerd

    @property
    def setup_args(self) -> list[str]:
        return setup_args(self.root, self.port)


def setup_args(root: Path, port: int) -> list[str]:
    """The issue's command line (a docker context name needs two characters: ck, not c)."""
    return [
        "setup", "localhost", "--install", "--root", str(root),
        "--method", "daemon-json", "--context", "ck",
        "--listen", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    if not dockerd_available():
        if os.environ.get("CERTKIT_REQUIRE_DOCKERD") == "1":
            pytest.fail("dockerd is required (CERTKIT_REQUIRE_DOCKERD=1) but not installed")
        pytest.skip("dockerd is not installed")
    base = short_tempdir()
    root = base / "r"
    sock = str(base / "d.sock")
    config = root / "etc" / "docker" / "daemon.json"
    write_json(config, {**sandbox_daemon_settings(base), "hosts": [f"unix://{sock}"]})
    env = {"CERTKIT_HOME": str(base / "home"), "DOCKER_CONFIG": str(base / "docker")}
    port = free_port()
    r = run_certkit(*setup_args(root, port), "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    d = start_dockerd(base, config_file=config, unix_socket=sock, tcp=[("127.0.0.1", port)])
    try:
        yield Live(base, root, env, port, json.loads(r.stdout), d)
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def here(live: Live, monkeypatch: pytest.MonkeyPatch) -> Live:
    """The module's run, with this process's CERTKIT_HOME and DOCKER_CONFIG pointing at it."""
    for k, v in live.env.items():
        monkeypatch.setenv(k, v)
    return live


def docker(live: Live, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    return subprocess.run(
        ["docker", *args], env={**os.environ, **live.env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def unrelated_ca(tmp_path: Path) -> str:
    """The certificate of a CA that signed nothing the daemon uses."""
    home = tmp_path / "elsewhere"
    r = run_certkit("init-ca", "--json", env={"CERTKIT_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout)["cert_path"])


def tree(*dirs: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under ``dirs``: content, mode and modification time."""
    return {
        str(p): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
        for d in dirs
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# ---------------------------------------------------------------- setup itself


def test_first_run_did_the_three_steps(live: Live) -> None:
    first = live.first
    assert first["changed"] is True and first["ca"] == {"name": "default", "created": True}
    server = first["server"]
    assert isinstance(server, dict) and server["install"]["method"] == "daemon-json"
    assert first["restart_needed"] is True and first["verify"] is None  # --root: no restart
    context = first["context"]
    assert isinstance(context, dict) and context["written"] is True
    assert first["endpoint"] == f"tcp://localhost:{live.port}"
    config = json.loads((Path(live.env["DOCKER_CONFIG"]) / "config.json").read_text())
    assert config["currentContext"] == "ck"


def test_docker_cli_reaches_the_daemon_through_the_context(live: Live) -> None:
    r = docker(live, "--context", "ck", "version", "--format", "{{.Server.Version}}")
    assert r.returncode == 0 and r.stdout.strip(), r.stdout + r.stderr
    selected = docker(live, "version", "--format", "{{.Server.Version}}")  # currentContext
    assert selected.returncode == 0 and selected.stdout == r.stdout, selected.stderr


def test_second_run_changes_nothing(live: Live) -> None:
    dirs = (live.root, live.base / "home", live.base / "docker")
    before = tree(*dirs)
    r = run_certkit(*live.setup_args, "--json", env=live.env)
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads(r.stdout)
    assert again["changed"] is False and again["server"] is None
    assert again["server_unchanged"]["serial"] == live.first["server"]["serial"]  # type: ignore[index]
    assert again["context"]["written"] is False and again["context"]["selected_now"] is False
    assert tree(*dirs) == before
    human = run_certkit(*live.setup_args, env=live.env)
    assert human.returncode == 0 and "Nothing changed." in human.stdout
    assert tree(*dirs) == before


def test_a_context_of_that_name_pointing_elsewhere_is_refused(live: Live) -> None:
    home = live.base / "home"
    before = tree(live.root, home, live.base / "docker")
    args = [a if a != str(live.port) else str(live.port + 1) for a in live.setup_args]
    r = run_certkit(*args, env=live.env)
    assert r.returncode == 2 and "already exists and points at" in r.stderr
    assert tree(live.root, home, live.base / "docker") == before


def test_where_to_install_must_be_said(live: Live) -> None:
    r = run_certkit("setup", "localhost", env=live.env)
    assert r.returncode == 2 and "--ssh [USER@]HOST" in r.stderr and "--install" in r.stderr


# ---------------------------------------------------------------- docker-py


def test_docker_client_works_with_requests_ca_bundle_set(
    here: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker
    import requests

    other = unrelated_ca(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other)
    monkeypatch.setenv("CURL_CA_BUNDLE", other)
    client = api.docker_client("ck")
    assert client.version()["Version"]
    assert client.api.trust_env is False
    assert api.docker_client().ping() is True  # the selected context by default
    # The same files the way most docker-py code uses them: the variables win (the trap).
    tls_dir = api.read_context("ck").tls_dir
    tls = docker.tls.TLSConfig(
        client_cert=(str(tls_dir / "cert.pem"), str(tls_dir / "key.pem")),
        ca_cert=str(tls_dir / "ca.pem"),
    )
    plain = docker.DockerClient(base_url=f"tcp://localhost:{here.port}", tls=tls, version="1.41")
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        plain.version()


def test_docker_client_refuses_an_unknown_context(here: Live) -> None:
    with pytest.raises(api.UsageError, match="No docker context named 'nope'"):
        api.docker_client("nope")


def test_verify_reaches_it_with_docker_py_and_says_how_to_fix_the_environment(
    live: Live, tmp_path: Path
) -> None:
    other = unrelated_ca(tmp_path)
    args = ("verify", "--context", "ck", "--insecure-port", "0", "--json")
    clean = json.loads(run_certkit(*args, env=live.env).stdout)
    checks = {c["name"]: c for c in clean["checks"]}
    assert clean["ok"] is True and checks["docker-py"]["status"] == "PASS"
    assert "docker-py-env" not in checks
    r = run_certkit(*args, env={**live.env, "REQUESTS_CA_BUNDLE": other})
    assert r.returncode == 0, r.stdout + r.stderr
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["docker-py"]["status"] == "PASS"
    advice = checks["docker-py-env"]
    assert advice["status"] == "WARN" and "REQUESTS_CA_BUNDLE is set" in advice["message"]
    assert 'from_context("ck", version=' in advice["message"]
    assert "client.api.trust_env = False" in advice["message"]


def test_ci_bootstrap_check_proves_the_connection(live: Live, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    r = run_certkit(
        "ci", "export", "deploy", "--host", "localhost", "--port", str(live.port),
        "--out", str(secret), env=live.env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    job = {
        "CERTKIT_BUNDLE": secret.read_text(),
        "DOCKER_CONFIG": str(tmp_path / "runner"),
        "REQUESTS_CA_BUNDLE": unrelated_ca(tmp_path),
    }
    r = run_certkit("ci", "bootstrap", "--check", "--json", env=job)
    assert r.returncode == 0, r.stdout + r.stderr
    check = json.loads(r.stdout)["check"]
    assert check["context"] == "deploy" and check["engine"] and check["api_version"]
    human = run_certkit("ci", "bootstrap", "--check", env=job)
    assert human.returncode == 0 and "Checked: docker-py reached Docker" in human.stdout


def test_ci_bootstrap_check_fails_when_the_daemon_is_unreachable(
    live: Live, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    closed = free_port()
    r = run_certkit(
        "ci", "export", "nowhere", "--host", "localhost", "--port", str(closed),
        "--out", str(secret), env=live.env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    job = {"CERTKIT_BUNDLE": secret.read_text(), "DOCKER_CONFIG": str(tmp_path / "runner")}
    r = run_certkit("ci", "bootstrap", "--check", env=job)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"could not reach tcp://localhost:{closed}" in r.stderr, r.stderr
    assert "Connection refused" in r.stderr


def test_a_context_another_ca_wrote_is_not_replaced(live: Live) -> None:
    r = run_certkit("init-ca", "--ca", "other", env=live.env)
    assert r.returncode == 0, r.stderr
    r = run_certkit(
        "client-context", "theirs", "--host", "localhost", "--port", str(live.port),
        "--ca", "other", env=live.env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    before = tree(live.root, live.base / "home", live.base / "docker")
    args = [a if a != "ck" else "theirs" for a in live.setup_args]
    r = run_certkit(*args, env=live.env)
    assert r.returncode == 2 and "was not written by CA 'default'" in r.stderr, r.stderr
    assert tree(live.root, live.base / "home", live.base / "docker") == before


# ---------------------------------------------------------------- metrics


def test_status_prometheus_verify_audits_the_installed_endpoint(live: Live, tmp_path: Path) -> None:
    """With two contexts on the endpoint (``theirs`` of another CA, above), the store's wins."""
    r = run_certkit("status", "--format", "prometheus", "--verify", env=live.env)
    assert r.returncode == 0, r.stderr
    found = {f.name: f.samples for f in text_string_to_metric_families(r.stdout)}
    audited = {
        (s.labels["host"], s.labels["port"]): s.value
        for s in found["certkit_endpoint_verify_success"]
    }
    assert audited == {("localhost", str(live.port)): 1}
    out = tmp_path / "certkit.prom"
    args = ("status", "--format", "prometheus", "--verify", "--out", str(out), "--json")
    r = run_certkit(*args, env=live.env)
    (endpoint,) = json.loads(r.stdout)["endpoints"]
    assert endpoint["ok"] is True and "(context ck)" in endpoint["message"], endpoint


# ---------------------------------------------------------------- without a daemon


def test_a_host_certkit_refuses_leaves_no_ca_behind(certkit_home: Path, tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "etc" / "docker").mkdir(parents=True)
    (root / "etc" / "docker" / "daemon.json").write_text("{not json")
    r = run_certkit("setup", "docker1.example.com", "--install", "--root", str(root))
    assert r.returncode == 2 and "daemon.json" in r.stderr and "Traceback" not in r.stderr
    assert not certkit_home.exists() or not any(certkit_home.rglob("ca.pem"))
    assert [p.name for p in root.rglob("*") if p.is_file()] == ["daemon.json"]


def _next_output(fd: int, deadline: float) -> bytes:
    """What the child wrote next on its terminal (b"": it closed it, or the deadline passed)."""
    if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        return b""
    with contextlib.suppress(OSError):  # EIO: the child closed the terminal
        return os.read(fd, 4096)
    return b""


def _setup_on_a_terminal(root: Path, passphrase: str) -> tuple[int, str]:
    """``certkit setup`` on a pseudo-terminal: each passphrase prompt after the first
    gets Ctrl-D (no answer).  Its exit status and everything it wrote on the terminal."""
    env = {k: v for k, v in os.environ.items() if k != "CERTKIT_CA_PASSPHRASE"}
    argv = [sys.executable, "-m", "certkit", "setup", "localhost", "--install", "--root",
            str(root), "--method", "daemon-json", "--context", "ck"]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling one, as a user's would be
        os.execve(sys.executable, argv, env)
    seen, answered, deadline = b"", 0, time.monotonic() + 120
    while chunk := _next_output(fd, deadline):
        seen += chunk
        while seen.count(b"CA passphrase:") > answered:
            os.write(fd, f"{passphrase}\n".encode() if answered == 0 else b"\x04")
            answered += 1
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_setup_with_an_encrypted_ca_asks_for_the_passphrase_once(
    certkit_home: Path, tmp_path: Path
) -> None:
    """The server's certificate and the client's are signed by one opening of the key."""
    cli_ok("init-ca", "--encrypt", env={"CERTKIT_CA_PASSPHRASE": "correct horse"})
    root = tmp_path / "r"
    (root / "etc" / "docker").mkdir(parents=True)
    code, tty = _setup_on_a_terminal(root, "correct horse")
    assert code == 0, tty
    assert tty.count("CA passphrase:") == 1
    assert "Context 'ck'" in tty and "Traceback" not in tty
    kinds = sorted(i["kind"] for i in json.loads(run_certkit("list", "--json").stdout))
    assert kinds == ["ca", "client", "server"]


def test_a_kill_inside_setup_keeps_every_commit_and_a_rerun_finishes(
    certkit_home: Path, tmp_path: Path
) -> None:
    """setup keeps its inventory connection open: a kill after the client's record was
    committed (the 4th transaction: CA, server issued installing, installed, client) loses
    none of them."""
    root = tmp_path / "r"
    (root / "etc" / "docker").mkdir(parents=True)
    args = ["setup", "localhost", "--install", "--root", str(root), "--context", "ck"]
    args += ["--method", "daemon-json"]
    r = run_certkit(*args, env={"CERTKIT_TEST_CRASH_AT": "after-commit#4"})
    assert r.returncode == -9, r.stdout + r.stderr  # SIGKILL, as a power cut would
    kinds = sorted(i["kind"] for i in json.loads(run_certkit("list", "--json").stdout))
    assert kinds == ["ca", "client", "server"]
    again = json.loads(cli_ok(*args, "--json"))
    assert again["ca"]["created"] is False and again["server"] is None
    assert again["context"]["written"] is True
    db = certkit_home / "cas" / "default"
    assert not [p.name for p in db.iterdir() if p.name.endswith(("-wal", "-shm"))]
