"""`renew server --restart --keep-containers` on a real dockerd running a real container.

The container survives the restart: same ID, same start time, same process,
still running; without the flag the restart is announced as stopping it (and
it does stop it).  Issue 29, "Done when" item 2.

Where it runs, and the one stand-in:

* The lab hosts have systemd but cannot run containers (nspawn's read-only cgroup
  v1 hierarchy: runc fails to apply its cgroup), so their test
  (tests/test_socket_method.py) checks the daemon side only.  This machine runs
  containers but has no systemd (PID 1 is not systemd, ``systemctl`` cannot
  connect).  So the "host" here is this machine inside a private mount
  namespace (``unshare -m``): its ``/etc/docker`` and ``/etc/systemd/system``
  are sandbox directories bound over the real ones, so certkit installs with
  ``--restart`` on root ``/`` exactly as on a server, and nothing outside the
  sandbox is written.
* ``systemctl`` is the stand-in, first on PATH: the few verbs certkit's host
  scripts use (``restart``/``reload``/``is-active``/``show -p MainPID`` of
  docker, ``daemon-reload``, ``reset-failed``) done on the sandbox dockerd the
  way Debian's unit does them (restart = SIGTERM, wait for exit, start, wait
  until it answers; reload = SIGHUP).  dockerd, containerd, the container, the
  docker CLI, certkit's scripts and the TLS check are all real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import (
    dockerd_available,
    free_port,
    run_certkit,
    sandbox_daemon_settings,
    short_tempdir,
    write_json,
)
from test_authz_dockerd import tiny_image

from certkit import certs
from certkit.origins import ServerOrigin
from certkit.store import CAStore

FAKE_SYSTEMCTL = r"""#!/bin/sh
# systemd's part for the sandbox dockerd (this machine has no systemd: see the test's docstring).
pid() { cat "$PIDFILE" 2>/dev/null; }
alive() { p="$(pid)"; [ -n "$p" ] && [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status"
}
up() { docker -H "unix://$SOCK" version >/dev/null 2>&1; }
start() {
  alive && return 0
  setsid sh -c 'exec dockerd --config-file /etc/docker/daemon.json' >>"$LOG" 2>&1 </dev/null &
  i=0; while ! up; do i=$((i+1)); [ $i -gt 600 ] && return 1; sleep 0.1; done
}
stop() {
  p="$(pid)"; [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null
  i=0; while alive; do i=$((i+1)); [ $i -gt 600 ] && return 1; sleep 0.1; done
}
last=""; for a in "$@"; do last="$a"; done
case "$1" in
  daemon-reload|reset-failed) exit 0 ;;
  is-active) alive ;;
  reload) kill -HUP "$(pid)" ;;
  show) pid ;;  # certkit asks for `show -p MainPID --value docker` only
  start) start ;;
  stop) stop ;;
  restart) echo "restart $last" >>"$CALLS"; stop && start ;;
  *) echo "systemctl stand-in: $* is not implemented" >&2; exit 1 ;;
