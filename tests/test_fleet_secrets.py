"""Issue 27 item 5: the CA passphrase and the PKCS#11 PIN never reach the disk through
ansible-runner (its private data dir keeps ``env/envvars`` and ``artifacts/*/command``,
the whole environment included, during every run and after a killed one).

The attack: grep that directory while ``certkit fleet apply`` runs, after it ends, and
after a ``kill -9``.  The real ansible-runner and ansible-playbook run; the lab test signs
with an encrypted CA key on a real systemd host, proving the secret still reaches the
signing code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from lab import Lab, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_ok
from test_fleet import inventory

from certkit.fleet.secrets import SOCKET_ENV, runner_environment

PASSPHRASE = "Passphrase-Marker-4f1c9a"
PIN = "Pin-Marker-77ab30"


def leaked(where: Path) -> list[str]:
    """Files under ``where`` holding either secret."""
    found = []
    for path in where.rglob("*"):
        try:
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        except OSError:
            continue
        if PASSPHRASE.encode() in data or PIN.encode() in data:
            found.append(str(path.relative_to(where)))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc), to end exactly those after a test."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def fleet_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TMPDIR": str(tmp),
        "CERTKIT_CA_PASSPHRASE": PASSPHRASE,
        "CERTKIT_PKCS11_PIN": PIN,
    }


def test_the_runner_environment_holds_no_secret_and_the_socket_serves_them() -> None:
    os.environ["CERTKIT_CA_PASSPHRASE"] = PASSPHRASE
    try:
        with runner_environment({}) as extra:
            assert "CERTKIT_CA_PASSPHRASE" not in os.environ  # ansible-runner copies os.environ
            assert list(extra) == [SOCKET_ENV]
            sock = Path(extra[SOCKET_ENV])
            assert sock.parent.stat().st_mode & 0o777 == 0o700
            code = (
                "import os; from certkit.fleet.secrets import receive; receive(); "
                "print(os.environ['CERTKIT_CA_PASSPHRASE'])"
            )
            env = {k: v for k, v in os.environ.items() if k != "CERTKIT_CA_PASSPHRASE"}
            done = subprocess.run(
                [sys.executable, "-c", code],
                env={**env, **extra},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.stdout.strip() == PASSPHRASE, done.stderr
        assert os.environ["CERTKIT_CA_PASSPHRASE"] == PASSPHRASE
        assert not sock.parent.exists()
    finally:
        del os.environ["CERTKIT_CA_PASSPHRASE"]


def test_a_run_killed_with_sigkill_leaves_no_secret_in_the_private_data_dir(
    tmp_path: Path,
) -> None:
    pytest.importorskip("ansible_runner")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    cli_ok("init-ca", "--encrypt", env={"CERTKIT_CA_PASSPHRASE": PASSPHRASE})
    inv = tmp_path / "hosts.ini"
    # ssh hangs in its ProxyCommand: the run is caught in the middle, as a slow host would.
    inv.write_text(
        "[docker_hosts]\nh1 ansible_host=192.0.2.1 "
        "ansible_ssh_common_args='-o ProxyCommand=\"sleep 120\"'\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "certkit", "fleet", "apply", str(inv)],
        env=fleet_env(tmp),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    below: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not list(tmp.glob("certkit-fleet-*/artifacts/*/command")):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        time.sleep(2)  # ansible-playbook has started its worker for h1
        assert list(tmp.glob("certkit-fleet-*/env/envvars"))
        assert leaked(tmp) == []  # during the run
        below = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert list(tmp.glob("certkit-fleet-*"))  # killed: nothing cleaned up ...
        assert leaked(tmp) == []  # ... and still no secret
    finally:
        for pid in [proc.pid, *below]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.lab
def test_an_encrypted_ca_signs_through_the_fleet_and_no_secret_touches_disk(
    lab: Lab, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    host = lab.host()
    cli_ok("init-ca", "--encrypt", env={"CERTKIT_CA_PASSPHRASE": PASSPHRASE})
    inv = inventory(tmp_path / "hosts.ini", [host])
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:  # grep the private data dir the whole time the run lasts
        while not stop.is_set():
            seen.extend(leaked(tmp))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "certkit", "fleet", "apply", str(inv), "--restart", "--json"],
            env=fleet_env(tmp),
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop.set()
        watcher.join()
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["issued"] == ["h1"] and out["hosts"]["h1"]["serving"]  # signed with the key
    assert seen == [] and leaked(tmp) == []


def test_an_inventory_cannot_turn_host_key_checking_off(tmp_path: Path, sandbox: Path) -> None:
    """Issue 27 (low): ``ansible_host_key_checking=false`` in an inventory let the fleet talk
    to whatever answered at the address.  A real sshd whose key nobody pinned: the fleet
    must refuse it as ``--ssh`` does."""
    pytest.importorskip("ansible_runner")
    from sshd_support import start_sshd

    if os.environ.get("CERTKIT_REQUIRE_SSHD") != "1" and not shutil.which("sshd"):
        pytest.skip("no sshd here")
    server = start_sshd(sandbox / "ssh")
    try:
        cli_ok("init-ca")
        inv = tmp_path / "hosts.ini"
        inv.write_text(
            f"[docker_hosts]\nh1 ansible_host=127.0.0.1 ansible_port={server.port} "
            f"ansible_user={server.user} ansible_ssh_private_key_file={server.identity} "
            "ansible_host_key_checking=false ansible_ssh_host_key_checking=false "
            "ansible_ssh_common_args='-o UserKnownHostsFile=/dev/null "
            "-o GlobalKnownHostsFile=/dev/null'\n"
        )
        done = subprocess.run(
            # --check: were the host accepted, this machine (the sshd's host) is written nothing.
            [sys.executable, "-m", "certkit", "fleet", "apply", str(inv), "--check", "--json"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        h1 = json.loads(done.stdout)["hosts"]["h1"]
        assert h1["failed"] and h1.get("unreachable"), h1
        assert "Host key verification failed" in h1["msg"], h1["msg"]
    finally:
        server.stop()
