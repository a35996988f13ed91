"""Revocation and roles on a real dockerd: certkit's plugin, added by `certkit policy push`
(daemon.json + SIGHUP, no restart), enforcing `certkit revoke` and `--role read-only`.

The daemon runs in a sandbox (vfs, no bridge, its own data-root); its daemon.json is
``ROOT/etc/docker/daemon.json`` so ``policy push --root ROOT`` edits the file it reads.
dockerd finds plugins only in /run/docker/plugins: the plugin gets a unique name there,
and runs as the process systemd would start (the lab test covers the units themselves).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import (
    REPO,
    Dockerd,
    cli_json,
    cli_ok,
    dockerd_available,
    run_certkit,
    sandbox_daemon_settings,
    short_tempdir,
    start_dockerd,
    strict_context,
    tlsverify_settings,
    write_json,
)

from certkit import ca, names
from certkit.authz import plugin
from certkit.store import CAStore

PLUGIN_DIR = Path("/run/docker/plugins")


@dataclass
class Host:
    base: Path
    root: Path  # the sandbox standing in for /
    home: Path  # CERTKIT_HOME
    config: Path  # DOCKER_CONFIG holding the contexts
    port: int
    plugin: str
    unix: str
    dockerd: Dockerd
    proc: subprocess.Popen[bytes]  # the plugin
    pid_before: int  # dockerd's PID before the plugin was added

    @property
    def policy(self) -> Path:
        return self.root / "etc/docker/certkit/authz.json"

    def docker(self, context: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_CONFIG": str(self.config), "DOCKER_BUILDKIT": "0"}
        env.pop("DOCKER_HOST", None)
        cmd = [
            "docker",
            *(["-H", f"unix://{self.unix}"] if context == "unix" else ["--context", context]),
        ]
        return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60)

    def ok(self, context: str, *args: str) -> str:
        r = self.docker(context, *args)
        assert r.returncode == 0, f"docker {' '.join(args)} as {context}: {r.stderr}"
        return r.stdout


def tiny_image(base: Path) -> Path:
    """A tiny image: sh, echo and sleep with their libraries (no registry needed)."""
    rootfs = base / "rootfs"
    for prog in ("/bin/sh", "/usr/bin/echo", "/usr/bin/sleep"):
        libs = subprocess.run(["ldd", prog], capture_output=True, text=True, check=False).stdout
        for path in [prog, *(w for w in libs.split() if w.startswith("/"))]:
            dest = rootfs / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest)
    tar = base / "image.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    return tar


def _start_plugin(name: str, policy: Path, log: Path) -> subprocess.Popen[bytes]:
    sock = PLUGIN_DIR / f"{name}.sock"
    PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-I", plugin.__file__, "--policy", str(policy), "--socket", str(sock)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    return proc


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    if not dockerd_available() or not shutil.which("docker"):
        if os.environ.get("CERTKIT_REQUIRE_DOCKERD") == "1":
            pytest.fail("dockerd and docker are required (CERTKIT_REQUIRE_DOCKERD=1)")
        pytest.skip("dockerd or the docker CLI is not installed")
    base = short_tempdir()
    home, root, config = base / "home", base / "root", base / "dc"
    name = f"ck-test-{uuid.uuid4().hex[:10]}"
    procs: list[subprocess.Popen[bytes]] = []
    daemons: list[Dockerd] = []
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CERTKIT_HOME", str(home))
            ca.init_ca()
            server = ca.issue(
                CAStore(), "server", "localhost", "localhost", names.parse_names(["localhost"])
            )
            (base / "ca.pem").write_bytes(CAStore().trust_bundle_pem())
        from support import free_port

        port, unix = free_port(), str(base / "docker.sock")
        daemon_json = root / "etc/docker/daemon.json"
        write_json(daemon_json, {
            **sandbox_daemon_settings(base),
            "hosts": [f"unix://{unix}", f"tcp://127.0.0.1:{port}"],
            **tlsverify_settings(base / "ca.pem", server.cert_path, server.key_path),
        })  # fmt: skip
        procs.append(
            _start_plugin(name, root / "etc/docker/certkit/authz.json", base / "plugin.log")
        )
        d = start_dockerd(
            base, config_file=daemon_json, unix_socket=unix, tcp=[("127.0.0.1", port)]
        )
        daemons.append(d)
        h = Host(base, root, home, config, port, name, unix, d, procs[0], d.proc.pid)
        h.ok("unix", "import", str(tiny_image(base)), "ck-sleep:1")
        h.ok("unix", "run", "-d", "--network", "none", "--name", "s1", "ck-sleep:1",
             "/bin/sh", "-c", "echo hello from s1; exec /usr/bin/sleep 3600")  # fmt: skip
        yield h
    finally:
        for d in daemons:
            d.stop()
        for p in procs:
            p.terminate()
            p.wait(10)
        (PLUGIN_DIR / f"{name}.sock").unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pki(host: Host, monkeypatch: pytest.MonkeyPatch) -> Host:
    monkeypatch.setenv("CERTKIT_HOME", str(host.home))
    return host


def _context(h: Host, name: str, *extra: str) -> None:
    cli_ok("client-context", name, "--host", "localhost", "--port", str(h.port),
           "--docker-config", str(h.config), *extra)  # fmt: skip


def _served(h: Host) -> bytes:
    tls = h.base / "bob-tls"
    ctx = strict_context(h.base / "ca.pem", tls / "cert.pem", tls / "key.pem")
    with ssl_socket(h.port, ctx) as s:
        der = s.getpeercert(binary_form=True)
    assert der
    return der


def ssl_socket(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    import socket

    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def test_revoked_client_is_denied_others_and_the_unix_socket_work_no_restart(pki: Host) -> None:
    h = pki
    _context(h, "alice")
    _context(h, "bob")
    cli_ok("client-context", "bob-files", "--client-only", "--out", str(h.base / "bob-tls"))
    served = _served(h)
    assert h.ok("alice", "ps", "--format", "{{.Names}}").split() == ["s1"]  # no plugin yet

    (h.root / "etc/docker/daemon.json").chmod(0o600)
    pushed = cli_json("policy", "push", "local", "--root", str(h.root), "--plugin", h.plugin)
    assert pushed["pushed"][0]["registered"] is True
    assert (h.root / "etc/docker/daemon.json").stat().st_mode & 0o777 == 0o600  # kept
    config = json.loads((h.root / "etc/docker/daemon.json").read_text())
    assert config["authorization-plugins"] == [h.plugin]
    assert h.policy.stat().st_mode & 0o777 == 0o644
    # SIGHUP reloads it: no restart.  Wait for dockerd to say so.
    deadline = time.monotonic() + 10
    while "Reloaded configuration" not in h.dockerd.log():
        assert time.monotonic() < deadline, h.dockerd.log()[-2000:]
        time.sleep(0.1)
    assert h.ok("alice", "ps", "--format", "{{.Names}}").split() == ["s1"]

    started = time.monotonic()
    done = cli_json("revoke", "alice", "--reason", "laptop stolen")
    assert [p["host"] for p in done["push"]["pushed"]] == ["local"]
    r = h.docker("alice", "ps")
    took = time.monotonic() - started
    assert r.returncode != 0, (h.base / "plugin.log").read_text()
    assert f"authorization denied by plugin {h.plugin}: certificate revoked on " in r.stderr
    assert "(laptop stolen)" in r.stderr
    assert took < 10, took

    assert h.ok("bob", "ps", "--format", "{{.Names}}").split() == ["s1"]
    assert h.ok("unix", "ps", "--format", "{{.Names}}").split() == ["s1"]
    verify = run_certkit("verify", "--context", "alice", "--docker-config", str(h.config))
    assert verify.returncode == 1
    assert "FAIL  access" in verify.stdout and "certificate revoked on" in verify.stdout
    assert h.dockerd.proc.pid == h.pid_before and h.dockerd.proc.poll() is None
    assert h.ok("bob", "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", "s1").split() == [
        "true",
        "0",
    ]
    assert _served(h) == served  # the same certificate: nothing about TLS changed
    log = (h.base / "plugin.log").read_text()
    assert "deny identity=alice serial=" in log and "method=GET path=/containers/json" in log
    assert "allow identity=bob" in log

    # status and policy show: the host is current; a later change leaves it behind.
    assert cli_json("status")["policy_behind"] == {}
    cli_ok("revoke", "bob-files", "--no-push")
    assert cli_json("status")["policy_behind"] == {"default": ["local"]}
    assert "POLICY BEHIND local" in run_certkit("status").stdout
    doctor = run_certkit("doctor", "--root", str(h.root)).stdout
    assert "WARN  authz-policy          host local enforces an older policy" in doctor
    assert "certkit policy push local" in doctor
    cli_ok("policy", "push", "local")  # the recorded host: no --root needed again
    assert cli_json("status")["policy_behind"] == {}


def test_read_only_role_inspects_but_cannot_run_exec_cp_or_build(pki: Host, tmp_path: Path) -> None:
    h = pki
    _context(h, "rita", "--role", "read-only")
    cli_ok("policy", "push", "local", "--root", str(h.root), "--plugin", h.plugin)
    assert h.ok("rita", "ps", "--format", "{{.Names}}").split() == ["s1"]
    assert h.ok("rita", "inspect", "-f", "{{.Name}}", "s1").strip() == "/s1"
    assert "hello from s1" in h.ok("rita", "logs", "s1")
    assert h.ok("rita", "images", "--format", "{{.Repository}}").split() == ["ck-sleep"]
    verify = run_certkit("verify", "--context", "rita", "--docker-config", str(h.config))
    assert "PASS  access" in verify.stdout and "role read-only where" in verify.stdout
    (tmp_path / "Dockerfile").write_text("FROM ck-sleep:1\n")
    for args, denied in [
        (
            ["run", "--rm", "--network", "none", "ck-sleep:1", "/usr/bin/echo", "x"],
            "POST /containers/create",
        ),
        (["exec", "s1", "/usr/bin/echo", "x"], "POST /containers/s1/exec"),
        (["cp", "s1:/usr/bin/echo", str(tmp_path / "echo")], "/containers/s1/archive"),
        (["build", "-t", "x", str(tmp_path)], "POST /build"),
        (["stop", "s1"], "POST /containers/s1/stop"),
    ]:
        r = h.docker("rita", *args)
        assert r.returncode != 0, args
        assert f"authorization denied by plugin {h.plugin}: role read-only may not" in r.stderr, (
            r.stderr
        )
        assert denied in r.stderr, r.stderr
    assert not (tmp_path / "echo").exists()
    assert h.ok("unix", "inspect", "-f", "{{.State.Running}}", "s1").strip() == "true"


def test_a_corrupt_policy_keeps_the_last_good_one(pki: Host) -> None:
    h = pki
    _context(h, "carl")
    _context(h, "dora")
    cli_ok("revoke", "carl", "--no-push")
    cli_ok("policy", "push", "local", "--root", str(h.root), "--plugin", h.plugin)
    assert "certificate revoked" in h.docker("carl", "ps").stderr
    h.policy.write_text('{"format": 1, "revoked": [')  # a truncated file
    assert "certificate revoked" in h.docker("carl", "ps").stderr
    assert h.ok("dora", "ps", "--format", "{{.Names}}").split() == ["s1"]
    assert "keeping the previous policy" in (h.base / "plugin.log").read_text()
    cli_ok("policy", "push", "local")  # the recorded host: the good policy again
    assert json.loads(h.policy.read_text())["format"] == 1


def test_push_refuses_to_register_a_plugin_whose_socket_is_missing(pki: Host) -> None:
    root = pki.base / "other-root"
    write_json(root / "etc/docker/daemon.json", {"debug": False})
    r = run_certkit("policy", "push", "other", "--root", str(root), "--plugin", "ck-missing-x")
    assert r.returncode == 1
    assert (
        "the plugin socket /run/docker/plugins/ck-missing-x.sock is missing" in r.stdout + r.stderr
    )
    assert "authorization-plugins" not in (root / "etc/docker/daemon.json").read_text()


def test_plugin_latency_with_and_without(pki: Host) -> None:
    """The plugin's added latency per request (p50/p99); printed for the report."""
    sys.path.insert(0, str(REPO / "scripts"))
    from benchlib import authz as bench

    h = pki
    tls = h.base / "lat-tls"
    cli_ok("client-context", "lat", "--client-only", "--out", str(tls))
    cli_ok("policy", "push", "local", "--root", str(h.root), "--plugin", h.plugin)
    ctx = strict_context(h.base / "ca.pem", tls / "cert.pem", tls / "key.pem")
    with_plugin = bench.request_latencies("localhost", h.port, ctx, 400)
    daemon_json = h.root / "etc/docker/daemon.json"
    config = json.loads(daemon_json.read_text())
    daemon_json.write_text(
        json.dumps({k: v for k, v in config.items() if k != "authorization-plugins"})
    )
    os.kill(h.dockerd.proc.pid, signal.SIGHUP)
    time.sleep(1)
    without = bench.request_latencies("localhost", h.port, ctx, 400)
    result = bench.summary(without, with_plugin)
    print("authz plugin latency (GET /version, kept-alive TLS):", json.dumps(result))
    assert result["p50_with_ms"] > 0 and result["p50_without_ms"] > 0
    # The plugin alone, as dockerd asks it (a request with a peer certificate, decided).
    pem = (tls / "cert.pem").read_text().split("-----END CERTIFICATE-----")[0]
    pem += "-----END CERTIFICATE-----\n"
    request = {"User": "lat", "RequestMethod": "GET", "RequestUri": "/v1.41/containers/json",
               "RequestPeerCertificates": [base64.b64encode(pem.encode()).decode()]}  # fmt: skip
    own = bench.plugin_latencies(str(PLUGIN_DIR / f"{h.plugin}.sock"), request, 1000)
    p50, p99 = bench.percentile(own, 50), bench.percentile(own, 99)
    print(f"plugin alone (AuthZReq + AuthZRes, kept-alive): p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    assert 0 < p50 <= p99
    daemon_json.write_text(json.dumps(config))
    os.kill(h.dockerd.proc.pid, signal.SIGHUP)


def test_an_unreachable_plugin_denies_everything_and_doctor_names_the_recovery(
    pki: Host,
) -> None:
    """Last in the module: it stops the plugin."""
    h = pki
    cli_ok("policy", "push", "local", "--root", str(h.root), "--plugin", h.plugin)
    checks = json.loads(run_certkit("doctor", "--root", str(h.root), "--json").stdout)["checks"]
    answers = f"{h.plugin} answers on /run/docker/plugins/{h.plugin}.sock"
    assert {"name": "authz-plugin", "status": "PASS", "message": answers} in checks

    h.proc.terminate()
    h.proc.wait(10)
    (PLUGIN_DIR / f"{h.plugin}.sock").unlink(missing_ok=True)
    r = h.docker("unix", "ps")
    assert r.returncode != 0 and h.plugin in r.stderr, r.stderr  # even the unix socket
    doctor = run_certkit("doctor", "--root", str(h.root))
    assert doctor.returncode == 1
    assert "FAIL  authz-plugin          dockerd denies every request" in doctor.stdout
    daemon_json = h.root / "etc/docker/daemon.json"
    assert f"remove '{h.plugin}' from authorization-plugins in {daemon_json}" in doctor.stdout
    assert f"kill -HUP $(cat {h.base / 'docker.pid'})" in doctor.stdout

    # The recovery, as doctor words it: no restart.
    config = json.loads(daemon_json.read_text())
    config["authorization-plugins"].remove(h.plugin)
    daemon_json.write_text(json.dumps(config))
    os.kill(int((h.base / "docker.pid").read_text()), signal.SIGHUP)
    deadline = time.monotonic() + 10
    while h.docker("unix", "ps").returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert h.dockerd.proc.pid == h.pid_before
    assert h.ok("unix", "inspect", "-f", "{{.State.Running}}", "s1").strip() == "true"
