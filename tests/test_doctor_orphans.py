"""`certkit doctor` reports store directories no inventory record names.

They are made for real: a `certkit issue-client --count N` killed (SIGKILL, by strace)
at its second syncfs, after the store copies were renamed into place and before the
inventory committed (tests/test_durability.py proves that order).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from support import cli_json, cli_ok
from test_durability import COUNT, issue

from certkit.store import CAStore


def orphan_checks(tmp_path: Path) -> tuple[dict[str, object], list[dict[str, str]]]:
    report = cli_json("doctor", "--root", str(tmp_path))
    checks = report["checks"]
    assert isinstance(checks, list)
    return report, [c for c in checks if c["name"] == "store-orphans"]


def test_a_killed_bulk_run_leaves_directories_doctor_warns_about(
    store: CAStore, tmp_path: Path
) -> None:
    cli_ok("issue-client", "kept", "--out", str(tmp_path / "kept"))
    r = issue(tmp_path / "clients", "-o", "/dev/null", "-e", "inject=syncfs:signal=KILL:when=2")
    assert r.returncode in (-9, 128 + 9), (r.returncode, r.stderr)
    issued = store.dir / "issued"
    assert len([p for p in issued.iterdir() if p.is_dir()]) == COUNT + 1

    report, checks = orphan_checks(tmp_path)
    assert report["ok"] is True  # a warning, not a failure
    assert [c["status"] for c in checks] == ["WARN"], checks
    message = checks[0]["message"]
    assert f"{COUNT} directories in {issued} with no inventory record" in message
    assert f"and {COUNT - 3} more: doctor --json lists them" in message
    orphans = report["orphans"]
    assert isinstance(orphans, list) and len(orphans) == COUNT
    kept = [r.serial for r in store.inventory().find(kind="client")]
    assert len(kept) == 1 and kept[0] not in {Path(p).name for p in orphans}

    # The hand removal the message names (for the three it shows), then the rest.
    command = message.split("remove them by hand: ")[1].split(" (and")[0]
    subprocess.run(["sh", "-c", command], check=True)
    _, checks = orphan_checks(tmp_path)
    assert f"{COUNT - 3} directories" in checks[0]["message"]
    subprocess.run(["rm", "-r", *orphans[3:]], check=True)
    report, checks = orphan_checks(tmp_path)
    assert checks == [] and report["orphans"] == []
    assert (issued / kept[0]).is_dir()  # the recorded one stays


def test_a_clean_store_gives_no_orphan_warning(store: CAStore, tmp_path: Path) -> None:
    cli_ok("issue-client", "--count", "3", "--out", str(tmp_path / "clients"))
    report, checks = orphan_checks(tmp_path)
    assert checks == [] and report["orphans"] == []
    assert any(c["name"] == "inventory" for c in report["checks"])  # the store was checked
