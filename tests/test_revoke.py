"""`certkit revoke`, roles and `certkit ca crl`: what the inventory records and hands out."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from support import cli_json, cli_ok, run_certkit

from certkit import inventorydb
from certkit.store import CAStore


def _client(name: str, *extra: str) -> dict[str, object]:
    return cli_json("client-context", name, "--host", "localhost", *extra)  # type: ignore[no-any-return]


def test_revoke_is_recorded_listed_counted_and_exported_as_a_metric(store: CAStore) -> None:
    alice = _client("alice")
    _client("bob")

    done = cli_json("revoke", "alice", "--reason", "laptop stolen")
    assert done["serial"] == alice["serial"]
    assert done["already_revoked"] is False
    assert done["reason"] == "laptop stolen"
    assert done["push"] == {"digest": done["push"]["digest"], "pushed": [], "failed": {}}

    by_name = {i["name"]: i for i in cli_json("list", "--kind", "client")}
    assert by_name["alice"]["status"] == "revoked"
    assert by_name["alice"]["revoked_at"] == done["revoked_at"]
    assert by_name["bob"]["status"] == "valid"

    status = cli_json("status")
    assert status["revoked"] == 1
    assert "1 revoked certificate" in cli_ok("status")

    metrics = cli_ok("status", "--format", "prometheus")
    labels = f'ca="default",kind="client",name="alice",serial="{alice["serial"]}"'
    assert f"certkit_cert_revoked{{{labels}}} 1.0" in metrics
    assert (
        'name="bob"' in metrics
        and 'certkit_cert_revoked{ca="default",kind="client",name="bob"' in metrics
    )

    again = cli_json("revoke", alice["serial"], "--no-push")  # by serial; the first time stays
    assert again["already_revoked"] is True
    assert again["revoked_at"] == done["revoked_at"] and again["reason"] == "laptop stolen"


def test_renew_never_reissues_a_revoked_certificate(store: CAStore) -> None:
    _client("alice")
    cli_ok("revoke", "alice", "--no-push")
    r = run_certkit("renew", "client", "alice")
    assert r.returncode == 2
    assert "was revoked on" in r.stderr and "renewal never re-issues it" in r.stderr
    _client("bob")
    due = cli_json("renew", "--expiring-within", "400", "--dry-run")
    assert "bob" in json.dumps(due) and "alice" not in json.dumps(due)
    assert len(cli_json("list", "--kind", "client")) == 2  # nothing was issued


def test_revoke_refuses_unknown_names_ambiguous_names_and_bad_reasons(store: CAStore) -> None:
    _client("alice")
    for args, words in [
        (["revoke", "nobody"], "no certificate named 'nobody'"),
        (["revoke", "alice", "--reason", ""], "--reason must be one line"),
        (["revoke", "alice", "--kind", "ca"], "--kind must be one of"),
    ]:
        r = run_certkit(*args)
        assert r.returncode == 2, r.stdout
        assert words in r.stderr
    assert cli_json("list", "--kind", "client")[0]["status"] == "valid"


def _openssl_crl(crl: Path, ca: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = ["openssl", "crl", "-in", str(crl), "-CAfile", str(ca), "-noout", "-verify", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_crl_is_signed_by_the_ca_and_lists_the_revoked_serials(
    store: CAStore, tmp_path: Path
) -> None:
    alice, bob = _client("alice"), _client("bob")
    cli_ok("revoke", "alice", "--reason", "keyCompromise", "--no-push")
    out = tmp_path / "ca.crl"
    data = cli_json("ca", "crl", "--out", str(out))
    assert data["revoked"] == 1 and data["path"] == str(out)
    assert out.stat().st_mode & 0o777 == 0o644
    verify = _openssl_crl(out, store.cert_path, "-text")
    assert verify.returncode == 0 and "verify OK" in verify.stderr + verify.stdout, verify.stderr
    assert str(alice["serial"]).upper() in verify.stdout
    assert str(bob["serial"]).upper() not in verify.stdout
    assert "Key Compromise" in verify.stdout
    # Signed by another CA it does not verify: the check above can fail.
    cli_ok("init-ca", "--ca", "other")
    bad = _openssl_crl(out, CAStore("other").cert_path)
    assert "verify OK" not in bad.stderr + bad.stdout
    assert run_certkit("ca", "crl", "--out", str(out)).returncode == 2  # no --force: kept


def test_a_version_1_inventory_is_upgraded_in_place_and_keeps_its_records(
    store: CAStore,
) -> None:
    alice = _client("alice")
    db = store.dir / inventorydb.DB_NAME
    # Rebuild the database as certkit wrote it before revocation (schema 1).
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT serial, kind, name, subject, sans, not_before, not_after, fingerprint, key_type, "
        "issuer_fingerprint, created, origin, superseded_by FROM records ORDER BY id"
    ).fetchall()
    installed = conn.execute("SELECT serial, path FROM installed").fetchall()
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    for statement in inventorydb.SCHEMA_V1:  # the old schema, exactly
        conn.execute(statement)
    conn.executemany(f"INSERT INTO records VALUES (NULL, {', '.join('?' * 13)})", rows)
    conn.executemany("INSERT INTO installed VALUES (?, ?)", installed)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    listed = {i["name"]: i for i in cli_json("list")}
    assert listed["alice"]["serial"] == alice["serial"] and listed["alice"]["status"] == "valid"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == inventorydb.SCHEMA_VERSION
    conn.close()
    cli_ok("revoke", "alice", "--no-push")
    assert cli_json("list", "--kind", "client")[0]["status"] == "revoked"


def test_roles_are_recorded_for_contexts_and_ci_and_checked_before_issuing(
    store: CAStore, tmp_path: Path
) -> None:
    _client("alice", "--role", "read-only")
    _client("bob")
    r = run_certkit("client-context", "carol", "--host", "localhost", "--role", "deployer")
    assert r.returncode == 2 and "Unknown role 'deployer'" in r.stderr
    assert "carol" not in {i["name"] for i in cli_json("list")}  # refused before issuing

    roles = tmp_path / "roles.json"
    roles.write_text(
        json.dumps({"roles": {"deployer": ["GET /_ping", "POST /containers/*/start"]}})
    )
    assert cli_json("policy", "configure", "--roles", str(roles), "--default", "deny")["roles"]
    cli_ok(
        "ci",
        "export",
        "deploy",
        "--host",
        "localhost",
        "--role",
        "deployer",
        "--out",
        str(tmp_path / "s"),
    )

    policy = cli_json("policy", "show")["policy"]
    assert policy["identities"] == {"alice": "read-only", "bob": "full", "ci:deploy": "deployer"}
    assert policy["default_role"] == "deny"
    assert policy["roles"] == {"deployer": ["GET /_ping", "POST /containers/*/start"]}
    assert policy["format"] == 1 and len(policy["digest"]) == 16


def test_a_roles_file_is_validated_on_load(store: CAStore, tmp_path: Path) -> None:
    roles = tmp_path / "roles.json"
    for content, words in [
        ("{not json", "not valid JSON"),
        ('{"roles": {"Bad Name": ["GET /_ping"]}}', "role name 'Bad Name'"),
        ('{"roles": {"x": ["FETCH /_ping"]}}', "method must be one of"),
        ('{"roles": {"x": ["GET containers"]}}', "the path must start with /"),
        ('{"roles": {"x": ["GET /a*b"]}}', "segment 'a*b'"),
        ('{"roles": {"x": []}}', "non-empty list"),
        ('{"roles": {}, "default_role": "read-only"}', "default_role must be full or deny"),
        ('{"rules": {}}', "must be a JSON object with 'roles'"),
    ]:
        roles.write_text(content)
        r = run_certkit("policy", "configure", "--roles", str(roles))
        assert r.returncode == 2, content
        assert words in r.stderr, (content, r.stderr)
    assert not (store.dir / "authz-roles.json").exists()  # nothing half-saved


def test_a_custom_role_in_use_cannot_be_dropped(store: CAStore, tmp_path: Path) -> None:
    roles = tmp_path / "roles.json"
    roles.write_text('{"roles": {"deployer": ["GET /_ping"]}}')
    cli_ok("policy", "configure", "--roles", str(roles))
    _client("dave", "--role", "deployer")
    roles.write_text('{"roles": {}}')
    r = run_certkit("policy", "configure", "--roles", str(roles))
    assert r.returncode == 2 and "'deployer' is given to an identity" in r.stderr


def test_the_docs_list_exactly_the_endpoints_read_only_allows() -> None:
    from support import REPO

    from certkit.authz import plugin

    text = (REPO / "docs" / "revocation.md").read_text()
    table = text.split("### What `read-only` allows", 1)[1].split("###", 1)[0]
    rows = [
        line.strip("| ").replace("`", "").replace(" | ", " ")
        for line in table.splitlines()
        if line.startswith("| `")
    ]
    assert rows == list(plugin.READ_ONLY)
