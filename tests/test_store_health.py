"""The store's health: a read-only or full file system is named as such, a corrupt CA is FAILed.

Read-only commands (``list``, ``status``, ``doctor``, ``ca show``) work on a read-only
store; a write is refused with one sentence naming the file system, and nothing is
written anywhere.  A full disk is said to be full, with no traceback and no record.
Both are real mounts (a read-only bind mount, a tiny tmpfs): root only, as in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import cli_ok, run_certkit


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only or full file system needs root (CI runs as root)")


@pytest.fixture
def readonly_home(tmp_path: Path, certkit_home: Path, root_only: None) -> Iterator[Path]:
    """The store made as usual, then seen through a read-only bind mount."""
    cli_ok("init-ca")
    cli_ok("issue-server", "h1", "--out", str(tmp_path / "h1"))
    view = tmp_path / "ro-view"
    view.mkdir()
    _mount("--bind", str(certkit_home), str(view))
    try:
        _mount("-o", "remount,bind,ro", str(view))
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=False)


@pytest.mark.parametrize("command", [["list"], ["status"], ["ca", "show"], ["doctor"]])
def test_read_only_commands_work_on_a_read_only_store(
    readonly_home: Path, command: list[str]
) -> None:
    r = run_certkit(*command, "--json", env={"CERTKIT_HOME": str(readonly_home)})
    assert "unreadable" not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert r.returncode in (0, 1), r.stderr  # doctor may FAIL other checks on this machine
    doc = json.loads(r.stdout)
    if command == ["list"]:
        assert [item["name"] for item in doc if item["kind"] == "server"] == ["h1"]


def test_a_write_to_a_read_only_store_names_the_file_system(
    readonly_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "h2"
    r = run_certkit(
        "issue-server", "h2", "--out", str(out), env={"CERTKIT_HOME": str(readonly_home)}
    )
    assert r.returncode == 1
    assert "read-only" in r.stderr
    assert "restore it from a backup" not in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


@pytest.fixture
def full_disk(tmp_path: Path, root_only: None) -> Iterator[Path]:
    """A 256 KiB tmpfs, filled up to the last few blocks by the test."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    _mount("-t", "tmpfs", "-o", "size=256k,mode=700", "tmpfs", str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _fill(mnt: Path, leave: int) -> None:
    """Fill ``mnt`` until ``leave`` bytes (rounded to blocks) are free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    (mnt / "filler").write_bytes(b"\0" * max(0, free - leave))


def test_a_full_disk_is_said_to_be_full_and_nothing_is_recorded(full_disk: Path) -> None:
    env = {"CERTKIT_HOME": str(full_disk / "home")}
    r = run_certkit("init-ca", env=env)
    assert r.returncode == 0, r.stderr
    before = run_certkit("list", "--json", env=env).stdout
    _fill(full_disk, 0)
    for name in ("h1", "h2"):
        r = run_certkit("issue-server", name, "--out", str(full_disk / name), env=env)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "Traceback" not in r.stderr
        assert "full" in r.stderr or "no space left" in r.stderr, r.stderr
        assert "restore it from a backup" not in r.stderr
    assert run_certkit("list", "--json", env=env).stdout == before


def test_doctor_fails_a_corrupt_ca_certificate_in_the_store(certkit_home: Path) -> None:
    cli_ok("init-ca")
    healthy = run_certkit("doctor", "--json")
    assert "ca-cert" not in healthy.stdout  # a healthy CA adds no line
    (certkit_home / "cas" / "default" / "ca.pem").write_text("not a certificate\n")
    r = run_certkit("doctor", "--json")
    assert r.returncode == 1
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["ca-cert"]["status"] == "FAIL"
    assert "corrupted" in checks["ca-cert"]["message"]
