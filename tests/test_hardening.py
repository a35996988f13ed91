"""Hardening (issue 13, and issue 20's output-path class): each class tested as a rule.

Every test here plays the user's or the attacker's move against the real CLI
and checks the rule behind the defect, not only the one repro.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import cli_json, cli_ok, run_certkit

from certkit.store import CAStore


def snapshot(*roots: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and link (its target) under ``roots``: to prove nothing changed."""
    out: dict[str, bytes | str] = {}
    for root in roots:
        if not root.exists() and not root.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath, name)
                if p.is_symlink():
                    out[str(p)] = "-> " + os.readlink(p)
                elif p.is_file():
                    out[str(p)] = p.read_bytes()
                else:
                    out[str(p)] = "dir"
    return out


def refused(r: object, *words: str) -> None:
    """Exit 2, one sentence on stderr, no traceback, and ``words`` in it."""
    assert r.returncode == 2, f"exit {r.returncode}: {r.stdout}{r.stderr}"  # type: ignore[attr-defined]
    err = r.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err, err
    for word in words:
        assert word in err, err


# ---------------------------------------------------------------- 1. a half-present CA


@pytest.mark.parametrize("missing", ["ca-key.pem", "ca.pem"])
def test_half_present_ca_is_never_replaced_without_force(certkit_home: Path, missing: str) -> None:
    cli_ok("init-ca")
    ca_dir = certkit_home / "cas" / "default"
    (ca_dir / missing).rename(certkit_home / "offline.pem")
    before = snapshot(certkit_home)
    r = run_certkit("init-ca")
    refused(r, "--force", missing)
    assert snapshot(certkit_home) == before


@pytest.mark.parametrize("missing", ["ca-key.pem", "ca.pem"])
def test_half_present_ca_names_the_missing_file_when_issuing(
    certkit_home: Path, missing: str
) -> None:
    cli_ok("init-ca")
    (certkit_home / "cas" / "default" / missing).unlink()
    for args in (
        ("issue-server", "docker1", "--out", str(certkit_home.parent / "out")),
        ("client-context", "c1", "--host", "docker1"),
    ):
        r = run_certkit(*args)
        refused(r, missing)
        assert "init-ca" not in r.stderr


