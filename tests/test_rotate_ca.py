"""`certkit rotate-ca start|status|finish`: a new CA without locking anyone out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import (
    cli_ok,
    free_port,
    refused,
    run_certkit,
    sandbox_daemon_settings,
    strict_context,
    write_json,
)

from certkit import ca, certs, names
from certkit.store import CAStore


def _fingerprints(pem: bytes) -> list[str]:
    return [certs.fingerprint(c) for c in certs.load_certs(pem)]


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_start_makes_a_new_signing_ca_and_a_two_ca_bundle() -> None:
    cli_ok("init-ca")
    store = CAStore()
    old_pem = store.cert_path.read_bytes()
    old_key = store.key_path.read_bytes()
    old_fp = certs.fingerprint(store.load_cert())

    out = cli_ok("rotate-ca", "start")
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
    cli_ok("init-ca", "--ca", "prod")
    store = CAStore("prod")
    ca.issue(store, "server", "docker1", "docker1", names.parse_names(["docker1"]), days=825)
    ca.issue(store, "client", "laptop", "laptop")
    ca.issue(store, "ci", "deploy", "ci:deploy", days=30)
    cli_ok("rotate-ca", "start", "--ca", "prod")
    ca.issue(store, "client", "new-one", "new-one")  # under the new CA: not listed

    data = json.loads(cli_ok("rotate-ca", "status", "--ca", "prod", "--json"))
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
    cli_ok("init-ca")
    store = CAStore()
    old_fp = certs.fingerprint(store.load_cert())
    ca.issue(store, "server", "docker1", "docker1", names.parse_names(["docker1"]))
    ca.issue(store, "client", "laptop", "laptop")
    cli_ok("rotate-ca", "start")
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
    cli_ok("init-ca")
    store = CAStore()
    past = ca.issue(store, "client", "gone", "gone")
    with store.transaction() as inv:  # an expired or superseded certificate does not count
        rec = inv.get(past.record.serial)
        assert rec is not None
        rec.not_after = "2020-01-01T00:00:00+00:00"
    cli_ok("rotate-ca", "start")
    out = cli_ok("rotate-ca", "status")
    assert "Nothing in use is signed by the old CA any more." in out
    out = cli_ok("rotate-ca", "finish")
    assert "Archived (not deleted)" in out


def test_renewing_a_server_before_its_clients_warns_who_would_be_locked_out(
    tmp_path: Path,
) -> None:
    cli_ok("init-ca")
    root = tmp_path / "root"
    cli_ok("issue-server", "docker1", "--install", "--root", str(root))
    cli_ok("client-context", "laptop", "--host", "docker1")
    cli_ok("rotate-ca", "start")

    # Step 3 before step 2: laptop's ca.pem knows only the old CA.  The warning comes
    # on stderr before anything is written (it used to follow the result on stdout).
    r = run_certkit("renew", "server", "docker1")
    assert r.returncode == 0, r.stderr
    assert "warning: client laptop still trusts only the old CA" in r.stderr
    assert "certkit renew client laptop" in r.stderr

    cli_ok("renew", "client", "laptop")
    r = run_certkit("renew", "server", "docker1")
    assert r.returncode == 0 and "warning" not in r.stderr.lower(), r.stderr


def test_encrypted_ca_key_stays_encrypted_and_a_wrong_passphrase_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"CERTKIT_CA_PASSPHRASE": "correct horse"}
    cli_ok("init-ca", "--encrypt", env=env)
    store = CAStore()
    before = _tree(store.dir)

    r = run_certkit("rotate-ca", "start", env={"CERTKIT_CA_PASSPHRASE": "wrong"})
    assert r.returncode == 2
    assert "Wrong passphrase" in r.stderr
    assert _tree(store.dir) == before

    cli_ok("rotate-ca", "start", "--key-type", "ec-p384", env=env)
    new_key = store.key_path.read_bytes()
    assert certs.is_encrypted_pem(new_key)
    key = certs.load_key(new_key, b"correct horse")
    assert certs.key_type_of(key) == "ec-p384"
    assert certs.key_matches_cert(key, store.load_cert())
    # Issuing under the new CA works with the same passphrase.
    monkeypatch.setenv("CERTKIT_CA_PASSPHRASE", "correct horse")
    issued = ca.issue(store, "client", "x", "x")
    assert certs.signed_by(issued.cert, store.load_cert())


# ---------------------------------------------------------------- end to end, real dockerd


def _docker_version(context: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "--context", context, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _context_tls(docker_config: Path, name: str) -> Path:
    meta = next(
        p
        for p in (docker_config / "contexts/meta").rglob("meta.json")
        if json.loads(p.read_text())["Name"] == name
    )
    return docker_config / "contexts/tls" / meta.parent.name / "docker"


def _gets_in(port: int, ca_file: Path, cert: Path, key: Path) -> bool:
    return not refused("127.0.0.1", port, strict_context(ca_file, cert, key), "localhost")


def test_rotation_end_to_end_against_a_real_dockerd(
    sandbox: Path, dockerd: Any, docker_config: Path, tmp_path: Path
) -> None:
    cli_ok("init-ca")
    store = CAStore()
    port = free_port()
    root = sandbox / "root"
    sock = str(sandbox / "docker.sock")
    config = root / "etc/docker/daemon.json"
    write_json(config, {**sandbox_daemon_settings(sandbox), "hosts": [f"unix://{sock}"]})
    cli_ok(
        "issue-server", "localhost", "--san", "127.0.0.1", "--install", "--root", str(root),
        "--method", "daemon-json", "--listen", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    tlscacert = root / "etc/docker/certkit/ca.pem"
    daemon = dockerd(config_file=config, unix_socket=sock, tcp=[("127.0.0.1", port)])

    def restart() -> None:  # what `systemctl restart docker` does for the real daemon
        nonlocal daemon
        daemon.stop()
        daemon = dockerd(config_file=config, unix_socket=sock, tcp=[("127.0.0.1", port)])

    cli_ok("client-context", "old", "--host", "localhost", "--port", str(port))
    # Keep the old-CA client's files: after its renewal they prove who gets in.
    old_files = tmp_path / "old-client"
    shutil.copytree(_context_tls(docker_config, "old"), old_files)
    old_cert, old_key = old_files / "cert.pem", old_files / "key.pem"
    old_ca_fp = certs.fingerprint(store.load_cert())
    assert _docker_version("old").returncode == 0

    out = cli_ok("rotate-ca", "start")
    new_ca_fp = certs.fingerprint(store.load_cert())
    assert "certkit renew server localhost --bundle-only --restart" in out

    # 1. The server learns to trust both CAs; its certificate stays.
    out = cli_ok("renew", "server", "localhost", "--bundle-only")
    assert "Restart needed" in out
    assert _fingerprints(tlscacert.read_bytes()) == [new_ca_fp, old_ca_fp]
    restart()
    status = json.loads(cli_ok("rotate-ca", "status", "--json"))
    server_dep = [d for d in status["dependents"] if d["kind"] == "server"]
    assert "does not trust" not in server_dep[0]["why"]

    # A client of the NEW CA and the client of the OLD CA both get in (two-CA tlscacert).
    cli_ok("client-context", "new", "--host", "localhost", "--port", str(port))
    new_tls = _context_tls(docker_config, "new")
    assert _fingerprints((new_tls / "ca.pem").read_bytes()) == [new_ca_fp, old_ca_fp]
    assert _docker_version("new").returncode == 0, _docker_version("new").stderr
    assert _docker_version("old").returncode == 0
    assert _gets_in(port, store.bundle_path, old_cert, old_key)
    assert _gets_in(port, store.bundle_path, new_tls / "cert.pem", new_tls / "key.pem")

    # finish refuses while the old CA still signs the server and the "old" client.
    r = run_certkit("rotate-ca", "finish")
    assert r.returncode == 1
    assert "server localhost" in r.stderr and "client old" in r.stderr
    assert store.bundle_path.exists() and store.previous_dir.exists()

    # 2. Clients move to the new CA, 3. then the server does.
    cli_ok("renew", "client", "old")
    assert _docker_version("old").returncode == 0  # new cert, server still on the old CA
    out = cli_ok("renew", "server", "localhost")
    assert "Restart needed" in out
    restart()
    assert _docker_version("new").returncode == 0
    assert _docker_version("old").returncode == 0
    assert _gets_in(port, store.bundle_path, old_cert, old_key)  # not cut off yet

    # 4. finish, then re-install the server's tlscacert without the old CA.
    out = cli_ok("rotate-ca", "finish")
    assert "certkit renew server localhost --bundle-only --restart" in out
    assert "certkit renew client new --bundle-only" in out
    cli_ok("renew", "server", "localhost", "--bundle-only")
    assert _fingerprints(tlscacert.read_bytes()) == [new_ca_fp]
    restart()
    cli_ok("renew", "client", "new", "--bundle-only")
    assert _fingerprints((new_tls / "ca.pem").read_bytes()) == [new_ca_fp]

    assert _docker_version("new").returncode == 0
    assert _gets_in(port, store.cert_path, new_tls / "cert.pem", new_tls / "key.pem")
    # The old CA's client certificate is refused by the daemon now.
    assert not _gets_in(port, store.cert_path, old_cert, old_key)
    # status keeps pointing at every ca.pem that still lists the old CA, until none does.
    reinstall = json.loads(cli_ok("rotate-ca", "status", "--json"))["reinstall"]
    assert [(d["kind"], d["name"], d["command"]) for d in reinstall] == [
        ("client", "old", "certkit renew client old --bundle-only")
    ]
    cli_ok("renew", "client", "old", "--bundle-only")
    assert json.loads(cli_ok("rotate-ca", "status", "--json"))["reinstall"] == []
    assert _docker_version("old").returncode == 0
