"""Typed origins: every kind round-trips, and an inventory written before them still renews.

Inventory version 1 (certkit before typed origins) kept how a certificate was
issued in a flat ``options`` dictionary.  ``_as_version_1`` writes a store's
inventory back in that shape, key for key as the old writers did
(issue-server, --ssh, --out, client-context, --client-only, ci export, bulk,
renewal), and the tests check that today's code migrates it into the
database, lists it and renews every kind the way it was first issued.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import cli_json, cli_ok, run_certkit

from certkit.ci import decode_bundle
from certkit.install_options import InstallOptions
from certkit.origins import (
    CAOrigin,
    CIOrigin,
    ClientOrigin,
    Origin,
    ServerOrigin,
    origin_from_json,
    origin_to_json,
)
from certkit.store import CAStore
from certkit.targets import AnsibleRef, LocalRef, SSHRef, UnknownRef


@pytest.mark.parametrize(
    ("kind", "origin"),
    [
        ("ca", CAOrigin(rotated_from="AB:CD")),
        ("server", ServerOrigin(sans=("docker1", "10.0.0.5"), days=90, out="/srv/out")),
        (
            "server",
            ServerOrigin(
                sans=("docker1",),
                install=InstallOptions(listen="10.0.0.5", port=2377, method="systemd"),
                target=SSHRef("ops@docker1:2222", True, "/tmp/root", "/k/id", ("Port=22",)),
                trust=("AA", "BB"),
                renewed_from="0f",
            ),
        ),
        (
            "server",
            ServerOrigin(
                sans=("h1",),
                install=InstallOptions(),
                target=AnsibleRef("h1", "/srv/inventory.ini", "root@10.0.0.7:22", True),
            ),
        ),
        ("server", ServerOrigin(target=LocalRef("/tmp/root"))),
        ("client", ClientOrigin(context="prod", host="docker1", port=2376, docker_config="/d")),
        ("client", ClientOrigin(out="/srv/client", endpoint="tcp://docker1:2376", days=30)),
        ("ci", CIOrigin(host="docker1", port=2376, context="gha", days=30, key_type="ec-p384")),
    ],
)
def test_every_origin_round_trips_through_json(kind: str, origin: Origin) -> None:
    stored = json.loads(json.dumps(origin_to_json(origin)))
    assert origin_from_json(kind, stored) == origin


def _v1_options(kind: str, origin: dict[str, Any]) -> dict[str, Any]:
    """The flat dictionary the version-1 writers recorded for this origin."""
    if kind == "server":
        target = origin.pop("target")
        install = origin.pop("install")
        options = {**origin, "install": install is not None, "root": target.get("sandbox")}
        if target.get("ssh"):
            options.update(ssh=target["ssh"], sudo=target["sudo"])
        options.update(install or {})
    else:
        options = dict(origin)
    return {k: v for k, v in options.items() if v not in (None, (), [])}


def _as_version_1(store: CAStore) -> None:
    """Replace the store's database by the inventory.json certkit 0.x wrote (version 1)."""
    records = [r.to_dict() for r in store.inventory().find()]
    for record in records:
        record["options"] = _v1_options(record["kind"], record.pop("origin"))
    for p in store.dir.glob("inventory.sqlite3*"):
        p.unlink()
    legacy = store.dir / "inventory.json"
    legacy.write_text(json.dumps({"version": 1, "records": records}, indent=2))


