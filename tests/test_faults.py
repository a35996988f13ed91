"""Fault injection: kill -9 at every rename of an install, re-install and renewal.

strace kills certkit (SIGKILL) exactly when it calls rename() for the Nth
time, for every N the run makes.  After each kill the host must still be
startable: daemon.json parses, and the certificate and key it names form a
matching pair (dockerd refuses to start on a mismatched pair).  And once the
next run has settled what the killed one left (:func:`certkit.placement.settle`),
the inventory says what the host has: the server certificate in use is the one
in its files (these installs run without --restart), nothing is left installing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support import cli_json, cli_ok


def _strace() -> str:
    path = shutil.which("strace")
    if path is None:
        pytest.fail("strace is required for the fault-injection tests (.ci/run installs it)")
    return path


def certkit_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "certkit", *args]


def count_renames(args: list[str], log: Path) -> int:
    """Run certkit once under strace, tracing renames only; how many it made itself (the
    host's files are moved by the engine's script, with mv: see :func:`killed_at_move`)."""
    subprocess.run(
        [_strace(), "-f", "-qq", "-o", str(log), "-e", "trace=rename", *certkit_argv(*args)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return sum(1 for line in log.read_text().splitlines() if "rename" in line and "= 0" in line)


# The host's side of an install is a script; its moves are mv.  This mv kills the script
# (kill -9 of its whole process group) at the Nth move: the host dies mid-install.
KILLING_MV = """#!/bin/sh
n=$(( $(cat "$CK_MV_COUNT" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$CK_MV_COUNT"
[ "$n" = "${CK_MV_KILL:-0}" ] && kill -9 0
exec /bin/mv "$@"
"""


def killed_at_move(args: list[str], n: int, bin_dir: Path) -> int:
    """Run certkit with the host's script killed at its Nth mv (0: never); its exit status."""
    (bin_dir / "mv").write_text(KILLING_MV)
    (bin_dir / "mv").chmod(0o755)
    (bin_dir / "count").unlink(missing_ok=True)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", CK_MV_KILL=str(n))
    env["CK_MV_COUNT"] = str(bin_dir / "count")
    done = subprocess.run(certkit_argv(*args), capture_output=True, timeout=120, env=env)
    return done.returncode


def killed_at(args: list[str], n: int) -> int:
    """Run certkit, SIGKILLed on its Nth rename(); its exit status."""
    done = subprocess.run(
        [_strace(), "-f", "-qq", "-o", "/dev/null",
         "-e", f"inject=rename:signal=KILL:when={n}", *certkit_argv(*args)],
        capture_output=True, timeout=120,
    )  # fmt: skip
    return done.returncode


def host_serial(root: Path) -> str | None:
    """The serial of the certificate dockerd would serve from these files: the one
    daemon.json names, when it is certkit's (its file or the pair swap's next- name)."""
    daemon_json = root / "etc" / "docker" / "daemon.json"
    named = json.loads(daemon_json.read_text()).get("tlscert") if daemon_json.exists() else None
    cert_dir = root / "etc" / "docker" / "certkit"
    if named not in (str(cert_dir / "server-cert.pem"), str(cert_dir / "next-server-cert.pem")):
        return None
    return f"{x509.load_pem_x509_certificate(Path(named).read_bytes()).serial_number:032x}"


def listed_in_use(name: str) -> list[str]:
    """What ``certkit list --json`` says is installed and in use for server ``name``."""
    return [
        r["serial"]
        for r in cli_json("list")
        if r["kind"] == "server" and r["name"] == name and r["installed"]
        and r["superseded_by"] is None and r["revoked_at"] is None
    ]  # fmt: skip


def assert_inventory_matches(root: Path, *, settle: bool = True) -> None:
    """The inventory (``certkit list --json``) says installed exactly what the host has,
    nothing left installing; with ``settle``, once the next run has settled what a killed
    run left (certkit itself killed: only the next run can)."""
    from certkit.records import INSTALLING

    if settle:
        from certkit import placement
        from certkit.store import CAStore

        placement.settle(CAStore())
    listed = cli_json("list")
    assert not [r["serial"] for r in listed if r["superseded_by"] == INSTALLING]
    on_host = host_serial(root)
    in_use = listed_in_use("docker1")
    assert in_use == ([on_host] if on_host else []), (
        f"the inventory says {in_use} installed, the host has {on_host}"
    )


def assert_startable(daemon_json: Path) -> None:
    """daemon.json parses; the cert and key it names exist and belong together."""
    if not daemon_json.exists():
        return
    config = json.loads(daemon_json.read_text())
    if "tlscert" not in config:
        return
    cert = x509.load_pem_x509_certificate(Path(config["tlscert"]).read_bytes())
    key = serialization.load_pem_private_key(Path(config["tlskey"]).read_bytes(), None)
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(*raw) == key.public_key().public_bytes(*raw), (
        f"daemon.json names {config['tlscert']} and {config['tlskey']}, which do not match"
    )


Scenario = Callable[[Path], list[str]]


def _fresh(base: Path) -> Path:
    if base.exists():
        shutil.rmtree(base)
    root = base / "root"
    (root / "etc" / "docker").mkdir(parents=True)
    (root / "etc" / "docker" / "daemon.json").write_text('{\n  "debug": true\n}\n')
    return root


def install(base: Path) -> list[str]:
    root = _fresh(base)
    return ["issue-server", "docker1", "--install", "--root", str(root)]


def reinstall(base: Path) -> list[str]:
    args = install(base)
    cli_ok(*args)
    return args


def renew(base: Path) -> list[str]:
    cli_ok(*install(base))
    return ["renew", "server", "docker1"]


def renew_in_rotation(base: Path) -> list[str]:
    cli_ok(*install(base))
    cli_ok("rotate-ca", "start")
    return ["renew", "server", "docker1"]


@pytest.mark.parametrize("scenario", [install, reinstall, renew, renew_in_rotation])
def test_kill_at_every_rename_leaves_a_startable_host(
    scenario: Scenario, tmp_path: Path, certkit_home: Path
) -> None:
    home = certkit_home
    cli_ok("init-ca")
    pristine = tmp_path / "home-pristine"
    shutil.copytree(home, pristine, symlinks=True)
    base = tmp_path / "host"

    def reset() -> list[str]:
        shutil.rmtree(home)
        shutil.copytree(pristine, home, symlinks=True)
        return scenario(base)

    total = count_renames(reset(), tmp_path / "trace.log")
    assert total >= 2, f"only {total} renames traced: is rename() still the syscall used?"
    daemon_json = base / "root" / "etc" / "docker" / "daemon.json"
    assert_startable(daemon_json)
    for n in range(1, total + 1):
        args = reset()
        status = killed_at(args, n)
        assert status != 0, f"rename {n}/{total}: certkit was not killed"
        assert_startable(daemon_json)
        assert_inventory_matches(base / "root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    assert killed_at_move(reset(), 0, bin_dir) == 0
    moves = int((bin_dir / "count").read_text())
    assert moves >= 4, f"only {moves} moves on the host: is mv still what the script uses?"
    for n in range(1, moves + 1):
        status = killed_at_move(reset(), n, bin_dir)
        assert status != 0, f"move {n}/{moves}: the host's script was not killed"
        assert_startable(daemon_json)
        assert_inventory_matches(base / "root", settle=False)  # certkit lived: it settled
    os.sync()


def test_a_failed_bundle_only_renewal_keeps_the_certificate_in_use(
    tmp_path: Path, certkit_home: Path
) -> None:
    """``renew server --bundle-only`` (rotation's server step) re-installs the certificate
    in use; when its write fails and is undone, that certificate stays in use (it was
    recorded "not installed" although the host kept serving it)."""
    cli_ok("init-ca")
    base = tmp_path / "host"
    cli_ok(*install(base))
    cli_ok("rotate-ca", "start")
    before = listed_in_use("docker1")
    assert before == [host_serial(base / "root")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mv").write_text("#!/bin/sh\nexit 1\n")  # every move fails: undone
    (bin_dir / "mv").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    done = subprocess.run(certkit_argv("renew", "server", "docker1", "--bundle-only"),
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert done.returncode == 1 and "left as it was" in done.stderr, done.stderr
    assert_inventory_matches(base / "root", settle=False)
    assert listed_in_use("docker1") == before
