"""`certkit rotate-ca start|status|finish`: a new CA without locking anyone out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import run_certkit

from certkit import ca, certs
from certkit.store import CAStore


def _ok(*args: str, env: dict[str, str] | None = None) -> str:
    r = run_certkit(*args, env=env)
    assert r.returncode == 0, f"{args}: {r.stdout}{r.stderr}"
    return r.stdout


def _fingerprints(pem: bytes) -> list[str]:
    return [certs.fingerprint(c) for c in certs.load_certs(pem)]


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_start_makes_a_new_signing_ca_and_a_two_ca_bundle() -> None:
    _ok("init-ca")
    store = CAStore()
    old_pem = store.cert_path.read_bytes()
    old_key = store.key_path.read_bytes()
    old_fp = certs.fingerprint(store.load_cert())

    out = _ok("rotate-ca", "start")
    assert "No dockerd needs a restart yet." in out

    new = store.load_cert()
    new_fp = certs.fingerprint(new)
    assert new_fp != old_fp
    assert certs.common_name(new) != certs.common_name(certs.load_cert(old_pem))
    # The old CA is kept as it was, key included, private.
    assert (store.previous_dir / "ca.pem").read_bytes() == old_pem
    assert (store.previous_dir / "ca-key.pem").read_bytes() == old_key
    assert (store.previous_dir / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert store.previous_dir.stat().st_mode & 0o777 == 0o700
    # What every helper hands out as ca.pem now holds both, new first.
    assert _fingerprints(store.trust_bundle_pem()) == [new_fp, old_fp]
    # New leaves are signed by the new CA and carry the bundle.
    issued = ca.issue(store, "client", "after", "after")
    assert certs.signed_by(issued.cert, new)
    assert _fingerprints(issued.ca_pem) == [new_fp, old_fp]
    # The inventory knows the old CA is superseded by the new one.
    cas = {r.fingerprint: r for r in store.inventory().find(kind="ca")}
    assert cas[old_fp].superseded_by == cas[new_fp].serial

    r = run_certkit("rotate-ca", "start")
    assert r.returncode == 2
    assert "already under way" in r.stderr


def test_status_lists_what_the_old_ca_signed_with_the_renew_command() -> None:
    _ok("init-ca", "--ca", "prod")
    store = CAStore("prod")
    ca.issue(store, "server", "docker1", "docker1", certs.parse_names(["docker1"]), days=825)
    ca.issue(store, "client", "laptop", "laptop")
    ca.issue(store, "ci", "deploy", "ci:deploy", days=30)
    _ok("rotate-ca", "start", "--ca", "prod")
    ca.issue(store, "client", "new-one", "new-one")  # under the new CA: not listed

    data = json.loads(_ok("rotate-ca", "status", "--ca", "prod", "--json"))
    assert data["state"] == "rotating"
    listed = {(d["kind"], d["name"]): d["command"] for d in data["dependents"]}
    assert listed == {
        ("server", "docker1"): "certkit renew server docker1 --ca prod",
        ("client", "laptop"): "certkit renew client laptop --ca prod",
        ("ci", "deploy"): "certkit renew ci deploy --ca prod",
    }
    steps = "\n".join(data["steps"])
    # Servers first learn to trust the new CA, clients move, servers move, then finish.
    order = [
        steps.index("certkit renew server docker1 --bundle-only --restart --ca prod"),
        steps.index("certkit renew client laptop --ca prod"),
        steps.index("certkit renew server docker1 --restart --ca prod"),
        steps.index("certkit rotate-ca finish --ca prod"),
    ]
    assert order == sorted(order)
    assert data["restart_needed"] is True


def test_finish_refuses_with_the_list_then_archives_with_force() -> None:
    _ok("init-ca")
    store = CAStore()
    old_fp = certs.fingerprint(store.load_cert())
    ca.issue(store, "server", "docker1", "docker1", certs.parse_names(["docker1"]))
    ca.issue(store, "client", "laptop", "laptop")
    _ok("rotate-ca", "start")
    before = _tree(store.dir)

    r = run_certkit("rotate-ca", "finish")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "server docker1 (certkit renew server docker1)" in r.stderr
    assert "client laptop (certkit renew client laptop)" in r.stderr
    assert _tree(store.dir) == before  # refused: nothing changed

    r = run_certkit("rotate-ca", "finish", "--force", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["state"] == "finished"
    assert {d["name"] for d in data["dependents"]} == {"docker1", "laptop"}
    assert "no longer get in" in r.stderr
    archive = Path(data["archived"])
    # Archived, never deleted; the bundle is gone, so ca.pem is the new CA alone.
    assert archive.parent == store.retired_dir
    assert old_fp.replace(":", "")[:16].lower() in archive.name
    assert _fingerprints((archive / "ca.pem").read_bytes()) == [old_fp]
    assert (archive / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert not store.bundle_path.exists() and not store.previous_dir.exists()
    assert _fingerprints(store.trust_bundle_pem()) == [certs.fingerprint(store.load_cert())]

    r = run_certkit("rotate-ca", "finish")
    assert r.returncode == 2 and "No rotation" in r.stderr


def test_finish_is_allowed_once_nothing_depends_on_the_old_ca() -> None:
    _ok("init-ca")
    store = CAStore()
    past = ca.issue(store, "client", "gone", "gone")
    with store.transaction() as inv:  # an expired or superseded certificate does not count
        rec = inv.get(past.record.serial)
        assert rec is not None
        rec.not_after = "2020-01-01T00:00:00+00:00"
    _ok("rotate-ca", "start")
    out = _ok("rotate-ca", "status")
    assert "Nothing in use is signed by the old CA any more." in out
    out = _ok("rotate-ca", "finish")
    assert "Archived (not deleted)" in out


def test_encrypted_ca_key_stays_encrypted_and_a_wrong_passphrase_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"CERTKIT_CA_PASSPHRASE": "correct horse"}
    _ok("init-ca", "--encrypt", env=env)
    store = CAStore()
    before = _tree(store.dir)

    r = run_certkit("rotate-ca", "start", env={"CERTKIT_CA_PASSPHRASE": "wrong"})
    assert r.returncode == 2
    assert "Wrong passphrase" in r.stderr
    assert _tree(store.dir) == before

    _ok("rotate-ca", "start", "--key-type", "ec-p384", env=env)
    new_key = store.key_path.read_bytes()
    assert certs.is_encrypted_pem(new_key)
    key = certs.load_key(new_key, b"correct horse")
    assert certs.key_type_of(key) == "ec-p384"
    assert certs.key_matches_cert(key, store.load_cert())
    # Issuing under the new CA works with the same passphrase.
    monkeypatch.setenv("CERTKIT_CA_PASSPHRASE", "correct horse")
    issued = ca.issue(store, "client", "x", "x")
    assert certs.signed_by(issued.cert, store.load_cert())
