"""kill -9 during a fleet install, on a real systemd lab host (issue 26, item 1).

``certkit fleet apply --restart`` is stopped at three points: the controller
killed right after it issued the new certificate (before the host is touched),
the host's write script killed in the middle of its moves (tests/test_faults'
killing ``mv``, put first on the host's PATH), and the controller killed while
the host's script runs (paused at one of its moves).  After each, the next
plain ``fleet apply --restart`` finishes or undoes it: ``certkit list --json``
then says exactly the certificate dockerd serves (the serial read over TLS),
and nothing is left installing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_json, cli_ok, run_certkit
from test_fleet import fleet, inventory
from test_lab import context_tls, served_serial

pytestmark = pytest.mark.slow

# On the host: the Nth mv (N in /root/ck-mv-at) kills the script's process group, or with
# /root/ck-mv-pause waits there a while (for the controller to be killed meanwhile).
MV = """#!/bin/sh
n=$(( $(cat /root/ck-mv-count 2>/dev/null || echo 0) + 1 )); echo "$n" > /root/ck-mv-count
if [ "$n" = "$(cat /root/ck-mv-at 2>/dev/null)" ]; then
  if [ -e /root/ck-mv-pause ]; then sleep 4; else kill -9 0; fi
fi
exec /bin/mv "$@"
"""


def arm(host: LabHost, at: int, *, pause: bool = False) -> None:
    """The host's next write script stops (or pauses) at its ``at``-th move."""
    mv = host.path("/usr/local/bin/mv")
    mv.write_text(MV)
    mv.chmod(0o755)
    host.path("/root/ck-mv-count").unlink(missing_ok=True)
    host.path("/root/ck-mv-at").write_text(f"{at}\n")
    if pause:
        host.path("/root/ck-mv-pause").write_text("")


def disarm(host: LabHost) -> None:
    for name in ("/usr/local/bin/mv", "/root/ck-mv-at", "/root/ck-mv-pause"):
        host.path(name).unlink(missing_ok=True)


def assert_inventory_is_the_host(host: LabHost, tls: Path) -> None:
    """``certkit list --json``: one server certificate in use for the host, the one it
    serves; none installing."""
    listed = [r for r in cli_json("list", "--kind", "server") if r["name"] == host.address]
    assert not [r["serial"] for r in listed if r["superseded_by"] == "(installing)"], listed
    in_use = [r["serial"] for r in listed if r["superseded_by"] is None and r["installed"]]
    served = f"{served_serial(host, tls):032x}"
    assert in_use == [served], f"the inventory says {in_use}, the host serves {served}"


def in_files(host: LabHost) -> str:
    """The serial of the certificate the host's daemon.json names (what dockerd serves
    once it restarts)."""
    named = json.loads(host.path("/etc/docker/daemon.json").read_text())["tlscert"]
    return f"{x509.load_pem_x509_certificate(host.path(named).read_bytes()).serial_number:032x}"


def test_a_killed_fleet_install_is_finished_by_the_next_apply(
    lab: Lab, tmp_path: Path, docker_config: Path
) -> None:
    host = lab.host()
    cli_ok("init-ca")
    inv = inventory(tmp_path / "hosts.ini", [host])
    rc, out = fleet("apply", str(inv), "--restart", "--contexts")
    assert rc == 0, out
    tls = context_tls(docker_config, "h1")
    assert_inventory_is_the_host(host, tls)
    runs = iter(range(1, 4))

    def forced() -> list[str]:
        """A run that must issue: the inventory names one more name for the host."""
        extra = {"h1": f"certkit_sans=\"['h1-{next(runs)}.lab']\""}
        inventory(inv, [host], extra=extra)
        return ["fleet", "apply", str(inv), "--restart"]

    def server_statuses() -> dict[str, str | None]:
        return {x["serial"]: x["superseded_by"] for x in cli_json("list", "--kind", "server")}

    # 1. The controller killed right after issuing: the host was never touched.  The
    # convergence runs in Ansible's worker process: ansible-playbook sees it dead.
    r = run_certkit(*forced(), env={"CERTKIT_TEST_CRASH_AT": "after-commit#1"})
    assert r.returncode != 0 and "dead state" in r.stderr, r.stdout + r.stderr
    (pending,) = [k for k, v in server_statuses().items() if v == "(installing)"]

    # 2. The host's script killed in the middle of its moves: a pair swap of 6 moves (new
    # pair under next- names, daemon.json to them, the pair, daemon.json back), at the 4th.
    # This run settles what the first left (the host never had it), and its own failure
    # from what dockerd serves (not restarted yet: the previous one), not from the files.
    arm(host, 4)
    r = run_certkit(*forced(), "--json")
    disarm(host)
    assert r.returncode == 1, r.stdout + r.stderr
    assert host.path("/root/ck-mv-count").read_text().strip() == "4"
    statuses = server_statuses()
    assert statuses[pending] == "(not installed)", statuses
    assert "(installing)" not in statuses.values(), statuses
    assert_inventory_is_the_host(host, tls)
    assert in_files(host) != f"{served_serial(host, tls):032x}"  # the next run finishes it

    # 3. The controller (its whole process group: Ansible, its workers, ssh) killed while
    # the host's script runs, paused at its 2nd move.
    arm(host, 2, pause=True)
    proc = subprocess.Popen([sys.executable, "-m", "certkit", *forced()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    count = host.path("/root/ck-mv-count")
    deadline = time.monotonic() + 90
    while not (count.exists() and count.read_text().strip() == "2"):
        assert proc.poll() is None and time.monotonic() < deadline, "the script never paused"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(5)  # the orphaned script ends on the host, one way or the other
    disarm(host)

    # The next plain run (the same inventory) finishes or undoes all of it.
    rc, out = fleet("apply", str(inv), "--restart")
    assert rc == 0, out
    assert_inventory_is_the_host(host, tls)
