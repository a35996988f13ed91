"""The inventory in SQLite: the file, the migration from JSON, crashes, corruption, backups.

Every test drives the real ``certkit`` commands against a real store; the
crash tests kill the process (SIGKILL, as a power cut would) at each step of
an issuance through ``$CERTKIT_TEST_CRASH_AT`` and check what is left.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import stat
import tarfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support import cli_json, cli_ok, run_certkit

from certkit import ca as ca_ops
from certkit import sqlitefiles
from certkit.errors import UsageError
from certkit.host.options import HostRef, InstallOptions
from certkit.names import parse_names
from certkit.origins import ClientOrigin, ServerOrigin
from certkit.store import CAStore, Record


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _integrity(store: CAStore) -> list[Any]:
    db = sqlite3.connect(store.inventory_path)
    try:
        return db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()


def _records(store: CAStore) -> list[dict[str, Any]]:
    """Every record, as inventory.json held it."""
    return list(json.loads(json.dumps([r.to_dict() for r in store.inventory().find()])))


def test_the_database_is_private_in_wal_mode_and_serials_are_unique(store: CAStore) -> None:
    assert stat.S_IMODE(store.inventory_path.stat().st_mode) == 0o600
    assert not (store.dir / "inventory.json").exists()
    db = sqlite3.connect(store.inventory_path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        (ca,) = store.inventory().find(kind="ca")
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):  # a constraint, not a scan
            db.execute(
                "INSERT INTO records SELECT NULL, serial, kind, name, subject, sans, not_before, "
                "not_after, fingerprint, key_type, issuer_fingerprint, created, origin, "
                "superseded_by, revoked_at, revoked_reason FROM records"
            )
        db.rollback()
    finally:
        db.close()
    with pytest.raises(RuntimeError, match="already in the inventory"), store.transaction() as inv:
        inv.add(ca)
    assert [r.serial for r in store.inventory().find()] == [ca.serial]  # rolled back


def test_list_and_status_change_no_byte_of_the_store(store: CAStore, tmp_path: Path) -> None:
    cli_ok("issue-client", "one", "--out", str(tmp_path / "one"))
    before = _tree(store.dir)
    assert sorted(p.name for p in store.dir.iterdir() if p.name.startswith("inventory")) == [
        "inventory.sqlite3"
    ]  # no -wal or -shm left behind by the writers
    cli_ok("list")
    cli_json("list", "--kind", "client")
    cli_ok("status")
    assert _tree(store.dir) == before


def test_the_newest_active_record_of_a_name_is_the_one_in_use(store: CAStore) -> None:
    (ca,) = store.inventory().find(kind="ca")
    base = replace(ca, kind="client", name="c", origin=ClientOrigin())
    rows = [  # (serial, created, not_after): later created wins, then later end, then first added
        ("a1", "2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("b2", "2026-02-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("c3", "2026-02-01T00:00:00+00:00", "2027-06-01T00:00:00+00:00"),
        ("d4", "2026-02-01T00:00:00+00:00", "2027-06-01T00:00:00+00:00"),
        ("e5", "2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00"),
    ]
    with store.transaction() as inv:
        for serial, created, not_after in rows:
            inv.add(replace(base, serial=serial, created=created, not_after=not_after))
        inv.get("e5").superseded_by = "x"  # type: ignore[union-attr]
    inv = store.inventory()
    assert inv.newest_active("client", "c")[("client", "c")].serial == "c3"
    assert inv.newest_serials("client") == {("client", "c"): "c3"}
    assert inv.newest_active(ending_by=dt.datetime(2027, 3, 1, tzinfo=dt.UTC)) == {}
    by_june = inv.newest_active(ending_by=dt.datetime(2027, 6, 1, tzinfo=dt.UTC))
    assert [r.serial for r in by_june.values()] == ["c3"]
    statuses = {i["serial"]: i["status"] for i in cli_json("list", "--kind", "client")}
    assert statuses == {"a1": "superseded", "b2": "superseded", "c3": "valid",
                        "d4": "superseded", "e5": "superseded"}  # fmt: skip


def test_list_json_streams_exactly_what_the_list_holds(store: CAStore, tmp_path: Path) -> None:
    """`list --json` prints each item as it is read (issue 33), byte for byte what one
    JSON document of :func:`list_items` was: servers with names, installed files, a
    client re-issued under its name (the older one superseded), a second CA."""
    from certkit.inventory import iter_items, list_items

    cli_ok("issue-server", "h1", "--san", "10.0.0.1", "--out", str(tmp_path / "s"))
    cli_ok("issue-client", "--count", "3", "--prefix", "c", "--out", str(tmp_path / "c"))
    cli_ok("issue-client", "c-2", "--out", str(tmp_path / "c2"), "--force")
    cli_ok("init-ca", "--ca", "other")
    cli_ok("issue-client", "z", "--ca", "other", "--out", str(tmp_path / "z"))
    now = dt.datetime.now(dt.UTC)
    for args in ([], ["--kind", "client"], ["--kind", "ci"], ["--ca", "other"]):
        kind = args[1] if args[:1] == ["--kind"] else None
        ca = args[1] if args[:1] == ["--ca"] else None
        wanted = [i.to_json() for i in list_items(ca, kind, now=now)]
        assert [i.to_json() for i in iter_items(ca, kind, now=now)] == wanted
        out = cli_ok("list", *args, "--json")
        assert json.loads(out) == json.loads(json.dumps(wanted, default=str))
        # the shape of one document too (the days left may differ by a rounding)
        assert out.startswith("[]" if not wanted else '[\n  {\n    "ca": ') and out.endswith("]\n")
    statuses = {i["name"]: i["status"] for i in cli_json("list", "--kind", "client")}
    assert len(statuses) == 4 and statuses["z"] == "valid"
    assert [i.status for i in iter_items(kind="client")].count("superseded") == 1
    with pytest.raises(UsageError, match="Unknown kind"):
        iter_items(kind="nope")  # at the call, before anything is printed


def test_kept_connections_commit_durably_visibly_and_leave_no_wal(store: CAStore) -> None:
    """Inside sqlitefiles.kept_open() transactions share one connection: the WAL is not
    checkpointed away between them, another process sees each commit at once, a second
    block or thread works as before, and the block's end removes -wal and -shm."""
    (ca,) = store.inventory().find(kind="ca")
    wal = store.dir / "inventory.sqlite3-wal"
    with sqlitefiles.kept_open():
        with store.transaction() as inv:
            inv.add(replace(ca, kind="client", name="k1", serial="k1", origin=ClientOrigin()))
        assert wal.exists()  # still open: no checkpoint, no WAL to create again
        assert [i["serial"] for i in cli_json("list", "--kind", "client")] == ["k1"]
        with sqlitefiles.kept_open(), store.transaction() as inv:  # nested: outer keeps it
            inv.get("k1").name = "renamed"  # type: ignore[union-attr]
        done: list[str] = []
        worker = threading.Thread(target=lambda: done.append(_add_in_thread(store, ca)))
        worker.start()
        worker.join()
        assert done == ["k2"]
        assert wal.exists()
    assert not wal.exists() and not (store.dir / "inventory.sqlite3-shm").exists()
    listed = {i["serial"]: i["name"] for i in cli_json("list", "--kind", "client")}
    assert listed == {"k1": "renamed", "k2": "k2"}
    assert _integrity(store) == [("ok",)]