def test_a_version_1_inventory_lists_and_renews_every_kind(
    store: CAStore, tmp_path: Path, docker_config: Path
) -> None:
    root = tmp_path / "root"
    cli_ok("issue-server", "docker1", "--san", "10.0.0.5", "--install", "--root", str(root),
           "--method", "daemon-json", "--port", "2377")  # fmt: skip
    cli_ok("issue-server", "docker2", "--out", str(tmp_path / "srv"))
    cli_ok("client-context", "prod", "--host", "docker1", "--port", "2377")
    cli_ok("client-context", "files", "--host", "docker1", "--client-only",
           "--out", str(tmp_path / "files"))  # fmt: skip
    cli_ok("ci", "export", "gha", "--host", "docker1:2377", "--days", "20")
    cli_ok("issue-client", "bulk-1", "--out", str(tmp_path / "bulk"))
    cli_ok("renew", "client", "prod")  # a renewed record: renewed_from and trust
    before = cli_json("list")
    _as_version_1(store)
    first = run_certkit("list", "--json")  # the first command migrates, and says so once
    assert first.returncode == 0 and json.loads(first.stdout) == before
    assert "migrated the inventory of CA 'default' (8 records)" in first.stderr
    assert "migrated" not in run_certkit("list").stderr
    assert not (store.dir / "inventory.json").exists()
    assert len(list(store.dir.glob("inventory.json.migrated-*"))) == 1

    server = cli_json("renew", "server", "docker1")  # under the recorded --root
    server_files = ("ca.pem", "server-cert.pem", "server-key.pem")
    assert server["installed"] == sorted(str(root / "etc/docker/certkit" / f) for f in server_files)
    config = json.loads((root / "etc/docker/daemon.json").read_text())
    assert "tcp://0.0.0.0:2377" in config["hosts"]  # the recorded port and method, not defaults
    out = cli_json("renew", "server", "docker2")["installed"]
    assert out == sorted(str(tmp_path / "srv" / f) for f in server_files)
    context = cli_json("renew", "client", "prod")
    assert context["notes"][0].startswith("docker context 'prod' updated in place")
    files = cli_json("renew", "client", "files")
    written = sorted(str(tmp_path / "files" / f) for f in ("ca.pem", "cert.pem", "key.pem"))
    assert files["installed"] == written
    bundle = decode_bundle(cli_ok("renew", "ci", "gha", "--format", "bundle").strip())
    assert (bundle.host, bundle.port, bundle.context) == ("docker1", 2377, "gha")
    ci_days = [i["days_left"] for i in cli_json("list", "--kind", "ci")]
    assert 19 < max(ci_days) <= 20  # the recorded --days 20, not the 30-day default
    assert store.inventory().count() == 8 + 5  # the migrated records and the renewals


@pytest.mark.parametrize(
    ("stored", "reopened"),
    [
        (
            {"ssh": "ops@docker1:2222", "sudo": True, "sandbox": None},
            SSHRef("ops@docker1:2222", True),
        ),
        ({"ssh": None, "sudo": False, "sandbox": "/tmp/r"}, LocalRef("/tmp/r")),
        ({"ssh": None, "sudo": False, "sandbox": None}, LocalRef()),
    ],
)
def test_a_record_with_the_older_host_reference_reads_back_as_its_kind(
    stored: dict[str, Any], reopened: object
) -> None:
    """Records written before the target registry kept ``HostRef`` (ssh, sudo, sandbox)."""
    origin = origin_from_json("server", {"sans": ["docker1"], "target": stored})
    assert isinstance(origin, ServerOrigin) and origin.target == reopened
    assert origin_to_json(origin)["target"]["kind"] == reopened.kind  # type: ignore[attr-defined]


def test_a_target_kind_this_certkit_does_not_know_is_kept_as_is() -> None:
    data = {"sans": ["h"], "target": {"kind": "teleport", "user": "dock", "uid": 1000}}
    origin = origin_from_json("server", data)
    assert isinstance(origin, ServerOrigin) and isinstance(origin.target, UnknownRef)
    assert origin_to_json(origin)["target"] == data["target"]


def test_an_inventory_holding_the_older_host_reference_renews_from_it(
    store: CAStore, tmp_path: Path
) -> None:
    """The database migration is on read: a row with the older ``target`` still renews."""
    import sqlite3

    root = tmp_path / "root"
    cli_ok("issue-server", "docker1", "--install", "--root", str(root), "--method", "daemon-json")
    db = store.dir / "inventory.sqlite3"
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT serial, origin FROM records WHERE kind = 'server'").fetchone()
        origin = json.loads(row[1])
        assert origin["target"] == {"kind": "local", "sandbox": str(root)}
        origin["target"] = {"ssh": None, "sudo": False, "sandbox": str(root)}
        conn.execute("UPDATE records SET origin = ? WHERE serial = ?", (json.dumps(origin), row[0]))
    renewed = cli_json("renew", "server", "docker1")
    assert renewed["installed"][0].startswith(str(root / "etc/docker/certkit"))
    new = store.inventory().get(renewed["serial"])
    assert new is not None and isinstance(new.origin, ServerOrigin)
    assert new.origin.target == LocalRef(str(root))
