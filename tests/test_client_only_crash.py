"""``client-context --client-only --out``: files first, then one inventory transaction.

certkit is killed (SIGKILL, as a power cut would) at each step of the issuance
(``CERTKIT_TEST_CRASH_AT``, certkit.inventorydb.crash_point): a crash leaves --out
files and store copies no record names, never a record whose files are missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from support import cli_json, cli_ok, run_certkit

from certkit.store import CAStore

CLIENT_ONLY = ["client-context", "c1", "--host", "docker1", "--client-only", "--out"]
FILES = ["ca.pem", "cert.pem", "key.pem"]


def out_serial(out: Path) -> str | None:
    if not (out / "cert.pem").exists():
        return None
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    return f"{cert.serial_number:032x}"


@pytest.mark.parametrize(
    ("step", "written", "recorded"),
    [
        ("before-files", False, False),  # signed, nothing written
        ("before-commit", True, False),  # --out and store copies written, no record
        ("after-commit", True, True),  # everything done, in one transaction
    ],
)
def test_a_kill_at_each_step_leaves_files_without_a_record_never_the_reverse(
    store: CAStore, tmp_path: Path, step: str, written: bool, recorded: bool
) -> None:
    out = tmp_path / "c1"
    r = run_certkit(*CLIENT_ONLY, str(out), env={"CERTKIT_TEST_CRASH_AT": step})
    assert r.returncode == -9, (step, r.stderr)
    records = store.inventory().find(kind="client")
    assert len(records) == int(recorded)
    serial = out_serial(out)
    assert (serial is not None) == written
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == (
        FILES if written else []
    )
    if serial is not None:  # the --out files are whole, and their store copy is there
        assert (store.issued_dir(serial) / "key.pem").exists()
        assert [r.serial for r in records] == ([serial] if recorded else [])
    for rec in records:  # a record names only files that are there
        assert rec.installed == [str(out)] and all((out / f).exists() for f in FILES)

    cli_ok(*CLIENT_ONLY, str(out), "--force")  # the next run just works
    (item,) = [i for i in cli_json("list", "--kind", "client") if i["status"] == "valid"]
    assert item["serial"] == out_serial(out) and item["installed"] == [str(out)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left


def test_one_transaction_records_the_files_and_where_they_went(
    store: CAStore, tmp_path: Path
) -> None:
    # The second commit the two-step version made is gone: a kill there never happens.
    out = tmp_path / "c1"
    r = run_certkit(*CLIENT_ONLY, str(out), env={"CERTKIT_TEST_CRASH_AT": "before-commit#2"})
    assert r.returncode == 0, r.stderr
    (rec,) = store.inventory().find(kind="client")
    assert rec.installed == [str(out)] and out_serial(out) == rec.serial