def test_a_new_database_appears_whole_private_and_in_wal_mode(tmp_path: Path) -> None:
    """sqlitefiles.create: built aside and linked in (never over a file already there)."""
    path = tmp_path / "inventory.sqlite3"
    schema = ("CREATE TABLE t (x)", "PRAGMA user_version = 7")
    assert sqlitefiles.create(path, schema, 0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["inventory.sqlite3"]  # no temp, no -wal
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (7,)
    finally:
        db.close()
    path.write_bytes(b"another process's")
    assert not sqlitefiles.create(path, schema, 0o600)
    assert path.read_bytes() == b"another process's"
    assert [p.name for p in tmp_path.iterdir()] == ["inventory.sqlite3"]


def _add_in_thread(store: CAStore, ca: Record) -> str:
    """Another thread inside the block: its own connection, closed as before."""
    with store.transaction() as inv:
        inv.add(replace(ca, kind="client", name="k2", serial="k2", origin=ClientOrigin()))
    return "k2"


# ---------------------------------------------------------------- migration


def _as_json_inventory(store: CAStore) -> list[dict[str, Any]]:
    """Put back the inventory.json certkit wrote before the database, byte for byte its format."""
    records = _records(store)
    for p in store.dir.glob("inventory.sqlite3*"):
        p.unlink()
    payload = {"version": 2, "records": records}
    (store.dir / "inventory.json").write_text(json.dumps(payload, indent=2) + "\n")
    return records


def _every_kind(store: CAStore, tmp_path: Path) -> None:
    root = tmp_path / "root"
    cli_ok("issue-server", "docker1", "--san", "10.0.0.5", "--install", "--root", str(root),
           "--method", "daemon-json", "--port", "2377")  # fmt: skip
    cli_ok("issue-server", "docker2", "--out", str(tmp_path / "srv"))
    ssh = ServerOrigin(
        sans=("docker3",),
        install=InstallOptions(listen="10.0.0.7", port=2376, method="systemd"),
        target=HostRef(ssh="ops@docker3:2222", sudo=True),
    )  # what `issue-server docker3 --ssh ops@docker3:2222 --sudo` records
    issued = ca_ops.issue(store, "server", "docker3", "docker3", parse_names(["docker3"]),
                          origin=ssh)  # fmt: skip
    ca_ops.mark_installed(store, issued.record.serial, ["/etc/docker/certkit/server-cert.pem"])
    cli_ok("client-context", "prod", "--host", "docker1", "--port", "2377")
    cli_ok("client-context", "files", "--host", "docker1", "--client-only",
           "--out", str(tmp_path / "files"))  # fmt: skip
    cli_ok("ci", "export", "gha", "--host", "docker1:2377")
    cli_ok("issue-client", "--count", "3", "--prefix", "bulk", "--out", str(tmp_path / "bulk"))
    cli_ok("renew", "client", "prod")
    cli_ok("rotate-ca", "start")


def test_an_inventory_json_of_every_kind_migrates_once_then_renews_and_rotates(
    store: CAStore, tmp_path: Path, docker_config: Path
) -> None:
    _every_kind(store, tmp_path)
    listed = cli_json("list")
    kinds = {(r["kind"], r["superseded_by"] is not None) for r in listed}
    assert kinds >= {
        ("ca", True),
        ("ca", False),
        ("server", False),
        ("client", True),
        ("ci", False),
    }
    written = _as_json_inventory(store)

    first = run_certkit("list", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == listed
    assert first.stderr.count("migrated the inventory") == 1
    assert f"({len(written)} records)" in first.stderr
    assert "migrated" not in run_certkit("status").stderr  # said once
    assert _records(store) == written  # every field, origins included
    (aside,) = store.dir.glob("inventory.json.migrated-*")
    assert json.loads(aside.read_text())["records"] == written
    assert not (store.dir / "inventory.json").exists()
    assert _integrity(store) == [("ok",)]

    # Renewal and rotation go on as before on the migrated records.
    srv = cli_json("renew", "server", "docker2")["installed"]
    assert srv == sorted(
        str(tmp_path / "srv" / f) for f in ("ca.pem", "server-cert.pem", "server-key.pem")
    )
    cli_ok("renew", "client", "files")
    cli_ok("renew", "ci", "gha", "--format", "bundle")
    cli_ok("rotate-ca", "finish", "--force")
    assert store.inventory().find(kind="ca", active=True)[0].origin.rotated_from  # type: ignore[union-attr]
    assert _integrity(store) == [("ok",)]


def test_a_crash_between_migration_and_rename_migrates_nothing_twice(store: CAStore) -> None:
    written = _as_json_inventory(store)
    r = run_certkit("list", env={"CERTKIT_TEST_CRASH_AT": "migration-committed"})
    assert r.returncode == -9
    assert (store.dir / "inventory.json").exists()  # committed, not yet renamed
    second = run_certkit("list", "--json")
    assert second.returncode == 0 and "migrated the inventory" in second.stderr
    assert _records(store) == written
    assert len(list(store.dir.glob("inventory.json.migrated-*"))) == 1

    # A different inventory.json beside a database that has records: refused, not merged.
    (store.dir / "inventory.json").write_text('{"version": 2, "records": []}\n')
    r = run_certkit("list")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "hold an inventory: move inventory.json aside" in r.stderr
    (store.dir / "inventory.json").unlink()
    assert _records(store) == written


# ---------------------------------------------------------------- crashes


def _check_consistent(store: CAStore, out: Path) -> None:
    """A crash left the safe side: every record has its files (in the store and where it
    says they were installed); a file handed out without a record is an orphan of the
    interrupted run, recognisable as such (its store copy is there, its serial unknown)."""
    assert _integrity(store) == [("ok",)]
    records = {r.serial: r for r in store.inventory().find()}
    for serial, rec in records.items():
        if rec.kind == "ca":
            continue
        d = store.issued_dir(serial)
        cert = x509.load_pem_x509_certificate((d / "cert.pem").read_bytes())
        key = serialization.load_pem_private_key((d / "key.pem").read_bytes(), None)
        assert f"{cert.serial_number:032x}" == serial
        assert cert.public_key() == key.public_key()
        for path in rec.installed:
            assert Path(path).exists(), f"{serial} is recorded at {path}, which is missing"
    if (out / "cert.pem").exists():  # handed out: recorded, or an orphan of this crash
        cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
        serial = f"{cert.serial_number:032x}"
        assert serial in records or (store.issued_dir(serial) / "cert.pem").exists()


ISSUE_CLIENT = ["issue-client", "c1", "--out"]  # one transaction, committed after every file
CLIENT_ONLY = ["client-context", "c1", "--host", "docker1", "--client-only", "--out"]


@pytest.mark.parametrize(
    ("command", "step"),
    [
        (ISSUE_CLIENT, "before-files"),  # record inserted, no file written
        (ISSUE_CLIENT, "before-commit"),  # store copies and --out written, not committed
        (ISSUE_CLIENT, "after-commit"),  # everything done
        (CLIENT_ONLY, "before-commit"),  # store copies and --out written, not committed
        (CLIENT_ONLY, "after-commit"),  # everything done, in one transaction
    ],
)
def test_a_kill_at_each_step_of_an_issuance_leaves_the_safe_side(
    store: CAStore, tmp_path: Path, command: list[str], step: str
) -> None:
    out = tmp_path / "c1"
    r = run_certkit(*command, str(out), env={"CERTKIT_TEST_CRASH_AT": step})
    assert r.returncode == -9, (step, r.stderr)
    _check_consistent(store, out)
    recorded = store.inventory().find(kind="client")
    assert len(recorded) == (0 if step in ("before-files", "before-commit") else 1)
    cli_ok(*command, str(out), "--force")  # the next run just works
    _check_consistent(store, out)
    (item,) = [i for i in cli_json("list", "--kind", "client") if i["status"] == "valid"]
    assert (out / "cert.pem").exists() and item["installed"]
    assert all(p.startswith(str(out)) for p in item["installed"])


# ---------------------------------------------------------------- corruption


COMMANDS = [
    ["status"],
    ["list"],
    ["issue-client", "x", "--out", "{tmp}/x"],
    ["issue-server", "s.example.com", "--out", "{tmp}/s"],
    ["client-context", "ctx", "--host", "docker1"],
    ["ci", "export", "gha", "--host", "docker1"],
    ["renew", "client", "x"],
]


@pytest.mark.parametrize("damage", ["random bytes in the database", "inventory.json not UTF-8"])
def test_a_corrupt_inventory_is_one_sentence_and_exit_1_everywhere(
    store: CAStore, tmp_path: Path, docker_config: Path, damage: str
) -> None:
    for p in store.dir.glob("inventory.sqlite3*"):
        p.unlink()
    garbage = os.urandom(4096) + b"\xff\xfe"
    if damage.startswith("random"):
        store.inventory_path.write_bytes(garbage)
    else:
        (store.dir / "inventory.json").write_bytes(b'{"version": 2, "records": [' + garbage)
    before = _tree(store.dir)
    for args in COMMANDS:
        r = run_certkit(*(a.format(tmp=tmp_path) for a in args))
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        (line,) = r.stderr.strip().splitlines()
        assert "inventory" in line and ("restore it from a backup" in line), (args, line)
        assert _tree(store.dir) == before, args  # nothing written, nothing half-written
    assert not any(tmp_path.glob("[xs]")) and not (docker_config / "contexts").exists()
    doctor = run_certkit("doctor", "--root", str(tmp_path), "--json")
    checks = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "inventory"]
    assert doctor.returncode == 1
    assert [c["status"] for c in checks] == ["FAIL"]


def test_doctor_runs_integrity_check_on_every_inventory(store: CAStore, tmp_path: Path) -> None:
    cli_ok("init-ca", "--ca", "prod")
    report = json.loads(run_certkit("doctor", "--root", str(tmp_path), "--json").stdout)
    checks = [c for c in report["checks"] if c["name"] == "inventory"]
    assert [c["status"] for c in checks] == ["PASS", "PASS"]
    assert "'default' passes integrity_check" in checks[0]["message"]


# ---------------------------------------------------------------- backup


def test_backup_is_a_private_tar_with_a_consistent_database(
    store: CAStore, tmp_path: Path, certkit_home: Path
) -> None:
    cli_ok("issue-client", "--count", "3", "--out", str(tmp_path / "c"))
    listed = cli_json("list")
    writer = sqlite3.connect(store.inventory_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a transaction
    writer.execute("UPDATE records SET name = 'uncommitted'")
    out = tmp_path / "backup.tar"
    result = cli_json("ca", "backup", "--out", str(out))
    writer.execute("ROLLBACK")
    writer.close()
    assert result["records"] == 4 and result["key_encrypted"] is result["key_on_token"] is False
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert "default/ca-key.pem" in names and "default/inventory.sqlite3" in names
        assert not [n for n in names if n.endswith(("-wal", "-shm", ".lock"))]
        assert stat.S_IMODE(tar.getmember("default/ca-key.pem").mode) == 0o600
        restored = tmp_path / "restored"
        (restored / "cas").mkdir(parents=True)
        tar.extractall(restored / "cas", filter="tar")
    again = run_certkit("list", "--json", env={"CERTKIT_HOME": str(restored)})
    assert json.loads(again.stdout) == listed  # without the uncommitted change

    body = out.read_bytes()
    r = run_certkit("ca", "backup", "--out", str(out))
    assert r.returncode == 2 and "--force" in r.stderr and out.read_bytes() == body
    link = tmp_path / "link.tar"
    link.symlink_to(tmp_path / "elsewhere.tar")
    r = run_certkit("ca", "backup", "--out", str(link), "--force")
    assert r.returncode == 2 and "symbolic link" in r.stderr
    assert not (tmp_path / "elsewhere.tar").exists()
    cli_ok("ca", "backup", "--out", str(out), "--force")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_backup_of_a_store_still_on_inventory_json_migrates_it_first(store: CAStore) -> None:
    written = _as_json_inventory(store)
    out = store.root / "backup.tar"
    r = run_certkit("ca", "backup", "--out", str(out), "--json")
    assert r.returncode == 0 and "migrated the inventory" in r.stderr
    assert json.loads(r.stdout)["records"] == len(written) == 1
