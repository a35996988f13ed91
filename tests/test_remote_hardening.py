"""Hardening over SSH (issues 13 and 20): a real sshd on loopback plays the Docker host.

Links and foreign directories on the host are refused before anything is
issued (no more "changed since certkit read it" loop recording one more
certificate per run); staging files are created exclusively; ssh options are
judged by ssh's own effective configuration; what a host sends back is capped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import test_ssh_install
from sshd_support import SSHServer, write_fake
from support import cli_ok, run_certkit
from test_hardening import inventory_serials, refused, sandbox_root, snapshot

sshd = test_ssh_install.sshd  # the real-sshd fixture, shared


def install_over_ssh(sshd: SSHServer, root: Path, *extra: str) -> object:
    return run_certkit("issue-server", "docker1", *sshd.cli_args(), "--root", str(root), *extra)


def test_dangling_daemon_json_link_over_ssh_is_refused_before_issuing_every_time(
    store: object, certkit_home: Path, tmp_path: Path, sshd: SSHServer
) -> None:
    root = sandbox_root(tmp_path)
    link = root / "etc" / "docker" / "daemon.json"
    link.symlink_to(tmp_path / "managed" / "daemon.json")
    before = snapshot(root, certkit_home)
    for _ in range(2):  # the old loop: refused after issuing, one more record per run
        refused(install_over_ssh(sshd, root), "symbolic link")
    assert snapshot(root, certkit_home) == before
    assert inventory_serials(certkit_home) == []


@pytest.mark.parametrize("kind", ["cert-link", "foreign-dir", "other-writable", "dir-link"])
def test_cert_dir_certkit_must_not_write_into_over_ssh(
    store: object, certkit_home: Path, tmp_path: Path, sshd: SSHServer, kind: str
) -> None:
    root = sandbox_root(tmp_path)
    cert_dir = root / "etc" / "docker" / "certkit"
    loot = tmp_path / "loot"
    loot.mkdir()
    if kind == "dir-link":
        cert_dir.symlink_to(loot)
    else:
        cert_dir.mkdir(mode=0o700)
        if kind == "cert-link":  # a host user planted the key's name as a link to their file
            (cert_dir / "server-key.pem").symlink_to(loot / "key")
        elif kind == "foreign-dir":
            os.chown(cert_dir, 12345, 12345)
        else:
            cert_dir.chmod(0o777)
    before = snapshot(root, certkit_home, loot)
    refused(install_over_ssh(sshd, root), "certkit")
    assert snapshot(root, certkit_home, loot) == before
    assert inventory_serials(certkit_home) == []


def test_remote_staging_is_exclusive_and_rechecked(
    store: object, certkit_home: Path, tmp_path: Path, sshd: SSHServer
) -> None:
    """A planted staging name cannot be written through; the install leaves real files."""
    root = sandbox_root(tmp_path)
    cli_ok("issue-server", "docker1", *sshd.cli_args(), "--root", str(root))
    cert_dir = root / "etc" / "docker" / "certkit"
    for name in ("ca.pem", "server-cert.pem", "server-key.pem"):
        p = cert_dir / name
        assert p.is_file() and not p.is_symlink()
    assert (cert_dir / "server-key.pem").stat().st_mode & 0o777 == 0o600
    assert not list(cert_dir.glob(".*certkit-*"))  # no staging file left behind
    cfg = json.loads((root / "etc" / "docker" / "daemon.json").read_text())
    assert cfg["tlskey"] == str(cert_dir / "server-key.pem")
    # A re-install (the pair swap through next-* names) over SSH ends on the final names.
    cli_ok("issue-server", "docker1", *sshd.cli_args(), "--root", str(root))
    cfg = json.loads((root / "etc" / "docker" / "daemon.json").read_text())
    assert cfg["tlscert"] == str(cert_dir / "server-cert.pem")
    assert not list(cert_dir.glob("next-*"))


@pytest.mark.parametrize(
    "option",
    ["StrictHostKeyChecking=false", "stricthostkeychecking accept-new",
     "StrictHostKeyChecking=ask", "StrictHostKeyChecking=off"],
)  # fmt: skip
def test_ssh_options_are_judged_by_the_effective_config(
    store: object, certkit_home: Path, option: str
) -> None:
    r = run_certkit(
        "issue-server", "docker1", "--ssh", "root@192.0.2.1", "--ssh-option", option, "--dry-run"
    )
    refused(r, "host key checking")
    assert inventory_serials(certkit_home) == []


def test_a_host_that_sends_without_end_is_cut_off(
    store: object, certkit_home: Path, tmp_path: Path, sshd: SSHServer
) -> None:
    # The remote `sh` streams 20 MiB instead of running certkit's script.
    write_fake(sshd.bin_dir, "sh", "echo CERTKIT-START\nhead -c 20000000 /dev/zero | tr '\\0' A\n")
    root = sandbox_root(tmp_path)
    r = install_over_ssh(sshd, root)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr  # type: ignore[attr-defined]
    assert "MiB" in r.stderr  # type: ignore[attr-defined]
    assert inventory_serials(certkit_home) == []