def test_init_ca_force_moves_a_half_present_ca_aside(certkit_home: Path) -> None:
    cli_ok("init-ca")
    cli_ok("issue-server", "docker1", "--out", str(certkit_home.parent / "out"))
    ca_dir = certkit_home / "cas" / "default"
    old = (ca_dir / "ca.pem").read_bytes()
    (ca_dir / "ca-key.pem").unlink()
    cli_ok("init-ca", "--force")
    aside = list((certkit_home / "cas").glob("default.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "ca.pem").read_bytes() == old
    assert (ca_dir / "ca.pem").read_bytes() != old
    # The old CA's certificates went aside with it: list no longer calls them valid.
    assert [r for r in cli_json("list") if r["kind"] == "server"] == []


# ------------------------------------------------ 2. dangling links, unreadable paths


def inventory_serials(home: Path) -> list[str]:
    return [r.serial for r in CAStore("default", home).inventory().find() if r.kind != "ca"]


def sandbox_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc" / "docker").mkdir(parents=True)
    return root


def test_install_into_a_dangling_daemon_json_link_is_refused_before_issuing(
    store: object, certkit_home: Path, tmp_path: Path
) -> None:
    root = sandbox_root(tmp_path)
    link = root / "etc" / "docker" / "daemon.json"
    link.symlink_to(tmp_path / "managed" / "daemon.json")
    before = snapshot(root, certkit_home)
    r = run_certkit("issue-server", "docker1", "--install", "--root", str(root))
    refused(r, "symbolic link", "daemon.json")
    assert snapshot(root, certkit_home) == before  # the link kept, no cert dir, no record
    assert link.is_symlink()


@pytest.mark.parametrize("kind", ["dangling", "foreign", "other-writable", "file"])
def test_cert_dir_that_certkit_must_not_write_into_is_refused(
    store: object, certkit_home: Path, tmp_path: Path, kind: str
) -> None:
    root = sandbox_root(tmp_path)
    cert_dir = root / "srv" / "certs"
    cert_dir.parent.mkdir(parents=True)
    if kind == "dangling":
        cert_dir.symlink_to(tmp_path / "nowhere")
    elif kind == "file":
        cert_dir.write_text("x")
    else:
        cert_dir.mkdir()
        if kind == "foreign":
            os.chown(cert_dir, 12345, 12345)  # another local user's directory
        else:
            cert_dir.chmod(0o777)
    before = snapshot(root, certkit_home)
    r = run_certkit(
        "issue-server", "docker1", "--install", "--root", str(root), "--cert-dir", "/srv/certs"
    )
    refused(r, "srv/certs")
    assert snapshot(root, certkit_home) == before


def test_read_only_install_root_is_refused_before_issuing(
    store: object, certkit_home: Path, tmp_path: Path
) -> None:
    root = sandbox_root(tmp_path)
    mounted = os.system(f"mount -t tmpfs -o ro,mode=755 tmpfs {root}/etc") == 0
    if not mounted:  # pragma: no cover - no mount privilege here
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        r = run_certkit("issue-server", "docker1", "--install", "--root", str(root))
        refused(r, "read-only")
        assert inventory_serials(certkit_home) == []
    finally:
        os.system(f"umount {root}/etc")


@pytest.mark.parametrize(
    "args",
    [
        ["issue-client", "c1", "--out", "{link}"],
        ["client-context", "c1", "--client-only", "--out", "{link}"],
        ["issue-server", "docker1", "--out", "{link}"],
        ["issue-client", "--count", "2", "--out", "{link}"],
        ["ci", "export", "deploy", "--host", "docker1", "--out", "{link}/bundle"],
    ],
)
def test_out_through_a_dangling_link_issues_nothing(
    store: object, certkit_home: Path, tmp_path: Path, args: list[str]
) -> None:
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    before = snapshot(tmp_path)
    r = run_certkit(*(a.replace("{link}", str(link)) for a in args))
    refused(r, "link")
    assert snapshot(tmp_path) == before  # exit 2: nothing written, nothing recorded


def test_renew_into_a_recorded_out_dir_that_became_a_link_is_refused(
    store: object, certkit_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "files"
    cli_ok("issue-client", "c1", "--out", str(out))
    for f in out.iterdir():
        f.unlink()
    out.rmdir()
    out.symlink_to(tmp_path / "elsewhere")  # a tmp cleaner removed it; someone planted a link
    before = snapshot(tmp_path)
    r = run_certkit("renew", "client", "c1")
    refused(r, "link")
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "elsewhere").exists()


def test_context_export_into_a_read_only_dir_is_one_sentence(store: object, tmp_path: Path) -> None:
    cli_ok("client-context", "c1", "--host", "docker1")
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.system(f"mount -t tmpfs -o ro,mode=755 tmpfs {ro}") != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        r = run_certkit("context", "export", "c1", "--out", str(ro / "c1.dockercontext"))
        # A read-only file system is named as such (issue 26: files.disk_failure, exit 1).
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "c1.dockercontext" in r.stderr and "read-only file system" in r.stderr
    finally:
        os.system(f"umount {ro}")


# ------------------------------------------------ 7. --out: --force, no links, no foreign dirs


def test_ci_export_out_needs_force_and_never_follows_a_link(store: object, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.write_text("mine\n")
    r = run_certkit("ci", "export", "deploy", "--host", "docker1", "--out", str(out))
    refused(r, "--force")
    assert out.read_text() == "mine\n"
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    planted = tmp_path / "planted"
    planted.symlink_to(victim)
    r = run_certkit("ci", "export", "deploy", "--host", "docker1", "--out", str(planted), "--force")
    refused(r, "symbolic link")
    assert victim.read_text() == "root:x:0:0\n" and planted.is_symlink()
    cli_ok("ci", "export", "deploy", "--host", "docker1", "--out", str(out), "--force")
    assert "mine" not in out.read_text() and (out.stat().st_mode & 0o777) == 0o600


def test_issue_server_out_needs_force_to_replace_files(store: object, tmp_path: Path) -> None:
    out = tmp_path / "srv"
    cli_ok("issue-server", "docker1", "--out", str(out))
    first = (out / "server-cert.pem").read_bytes()
    refused(run_certkit("issue-server", "docker1", "--out", str(out)), "--force")
    assert (out / "server-cert.pem").read_bytes() == first
    cli_ok("issue-server", "docker1", "--out", str(out), "--force")
    assert (out / "server-cert.pem").read_bytes() != first


@pytest.mark.parametrize("planted", ["leaf-link", "foreign-dir", "other-writable", "file-link"])
def test_out_into_another_users_place_is_refused(
    store: object, certkit_home: Path, tmp_path: Path, planted: str
) -> None:
    """The attacker is uid 12345, sharing a sticky /tmp-like directory with root."""
    share = tmp_path / "share"
    share.mkdir(mode=0o1777)
    share.chmod(0o1777)
    system = tmp_path / "etc"
    system.mkdir()
    (system / "ca.pem").write_text("system file\n")
    certs = share / "certs"
    if planted == "leaf-link":
        certs.symlink_to(system)
        os.lchown(certs, 12345, 12345)
    elif planted == "foreign-dir":
        certs.mkdir()
        os.chown(certs, 12345, 12345)
    elif planted == "other-writable":
        certs.mkdir()
        certs.chmod(0o777)
    else:
        certs.mkdir()
        (certs / "ca.pem").symlink_to(system / "ca.pem")
    before = snapshot(tmp_path)
    for args in (["--force"], []):
        r = run_certkit("issue-client", "c1", "--out", str(certs), *args)
        refused(r, str(certs))
    assert snapshot(tmp_path) == before
    assert inventory_serials(certkit_home) == []


def test_out_created_private_through_descriptors_under_umask_000(
    store: object, tmp_path: Path
) -> None:
    old = os.umask(0)
    try:
        cli_ok("issue-client", "c1", "--out", str(tmp_path / "a" / "b"))
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "a" / "b" / "key.pem").stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- 4. no leaf outlives its CA


def test_no_certificate_outlives_its_ca(certkit_home: Path, tmp_path: Path) -> None:
    cli_ok("init-ca", "--days", "30")
    ca_end = cli_json("ca", "show")["not_after"]
    server = run_certkit("issue-server", "docker1", "--out", str(tmp_path / "s"), "--days", "825")
    assert server.returncode == 0, server.stderr
    assert "cannot outlive its CA" in server.stdout
    client = run_certkit("client-context", "c1", "--host", "docker1", "--json")
    assert client.returncode == 0, client.stderr
    assert any("outlive" in w for w in json.loads(client.stdout)["warnings"])
    renewed = cli_json("renew", "client", "c1")
    assert any("outlive" in n for n in renewed["notes"])
    leaves = [r for r in cli_json("list") if r["kind"] != "ca"]
    assert leaves and all(r["not_after"] <= ca_end for r in leaves)


# ---------------------------------------------------------------- 5. one endpoint rule


@pytest.mark.parametrize(
    "args",
    [
        ["client-context", "c1", "--host", "fe80::1%eth0"],
        ["client-context", "c1", "--host", "[fe80::1%eth0]"],
        ["client-context", "c1", "--client-only", "--out", "{tmp}/o", "--host", "fe80::1%eth0"],
        ["issue-server", "fe80::1%eth0", "--out", "{tmp}/s"],
        ["ci", "export", "deploy", "--host", "[fe80::1%eth0]:2376"],
        ["issue-server", "docker1", "--install", "--root", "{tmp}/r", "--listen", "fe80::1%eth0"],
    ],
)
def test_ipv6_zones_are_refused_by_every_command(
    store: object, certkit_home: Path, docker_config: Path, tmp_path: Path, args: list[str]
) -> None:
    before = snapshot(certkit_home, docker_config, tmp_path)
    r = run_certkit(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    refused(r, "zone")
    assert snapshot(certkit_home, docker_config, tmp_path) == before


# ------------------------------------------------ 6. one certificate per install path


def test_an_install_supersedes_the_earlier_record_at_that_path(
    store: object, tmp_path: Path
) -> None:
    root = sandbox_root(tmp_path)
    cli_ok("issue-server", "old-name", "--install", "--root", str(root))
    cli_ok("issue-server", "new-name", "--install", "--root", str(root))
    status = {r["name"]: r["status"] for r in cli_json("list") if r["kind"] == "server"}
    assert status == {"old-name": "superseded", "new-name": "valid"}
    r = run_certkit("renew", "server", "old-name")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    cfg = json.loads((root / "etc" / "docker" / "daemon.json").read_text())
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(cfg["tlscert"]).read_bytes())
    assert cert.subject.rfc4514_string().startswith("CN=new-name,")


def test_two_out_dirs_with_one_path_supersede_too(store: object, tmp_path: Path) -> None:
    out = tmp_path / "srv"
    cli_ok("issue-server", "a1", "--out", str(out))
    cli_ok("issue-server", "b1", "--out", str(out), "--force")
    status = {r["name"]: r["status"] for r in cli_json("list") if r["kind"] == "server"}
    assert status == {"a1": "superseded", "b1": "valid"}


# ---------------------------------------------------------------- 8. exit 2: nothing written


@pytest.mark.parametrize("config", ["not json", "[1, 2]", "\xff\xfe", "dangling"])
def test_client_context_use_with_a_bad_config_json_writes_nothing(
    store: object, certkit_home: Path, docker_config: Path, config: str
) -> None:
    docker_config.mkdir(parents=True, exist_ok=True)
    cfg = docker_config / "config.json"
    if config == "dangling":
        cfg.symlink_to(docker_config / "nowhere" / "config.json")
    else:
        cfg.write_bytes(config.encode("latin-1"))
    before = snapshot(certkit_home, docker_config)
    r = run_certkit("client-context", "aa", "--host", "h", "--use")
    refused(r, "config.json")
    assert snapshot(certkit_home, docker_config) == before


# ---------------------------------------------------------------- 10. rotation-order hazards


def test_rotation_order_hazards_are_warned_before_writing_dry_runs_too(tmp_path: Path) -> None:
    cli_ok("init-ca")
    root = sandbox_root(tmp_path)
    cli_ok("issue-server", "docker1", "--install", "--root", str(root))
    cli_ok("client-context", "laptop", "--host", "docker1")
    cli_ok("rotate-ca", "start")
    # Server before its clients: the dry run shows the warning the real run gives.
    dry = run_certkit("renew", "server", "docker1", "--dry-run")
    assert dry.returncode == 0 and "client laptop still trusts only the old CA" in dry.stderr
    dry_json = cli_json("renew", "server", "docker1", "--dry-run")
    assert any("laptop" in w for w in dry_json["warnings"])
    # Client before the servers trust the new CA: the client would be locked out.
    r = run_certkit("renew", "client", "laptop")
    assert r.returncode == 0, r.stderr
    assert "server docker1 still trusts only the old CA" in r.stderr
    assert "renew server docker1 --bundle-only" in r.stderr
    # In the right order, no warning.
    cli_ok("renew", "server", "docker1", "--bundle-only")
    r = run_certkit("renew", "client", "laptop")
    assert r.returncode == 0 and "warning" not in r.stderr.lower(), r.stderr


# ---------------------------------------------------------------- 11. smaller items


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_daemon_json_dockerd_would_refuse_is_refused(
    store: object, certkit_home: Path, tmp_path: Path, value: str
) -> None:
    root = sandbox_root(tmp_path)
    (root / "etc" / "docker" / "daemon.json").write_text(f'{{"max-concurrent-downloads": {value}}}')
    before = snapshot(root, certkit_home)
    r = run_certkit("issue-server", "docker1", "--install", "--root", str(root))
    refused(r, value)
    assert snapshot(root, certkit_home) == before


def test_an_empty_client_name_is_refused_not_defaulted(
    store: object, certkit_home: Path, docker_config: Path
) -> None:
    before = snapshot(certkit_home, docker_config)
    refused(run_certkit("client-context", "", "--host", "docker1"), "name")
    refused(run_certkit("client-context", " ", "--host", "docker1"), "name")
    refused(run_certkit("client-context", "", "--client-only", "--out", "o", "--host", "h"))
    assert snapshot(certkit_home, docker_config) == before


def test_cn_is_named_only_when_given(store: object) -> None:
    long_name = "a" * 70
    r = run_certkit("client-context", long_name, "--host", "docker1")
    refused(r, "common name", long_name)
    assert "(--cn)" not in r.stderr
    r = run_certkit("client-context", "c1", "--host", "docker1", "--cn", "x" * 70)
    refused(r, "--cn")


def test_one_certificate_is_singular(store: object, tmp_path: Path) -> None:
    out = cli_ok("issue-client", "--count", "1", "--out", str(tmp_path / "o"))
    assert "Issued 1 client certificate " in out and "1 client certificates" not in out


def test_ipv6_endpoint_keeps_its_brackets_in_the_context_description(
    store: object, docker_config: Path
) -> None:
    info = cli_json("client-context", "v6", "--host", "::1", "--port", "2376")
    assert info["host"] == "tcp://[::1]:2376"
    meta = next(docker_config.glob("contexts/meta/*/meta.json"))
    assert "[::1]:2376" in json.loads(meta.read_text())["Metadata"]["Description"]


# ---------------------------------------------------------------- 12. scripts/demo on a fresh clone


def test_demo_sets_itself_up_on_a_fresh_clone(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from support import REPO

    if shutil.which("dockerd") is None or os.geteuid() != 0:
        if os.environ.get("CERTKIT_REQUIRE_DOCKERD") == "1":
            pytest.fail("the demo needs dockerd and root (CERTKIT_REQUIRE_DOCKERD=1)")
        pytest.skip("the whole demo needs dockerd and root")
    clone = tmp_path / "clone"
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src, dst = REPO / name, clone / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    assert not (clone / ".venv").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if ".venv" not in p)
    res = subprocess.run(
        ["bash", str(clone / "scripts" / "demo")], capture_output=True, text=True, env=env,
        timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (clone / ".venv" / "bin" / "certkit").exists()
    assert "$ docker --context demo version" in res.stdout
    assert "Cleaned up: dockerd stopped" in res.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["issue-server", "docker1", "--ssh", "root\n@docker1", "--dry-run"],
        ["issue-server", "docker1", "--ssh", "root@docker1\n", "--dry-run"],
        ["issue-client", "alice\n", "--out", "{tmp}/o"],
        ["issue-server", "docker1", "--install", "--root", "{tmp}/r", "--listen", "host\n"],
    ],
)
def test_a_trailing_newline_is_refused_everywhere(
    store: object, certkit_home: Path, tmp_path: Path, args: list[str]
) -> None:
    before = snapshot(certkit_home, tmp_path)
    r = run_certkit(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    refused(r)
    assert snapshot(certkit_home, tmp_path) == before
