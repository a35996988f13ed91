"""Durable batches: a real `certkit issue-client --count N` under strace, with faults injected.

A batch (the store's copies and the --out files of every certificate) is
written to temp files, made durable with one ``syncfs``, renamed in place and
made durable with a second ``syncfs``; the inventory commits after that
(certkit/durable.py, certkit/ca.py ``issue_many``).  strace fails either
syncfs with EIO, or kills certkit (SIGKILL, as a power cut would) at it; every
file must then be complete or absent, the inventory must hold no record whose
files are missing, and the next run must just work.  The per-file fsync
fallback is run too (``CERTKIT_SYNC=fsync``, and a syncfs the system refuses
with ENOSYS), and the syscall counts pin the strategy, so a regression to an
fsync per file fails here; they also pin the modes (chmod only when the umask
took bits) and the cost of each client in system calls.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support import cli_json, run_certkit

from certkit import durable
from certkit.store import CAStore

COUNT = 20
FILES = ("ca.pem", "cert.pem", "key.pem")


def strace_argv(*options: str) -> list[str]:
    path = shutil.which("strace")
    if path is None:
        pytest.fail("strace is required for the durability tests (.ci/run installs it)")
    return [path, "-f", "-qq", *options, sys.executable, "-m", "certkit"]


def issue(
    out: Path,
    *options: str,
    env: dict[str, str] | None = None,
    count: int = COUNT,
    umask: int = 0o022,
) -> subprocess.CompletedProcess[str]:
    """`certkit issue-client --count COUNT --out OUT` under strace with ``options``."""
    argv = [*strace_argv(*options), "issue-client", "--count", str(count), "--out", str(out)]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        umask=umask,
    )


SYNCS = "fsync,fdatasync,syncfs"


def syscall_counts(
    out: Path,
    trace: str = SYNCS,
    env: dict[str, str] | None = None,
    inject: str | None = None,
    **kwargs: int,
) -> dict[str, int]:
    """How many times a successful run called each syscall of ``trace`` (strace -c)."""
    log = out.parent / f"{out.name}.strace"
    faults = ["-e", f"inject={inject}"] if inject else []
    r = issue(out, "-c", "-o", str(log), "-e", f"trace={trace}", *faults, env=env, **kwargs)
    assert r.returncode == 0, r.stderr
    counts = dict.fromkeys(trace.split(","), 0)
    for line in log.read_text().splitlines():
        words = line.split()
        if len(words) >= 5 and words[3].isdigit() and words[-1] != "total":  # calls: 4th
            counts[words[-1]] = int(words[3])
    return counts


def load_pair(d: Path) -> tuple[x509.Certificate | None, Any]:
    """The certificate and key in ``d``: each parsed in full, or None when absent."""
    cert = key = None
    if (d / "cert.pem").exists():
        cert = x509.load_pem_x509_certificate((d / "cert.pem").read_bytes())
    if (d / "key.pem").exists():
        key = serialization.load_pem_private_key((d / "key.pem").read_bytes(), None)
    return cert, key


def check_files_and_inventory(store: CAStore, out: Path) -> list[dict[str, Any]]:
    """Every file complete or absent; every client record has all its files.

    Returns the client records (`certkit list --json`).
    """
    ca_pem = store.trust_bundle_pem()
    for d in sorted(out.iterdir()) if out.exists() else []:
        for name in FILES:
            p = d / name
            if p.exists():
                assert p.stat().st_size > 0, f"{p} is empty"
        if (d / "ca.pem").exists():
            assert (d / "ca.pem").read_bytes() == ca_pem, f"{d}/ca.pem is partial"
        cert, key = load_pair(d)  # raises on a partial PEM
        if cert is not None:
            serial = f"{cert.serial_number:032x}"
            stored = store.issued_dir(serial) / "cert.pem"
            assert stored.read_bytes() == (d / "cert.pem").read_bytes()
        if cert is not None and key is not None:
            assert cert.public_key() == key.public_key()
    records = [r for r in cli_json("list") if r["kind"] == "client"]
    for rec in records:
        serial = str(rec["serial"])
        issued = store.issued_dir(serial)
        cert, key = load_pair(issued)
        assert cert is not None and key is not None, f"record {serial} has no store copy"
        assert f"{cert.serial_number:032x}" == serial
        installed = [Path(p) for p in rec["installed"]]
        assert len(installed) == 3
        for p in installed:
            assert p.exists(), f"record {serial} lists {p}, which is missing"
        out_cert = x509.load_pem_x509_certificate((installed[0].parent / "cert.pem").read_bytes())
        assert f"{out_cert.serial_number:032x}" == serial
    return records


def one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# ---------------------------------------------------------------- syncfs fails


@pytest.mark.parametrize(
    ("when", "renamed"),
    [(1, False), (2, True)],  # the temp files' syncfs / the renames' syncfs
)
def test_a_failed_syncfs_records_nothing_and_leaves_whole_files(
    store: CAStore, tmp_path: Path, when: int, renamed: bool
) -> None:
    out = tmp_path / "clients"
    r = issue(out, "-o", "/dev/null", "-e", f"inject=syncfs:error=EIO:when={when}")
    assert r.returncode == 1, r.stdout + r.stderr
    message = one_sentence(r.stderr)
    assert "Input/output error" in message and "no certificate was recorded" in message
    assert check_files_and_inventory(store, out) == []
    written = sorted(out.rglob("cert.pem"))
    assert len(written) == (COUNT if renamed else 0)
    assert not list(out.rglob(".*.tmp")), "a failed batch left its temp files"
    assert not list(store.dir.rglob(".*.tmp"))

    again = run_certkit("issue-client", "--count", str(COUNT), "--out", str(out), "--force")
    assert again.returncode == 0, again.stderr
    assert len(check_files_and_inventory(store, out)) == COUNT


# ---------------------------------------------------------------- killed


@pytest.mark.parametrize("when", [1, 2])
def test_killed_at_a_syncfs_leaves_the_safe_side_and_a_rerun_works(
    store: CAStore, tmp_path: Path, when: int
) -> None:
    out = tmp_path / "clients"
    r = issue(out, "-o", "/dev/null", "-e", f"inject=syncfs:signal=KILL:when={when}")
    assert r.returncode in (-9, 128 + 9), (r.returncode, r.stderr)
    assert check_files_and_inventory(store, out) == []  # nothing committed
    names = {p.name for p in out.rglob("*.pem")}
    assert names == (set(FILES) if when == 2 else set())  # when=1: only temp files

    left = list(out.rglob(".*.tmp"))
    assert len(left) == (3 * COUNT if when == 1 else 0)  # renamed at the second syncfs
    assert all(p.stat().st_mode & 0o777 in (0o600, 0o644) for p in left)

    again = run_certkit("issue-client", "--count", str(COUNT), "--out", str(out), "--force")
    assert again.returncode == 0, again.stderr
    assert not list(out.rglob(".*.tmp")), "the rerun left the killed run's temp files"
    records = check_files_and_inventory(store, out)
    assert sorted(str(r["name"]) for r in records) == sorted(f"client-{i}" for i in range(1, 21))


# ---------------------------------------------------------------- strategies


def test_one_batch_is_two_syncfs_calls_and_no_fsync_per_file(
    store: CAStore, tmp_path: Path
) -> None:
    # syncfs, unless much dirty data is waiting (that heuristic is tested below, and the
    # variable skips only it): the kernel and libc here must allow syncfs.
    env = {durable.SYNC_ENV: "syncfs"}
    assert durable.kernel_reports_errors(), "Linux >= 5.8 is needed for this test to prove anything"
    counts = syscall_counts(tmp_path / "clients", env=env)
    assert counts["syncfs"] == 2, counts
    # SQLite's commit does a few; one per file would be 5 * COUNT.
    assert counts["fsync"] + counts["fdatasync"] <= 8, counts
    assert len(check_files_and_inventory(store, tmp_path / "clients")) == COUNT


def test_the_fsync_fallback_gives_the_same_result(store: CAStore, tmp_path: Path) -> None:
    out = tmp_path / "clients"
    counts = syscall_counts(out, env={durable.SYNC_ENV: "fsync"})
    assert counts["syncfs"] == 0, counts
    assert counts["fsync"] >= 5 * COUNT, counts  # every temp file, then the directories
    records = check_files_and_inventory(store, out)
    assert len(records) == COUNT
    for d in out.iterdir():
        assert oct(d.stat().st_mode & 0o777) == "0o700"
        assert oct((d / "key.pem").stat().st_mode & 0o777) == "0o600"
        assert oct((d / "cert.pem").stat().st_mode & 0o777) == "0o644"


# ---------------------------------------------------------------- system calls per file


CHMODS = "chmod,fchmod,fchmodat"


@pytest.mark.parametrize(
    ("umask", "chmods"),
    [
        (0o022, 0),  # mkdir 0700 and open 0600/0644 give every mode: no chmod at all
        (0o077, 3 * COUNT),  # the public files only: ca.pem and cert.pem, the store's cert.pem
        (0o277, 7 * COUNT),  # every file, and every directory made (the umask took owner bits)
    ],
)
def test_modes_come_from_mkdir_and_open_and_chmod_only_when_the_umask_took_bits(
    store: CAStore, tmp_path: Path, umask: int, chmods: int
) -> None:
    out = tmp_path / "clients"
    counts = syscall_counts(out, CHMODS, umask=umask)
    # A few more are not per file: --out and issued/ themselves, SQLite's files.
    assert chmods <= sum(counts.values()) <= chmods + (0 if umask == 0o022 else 5), counts
    for d in [*out.iterdir(), *store.dir.joinpath("issued").iterdir()]:
        assert d.stat().st_mode & 0o777 == 0o700, d
        for f in d.iterdir():
            assert f.stat().st_mode & 0o777 == (0o600 if f.name == "key.pem" else 0o644), f


def test_each_client_costs_few_system_calls(store: CAStore, tmp_path: Path) -> None:
    """The marginal cost of a client (5 files, 2 directories), imports and set-up cancelled out.

    Before the batch rework it was about 120 (an fsync, fchmod and stats per file, a walk
    from / per directory); now: open, write, close and rename per file, a mkdir and a stat
    per directory, and the checks of --out.
    """
    every = "%file,%desc,fsync,fdatasync,syncfs,chmod,fchmod,fchmodat"
    small = syscall_counts(tmp_path / "a", every, count=COUNT)
    large = syscall_counts(tmp_path / "b", every, count=3 * COUNT)
    per_client = (sum(large.values()) - sum(small.values())) / (2 * COUNT)
    assert per_client <= 32, (per_client, small, large)
    assert large["syncfs"] == 2


@pytest.mark.parametrize("when", [1, 2])
def test_a_refused_syncfs_falls_back_to_fsync(store: CAStore, tmp_path: Path, when: int) -> None:
    """ENOSYS (a seccomp filter, a sandbox) is no write error: the batch fsyncs instead."""
    out = tmp_path / "clients"
    env = {durable.SYNC_ENV: "syncfs"}
    calls = syscall_counts(out, env=env, inject=f"syncfs:error=ENOSYS:when={when}")
    assert calls["syncfs"] == when  # refused once, never asked again
    # when=1: every temp file, then the directories; when=2: the directories only.
    assert calls["fsync"] >= (5 * COUNT if when == 1 else 2 * COUNT), calls
    assert len(check_files_and_inventory(store, out)) == COUNT


def test_a_failed_fsync_in_the_fallback_records_nothing(store: CAStore, tmp_path: Path) -> None:
    out = tmp_path / "clients"
    r = issue(out, "-o", "/dev/null", "-e", "inject=fsync:error=EIO:when=3",
              env={durable.SYNC_ENV: "fsync"})  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Input/output error" in one_sentence(r.stderr)
    assert check_files_and_inventory(store, out) == []
    assert not list(out.rglob("*.pem"))  # failed before any rename


@pytest.mark.parametrize(
    ("release", "ok"),
    [("5.4.0-150-generic", False), ("5.7.19", False), ("5.8.0", True), ("6.18.44-fc", True),
     ("4.19.0", False), ("10.0", True), ("garbage", False)],
)  # fmt: skip
def test_syncfs_is_trusted_from_linux_5_8(release: str, ok: bool) -> None:
    assert durable.kernel_reports_errors(release) is ok


def test_the_fallback_is_chosen_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(durable.SYNC_ENV, raising=False)
    assert durable.choose({1, 2})[0] == "fsync"  # two filesystems: one syncfs is not enough
    monkeypatch.setenv(durable.SYNC_ENV, "fsync")
    assert durable.choose({1}) == ("fsync", f"${durable.SYNC_ENV}=fsync")
    monkeypatch.setattr(durable, "DIRTY_LIMIT", -1)  # any dirty data is "a lot"
    monkeypatch.setenv(durable.SYNC_ENV, "")
    assert durable.choose({1})[0] == "fsync"
    monkeypatch.setenv(durable.SYNC_ENV, "syncfs")  # skips the heuristic only
    assert durable.choose({1})[0] == "syncfs"
    assert durable.choose({1, 2})[0] == "fsync"


def test_dirty_bytes_reads_meminfo() -> None:
    text = Path("/proc/meminfo").read_text()
    kib = int(re.search(r"^Dirty:\s+(\d+) kB", text, re.M)[1])  # type: ignore[index]
    assert abs(durable.dirty_bytes() - kib * 1024) < 256 * 1024 * 1024


def test_the_batch_writer_reports_its_strategy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certkit import files

    monkeypatch.setenv(durable.SYNC_ENV, "syncfs")
    files.atomic_write_many([(tmp_path / "a", "x", 0o600), (tmp_path / "b", "y", 0o644)])
    assert durable.last_choice() == ("syncfs", "one filesystem, Linux >= 5.8")
    monkeypatch.setenv(durable.SYNC_ENV, "fsync")
    files.atomic_write_many([(tmp_path / "a", "z", 0o600)])
    assert durable.last_choice()[0] == "fsync"
    assert (tmp_path / "a").read_text() == "z"
