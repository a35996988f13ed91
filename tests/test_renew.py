"""`certkit renew`: re-issue like the first time, put the files where the old ones were."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sshd_support import SSHServer, sshd_binary, start_sshd
from support import cli_ok, free_port, run_certkit, sandbox_daemon_settings, write_json

from certkit import ca, certs
from certkit.ci import check_bundle, decode_bundle
from certkit.origins import CIOrigin
from certkit.store import CAStore


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def _seed_root(base: Path, port: int) -> tuple[Path, Path, str]:
    """ROOT/etc/docker/daemon.json with the test daemon's settings; returns (root, config, sock)."""
    root = base / "root"
    sock = str(base / "docker.sock")
    config = root / "etc/docker/daemon.json"
    write_json(config, {**sandbox_daemon_settings(base), "hosts": [f"unix://{sock}"]})
    return root, config, sock


def _install_server(root: Path, port: int) -> None:
    cli_ok(
        "issue-server", "localhost", "--san", "127.0.0.1", "--install", "--root", str(root),
        "--method", "daemon-json", "--listen", "127.0.0.1", "--port", str(port),
    )  # fmt: skip


def _served_fingerprint(port: int) -> str:
    """Fingerprint of the certificate dockerd presents on ``port`` (no client cert needed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return certs.fingerprint(certs.load_cert(ssl.DER_cert_to_PEM_cert(der).encode()))


def _docker_version(context: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "--context", context, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _active(store: CAStore, kind: str, name: str) -> Any:
    records = [r for r in store.inventory().find(kind=kind, name=name) if not r.superseded_by]
    assert len(records) == 1, records
    return records[0]


def test_renewed_server_after_a_restart_serves_an_unchanged_client_context(
    sandbox: Path, dockerd: Any, docker_config: Path
) -> None:
    cli_ok("init-ca")
    store = CAStore()
    port = free_port()
    root, config, sock = _seed_root(sandbox, port)
    _install_server(root, port)
    daemon = dockerd(config_file=config, unix_socket=sock, tcp=[("127.0.0.1", port)])
    cli_ok("client-context", "it", "--host", "localhost", "--port", str(port))
    first = _docker_version("it")
    assert first.returncode == 0 and first.stdout.strip(), first.stderr
    context_files = _tree(docker_config / "contexts")
    old = _active(store, "server", "localhost")
    daemon_json = config.read_bytes()
    cert_dir = root / "etc/docker/certkit"

    # A dry run changes nothing, in the store or under ROOT.
    store_before, root_before = _tree(store.dir), _tree(root)
    out = cli_ok("renew", "server", "localhost", "--dry-run")
    assert f"would write {cert_dir}/server-cert.pem" in out
    assert "A restart would be needed" in out
    assert (_tree(store.dir), _tree(root)) == (store_before, root_before)

    out = cli_ok("renew", "server", "localhost")
    new = _active(store, "server", "localhost")
    assert new.serial != old.serial
    assert store.inventory().get(old.serial).superseded_by == new.serial  # type: ignore[union-attr]
    # Same names and key type, a new key, in the same place; daemon.json untouched.
    assert (new.sans, new.subject, new.key_type) == (old.sans, old.subject, old.key_type)
    served_file = certs.load_cert((cert_dir / "server-cert.pem").read_bytes())
    assert certs.fingerprint(served_file) == new.fingerprint
    key = certs.load_key((cert_dir / "server-key.pem").read_bytes())
    assert certs.key_matches_cert(key, served_file)
    assert (cert_dir / "server-key.pem").stat().st_mode & 0o777 == 0o600
    assert config.read_bytes() == daemon_json
    assert "Restart needed" in out and "never reloads" in out

    # dockerd has not reloaded anything: it still serves the old certificate...
    assert _served_fingerprint(port) == old.fingerprint
    # ...until it is restarted from the same daemon.json.
    daemon.stop()
    dockerd(config_file=config, unix_socket=sock, tcp=[("127.0.0.1", port)])
    assert _served_fingerprint(port) == new.fingerprint

    # The existing client context, untouched, still works.
    assert _tree(docker_config / "contexts") == context_files
    again = _docker_version("it")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_renew_server_options_add_names_reuse_key_and_refuse_bad_input(sandbox: Path) -> None:
    cli_ok("init-ca")
    store = CAStore()
    root, _, _ = _seed_root(sandbox, 2376)
    _install_server(root, free_port())
    old = _active(store, "server", "localhost")
    old_key = (root / "etc/docker/certkit/server-key.pem").read_bytes()

    data = json.loads(
        cli_ok("renew", "server", "localhost", "--reuse-key", "--san", "docker1.lan", "--json")
    )
    assert data["ok"] and data["reused_key"] and data["restart_needed"]
    new = _active(store, "server", "localhost")
    assert new.sans == ["localhost", "docker1.lan", "127.0.0.1"]
    assert (root / "etc/docker/certkit/server-key.pem").read_bytes() == old_key
    assert new.serial != old.serial

    store_before, root_before = _tree(store.dir), _tree(root)
    for args, message in (
        (["--san", "bad name"], "not a valid host name"),
        (["--restart"], "sandbox"),
        (["--bundle-only", "--reuse-key"], "--bundle-only keeps the certificate"),
    ):
        r = run_certkit("renew", "server", "localhost", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr
        assert "Traceback" not in r.stderr
    r = run_certkit("renew", "server", "nowhere")
    assert r.returncode == 2 and "no server certificate named 'nowhere'" in r.stderr
    assert "Known server names: localhost" in r.stderr
    assert (_tree(store.dir), _tree(root)) == (store_before, root_before)


def test_renew_client_rewrites_the_context_in_place(docker_config: Path) -> None:
    cli_ok("init-ca")
    store = CAStore()
    cli_ok("client-context", "laptop", "--host", "docker1.example.com", "--days", "90")
    meta = next((docker_config / "contexts/meta").rglob("meta.json")).read_bytes()
    tls = next((docker_config / "contexts/tls").rglob("cert.pem")).parent
    old = _active(store, "client", "laptop")
    old_key = (tls / "key.pem").read_bytes()

    out = cli_ok("renew", "client", "laptop")
    assert "no restart needed" in out
    new = _active(store, "client", "laptop")
    assert store.inventory().get(old.serial).superseded_by == new.serial  # type: ignore[union-attr]
    assert certs.fingerprint(certs.load_cert((tls / "cert.pem").read_bytes())) == new.fingerprint
    assert (tls / "key.pem").read_bytes() != old_key
    assert (tls / "key.pem").stat().st_mode & 0o777 == 0o600
    assert next((docker_config / "contexts/meta").rglob("meta.json")).read_bytes() == meta
    assert 89 <= new.days_left() <= 90  # the validity it was first issued with

    key = (tls / "key.pem").read_bytes()
    cli_ok("renew", "client", "laptop", "--reuse-key", "--days", "10")
    assert (tls / "key.pem").read_bytes() == key
    assert _active(store, "client", "laptop").days_left() <= 10


def test_renew_ci_prints_the_secret_only_when_asked(tmp_path: Path) -> None:
    cli_ok("init-ca")
    store = CAStore()
    cli_ok(
        "ci", "export", "deploy", "--host", "docker1.example.com:2376", "--out", str(tmp_path / "s")
    )
    old = _active(store, "ci", "deploy")

    r = run_certkit("renew", "ci", "deploy")
    assert r.returncode == 0, r.stderr
    new = _active(store, "ci", "deploy")
    assert new.serial != old.serial
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    assert "certkit renew ci deploy --bundle-only --format bundle" in r.stdout

    # --bundle-only renders the certificate in use without issuing another one.
    r = run_certkit("renew", "ci", "deploy", "--bundle-only", "--format", "bundle")
    assert r.returncode == 0, r.stderr
    checked = check_bundle(decode_bundle(r.stdout))
    assert (checked.bundle.host, checked.bundle.port) == ("docker1.example.com", 2376)
    assert certs.fingerprint(certs.load_cert(checked.bundle.cert.encode())) == new.fingerprint
    assert _active(store, "ci", "deploy").serial == new.serial

    out = tmp_path / "new-secret"
    r = run_certkit("renew", "ci", "deploy", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    newest = _active(store, "ci", "deploy")
    bundle = decode_bundle(out.read_text())
    assert certs.fingerprint(certs.load_cert(bundle.cert.encode())) == newest.fingerprint


def _age(store: CAStore, name: str, days: int) -> None:
    """Make the inventory believe ``name`` was issued ``days`` days ago."""
    with store.transaction() as inv:
        for rec in inv.find(name=name):
            for attr in ("not_before", "not_after"):
                when = dt.datetime.fromisoformat(getattr(rec, attr)) - dt.timedelta(days=days)
                setattr(rec, attr, when.isoformat())


def test_expiring_within_renews_only_what_is_due() -> None:
    cli_ok("init-ca")
    store = CAStore()
    ca.issue(store, "client", "soon", "soon", days=365)
    ca.issue(store, "client", "later", "later", days=365)
    ca.issue(store, "ci", "gha", "ci:gha", days=30, origin=CIOrigin(host="docker1", port=2376))
    _age(store, "soon", 355)  # 10 days left
    _age(store, "gha", 25)  # 5 days left

    data = json.loads(cli_ok("renew", "--expiring-within", "30", "--dry-run", "--json"))
    assert [(d["kind"], d["name"]) for d in data["due"]] == [("ci", "gha"), ("client", "soon")]
    assert data["renewed"] == []
    soon = _active(store, "client", "soon")
    assert soon.superseded_by is None

    out = cli_ok("renew", "--expiring-within", "30")
    assert "Renewed client soon" in out and "Renewed ci gha" in out
    assert "PRIVATE KEY" not in out
    assert "certkit renew ci gha --bundle-only --format bundle" in out
    assert _active(store, "client", "soon").serial != soon.serial
    assert _active(store, "client", "soon").days_left() > 364  # renewed with its own validity
    assert _active(store, "ci", "gha").days_left() > 29
    assert _active(store, "client", "later").superseded_by is None

    assert "Nothing expires within 30 days." in cli_ok("renew", "--expiring-within", "30")
    r = run_certkit("renew")
    assert r.returncode == 2 and "--expiring-within" in r.stdout
    r = run_certkit("renew", "--expiring-within", "30", "client", "soon")
    assert r.returncode == 2


def test_encrypted_ca_key_renewal_needs_the_passphrase_and_changes_nothing_without() -> None:
    r = run_certkit("init-ca", "--encrypt", env={"CERTKIT_CA_PASSPHRASE": "s3cret pass"})
    assert r.returncode == 0, r.stderr
    store = CAStore()
    for name in ("ann", "bob"):
        r = run_certkit(
            "client-context", name, "--host", "docker1.example.com",
            env={"CERTKIT_CA_PASSPHRASE": "s3cret pass"},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        _age(store, name, 360)
    before = _tree(store.dir)

    r = run_certkit("renew", "--expiring-within", "30")  # no terminal, no passphrase
    assert r.returncode == 2
    assert "CERTKIT_CA_PASSPHRASE" in r.stderr
    assert _tree(store.dir) == before

    r = run_certkit(
        "renew", "--expiring-within", "30", "--json", env={"CERTKIT_CA_PASSPHRASE": "s3cret pass"}
    )
    assert r.returncode == 0, r.stderr
    assert sorted(x["name"] for x in json.loads(r.stdout)["renewed"]) == ["ann", "bob"]


@pytest.fixture
def sshd(sandbox: Path) -> Iterator[SSHServer]:
    """A real sshd on a loopback port (as in test_ssh_install.py)."""
    if not (sshd_binary() and shutil.which("ssh") and shutil.which("ssh-keygen")):
        if os.environ.get("CERTKIT_REQUIRE_SSHD") == "1":
            pytest.fail("sshd, ssh and ssh-keygen are required (CERTKIT_REQUIRE_SSHD=1)")
        pytest.skip("sshd, ssh or ssh-keygen not installed")
    server = start_sshd(sandbox / "ssh")
    yield server
    server.stop()


def test_a_server_installed_over_ssh_is_renewed_over_ssh(sshd: SSHServer, sandbox: Path) -> None:
    cli_ok("init-ca")
    store = CAStore()
    root, _, _ = _seed_root(sandbox, 2376)
    cli_ok(
        "issue-server", "localhost", "--san", "127.0.0.1", *sshd.cli_args(), "--root", str(root),
        "--method", "daemon-json", "--listen", "127.0.0.1", "--port", str(free_port()),
    )  # fmt: skip
    old = _active(store, "server", "localhost")
    cert_file = root / "etc/docker/certkit/server-cert.pem"
    daemon_json = (root / "etc/docker/daemon.json").read_bytes()

    # --identity and --ssh-option were recorded: renewal (as cron runs it) needs no flag.
    r = run_certkit("renew", "server", "localhost")
    assert r.returncode == 0, r.stderr
    new = _active(store, "server", "localhost")
    assert new.serial != old.serial
    assert certs.fingerprint(certs.load_cert(cert_file.read_bytes())) == new.fingerprint
    assert (root / "etc/docker/daemon.json").read_bytes() == daemon_json
    assert f"{sshd.target}:{cert_file}" in new.installed
    assert f"wrote {sshd.target}:{cert_file}" in r.stdout
    assert "Restart needed" in r.stdout

    # So does bulk renewal; and a key given there replaces the recorded one.
    _age(store, "localhost", 800)
    due = json.loads(cli_ok("renew", "--expiring-within", "30", "--json"))
    assert [x["name"] for x in due["renewed"]] == ["localhost"], due

    # With a key the host does not know, the connection fails cleanly, before anything is
    # issued: the flag replaced the recorded key, for this run only.
    stranger = sandbox / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    before = _tree(store.dir)
    r = run_certkit("renew", "server", "localhost", "--identity", str(stranger))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert _tree(store.dir) == before
    r = run_certkit("renew", "--expiring-within", "900", "--identity", str(stranger), "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["failed"][0]["name"] == "localhost"
    assert _tree(store.dir) == before


def test_expiring_within_covers_every_ca_like_status_does() -> None:
    cli_ok("init-ca")
    cli_ok("init-ca", "--ca", "staging")
    default, staging = CAStore(), CAStore("staging")
    ca.issue(default, "client", "dev", "dev", days=365)
    ca.issue(staging, "client", "qa", "qa", days=365)
    _age(default, "dev", 355)
    _age(staging, "qa", 355)
    assert run_certkit("status").returncode == 1

    data = json.loads(cli_ok("renew", "--expiring-within", "30", "--json"))
    assert sorted(r["name"] for r in data["renewed"]) == ["dev", "qa"]
    assert run_certkit("status").returncode == 0

    only = json.loads(
        cli_ok("renew", "--expiring-within", "400", "--ca", "staging", "--dry-run", "--json")
    )
    assert [d["name"] for d in only["due"]] == ["qa"]


def test_the_ssh_flags_of_renew_apply_only_to_a_server_installed_over_ssh(
    sandbox: Path, store: CAStore
) -> None:
    """renew server shares the "how to reach a host" option group; on a server installed on
    this machine its SSH-only flags are one sentence, exit 2, nothing issued."""
    root = sandbox / "root"
    cli_ok("issue-server", "docker1", "--install", "--root", str(root), "--method", "daemon-json")
    before = _tree(store.dir)
    for flag in (["--sudo"], ["--ssh-option", "Port=22"]):
        r = run_certkit("renew", "server", "docker1", *flag)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "only apply to servers installed over SSH" in r.stderr
    assert _tree(store.dir) == before