esac
"""


@dataclass
class Host:
    """This machine in a private mount namespace, with a sandbox dockerd."""

    base: Path
    holder: subprocess.Popen[bytes]  # keeps the namespace alive
    sock: str
    port: int
    env: dict[str, str]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the namespace (as root, like a server's admin)."""
        r = subprocess.run(
            ["nsenter", "-t", str(self.holder.pid), "-m", "--", *argv],
            env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert not check or r.returncode == 0, f"{argv}: {r.stdout}{r.stderr}"
        return r

    def certkit(self, *args: str) -> str:
        import sys

        r = self.run(sys.executable, "-m", "certkit", *args)
        return r.stdout + r.stderr  # warnings go to stderr

    def docker(self, *args: str) -> str:
        return self.run("docker", "-H", f"unix://{self.sock}", *args).stdout.strip()

    def dockerd_pid(self) -> str:
        return (self.base / "docker.pid").read_text().strip()

    def container(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.docker("inspect", "-f", "{{json .State}}", name))
        state["Id"] = self.docker("inspect", "-f", "{{.Id}}", name)
        return state

    def served_serial(self) -> str:
        from certkit.host import engine

        ca = (self.base / "etc-docker/certkit/ca.pem").read_bytes()
        serial, why = engine.served_serial("127.0.0.1", self.port, ca, None, 10)
        assert serial, why
        return serial


def _in_namespace(pid: int) -> list[int]:
    """PIDs (besides ``pid``) in the mount namespace of ``pid``: what this test started there."""
    ns = os.readlink(f"/proc/{pid}/ns/mnt")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == ns:
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.fixture
def host(isolated_env: dict[str, Path]) -> Iterator[Host]:
    if not (dockerd_available() and shutil.which("docker") and shutil.which("unshare")):
        if os.environ.get("CERTKIT_REQUIRE_DOCKERD") == "1":
            pytest.fail("dockerd, docker and unshare are required (CERTKIT_REQUIRE_DOCKERD=1)")
        pytest.skip("dockerd, the docker CLI or unshare is not installed")
    base = short_tempdir()
    etc_docker, units, bin_dir = base / "etc-docker", base / "etc-systemd", base / "bin"
    for d in (etc_docker, units, bin_dir):
        d.mkdir(mode=0o755)
    sock = str(base / "docker.sock")
    write_json(etc_docker / "daemon.json", {
        **sandbox_daemon_settings(base), "hosts": [f"unix://{sock}"],
    })  # fmt: skip
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PIDFILE": str(base / "docker.pid"),
        "SOCK": sock,
        "LOG": str(base / "dockerd.log"),
        "CALLS": str(base / "systemctl.calls"),
        "DOCKER_HOST": f"unix://{sock}",  # the host scripts' `docker info`
    }
    binds = f"mount --bind {etc_docker} /etc/docker && mount --bind {units} /etc/systemd/system"
    holder = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{binds} && exec sleep 3600"],
        start_new_session=True,
    )
    h = Host(base, holder, sock, free_port(), env)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(f"/proc/{holder.pid}/root/etc/docker/daemon.json") or (
            os.readlink(f"/proc/{holder.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
        ):
            assert holder.poll() is None and time.monotonic() < deadline, "unshare failed"
            time.sleep(0.05)
        h.run("systemctl", "start", "docker")
        yield h
    finally:
        if (base / "docker.pid").exists():
            h.run("docker", "-H", f"unix://{sock}", "rm", "-f", "c1", check=False)
        for pid in _in_namespace(holder.pid):  # dockerd, containerd, the shim
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        holder.kill()
        holder.wait(10)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_a_running_container_survives_renew_restart_keep_containers(host: Host) -> None:
    host.certkit("init-ca")
    host.docker("import", str(tiny_image(host.base)), "ck-sleep:1")
    host.docker("run", "-d", "--network", "none", "--name", "c1", "--stop-timeout", "1",
                "ck-sleep:1", "/usr/bin/sleep", "3600")  # fmt: skip
    # Without --keep-containers: the restart is announced as stopping the container, and does.
    out = host.certkit(
        "issue-server", "localhost", "--san", "127.0.0.1", "--install", "--restart", "--days", "1",
        "--method", "daemon-json", "--listen", "127.0.0.1", "--port", str(host.port),
    )  # fmt: skip
    assert "the restart stops 1 running container (live-restore is off)" in out, out
    assert "--keep-containers keeps them running" in out
    assert host.container("c1")["Running"] is False
    first_serial = host.served_serial()

    host.docker("start", "c1")
    before, pid_before = host.container("c1"), host.dockerd_pid()
    assert before["Running"] is True
    out = host.certkit("renew", "server", "localhost", "--restart", "--keep-containers")
    assert "live-restore turned on" in out and "stops" not in out, out
    after = host.container("c1")
    assert host.dockerd_pid() != pid_before, "dockerd was not restarted"
    restarts = (host.base / "systemctl.calls").read_text().count("restart docker")
    assert restarts == 2  # the install's restart and the renewal's
    assert after["Running"] is True
    assert (after["Id"], after["StartedAt"], after["Pid"]) == (
        before["Id"], before["StartedAt"], before["Pid"]
    )  # fmt: skip
    config = json.loads((host.base / "etc-docker/daemon.json").read_text())
    assert config["live-restore"] is True
    # And the restarted dockerd serves the renewed certificate.
    cert = certs.load_cert((host.base / "etc-docker/certkit/server-cert.pem").read_bytes())
    serial = certs.serial_hex(cert)
    assert host.served_serial() == serial != first_serial

    # Recorded on the server: a scheduled `renew --due --restart` (no flag) keeps the
    # containers too, even after someone turned live-restore off again.
    (record,) = [r for r in CAStore().inventory().find(kind="server") if r.serial == serial]
    assert isinstance(record.origin, ServerOrigin) and record.origin.install
    assert record.origin.install.keep_containers is True
    config["live-restore"] = False  # (a reload leaves a setting the file does not name)
    write_json(host.base / "etc-docker/daemon.json", config)
    host.run("systemctl", "reload", "docker")
    deadline = time.monotonic() + 20
    while host.docker("info", "-f", "{{.LiveRestoreEnabled}}") != "false":
        assert time.monotonic() < deadline, "dockerd kept live-restore after the reload"
        time.sleep(0.2)
    pid_before = host.dockerd_pid()
    out = host.certkit("renew", "--due", "--renew-at", "0.001", "--restart")
    assert "Renewed server localhost" in out and "live-restore turned on" in out, out
    assert host.dockerd_pid() != pid_before
    again = host.container("c1")
    assert again["Running"] is True
    assert (again["Id"], again["StartedAt"], again["Pid"]) == (
        before["Id"], before["StartedAt"], before["Pid"]
    )  # fmt: skip
    assert host.served_serial() not in (serial, first_serial)


def test_keep_containers_with_renew_due_needs_restart() -> None:
    r = run_certkit("renew", "--due", "--keep-containers")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "add --restart" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_fleet_host_var_asks_for_keep_containers() -> None:
    from certkit.fleet.action import spec_from

    hostvars: dict[str, Any] = {"inventory_hostname": "h1"}
    assert spec_from({}, hostvars).options.keep_containers is False
    hostvars["certkit_keep_containers"] = "true"
    assert spec_from({}, hostvars).options.keep_containers is True
