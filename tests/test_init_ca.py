"""`certkit init-ca`, `certkit ca show|list`, and the CA certificate profile."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from support import run_certkit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_ca_creates_private_store_even_under_umask_000(certkit_home: Path) -> None:
    old = os.umask(0)
    try:
        r = run_certkit("init-ca")
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    ca_dir = certkit_home / "cas" / "default"
    assert mode(certkit_home) == 0o700
    assert mode(certkit_home / "cas") == 0o700
    assert mode(ca_dir) == 0o700
    assert mode(ca_dir / "ca-key.pem") == 0o600
    assert mode(ca_dir / "ca.pem") == 0o644
    assert "certkit issue-server" in r.stdout  # the next step
    assert "PRIVATE KEY" not in r.stdout + r.stderr


def test_init_ca_twice_without_force_fails_and_keeps_the_first(certkit_home: Path) -> None:
    assert run_certkit("init-ca").returncode == 0
    ca_dir = certkit_home / "cas" / "default"
    before = {p.name: p.read_bytes() for p in ca_dir.glob("*.pem")}
    r = run_certkit("init-ca")
    assert r.returncode == 2
    assert "--force" in r.stderr
    assert "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in ca_dir.glob("*.pem")} == before


def test_init_ca_force_keeps_the_old_ca_aside(certkit_home: Path) -> None:
    assert run_certkit("init-ca").returncode == 0
    old = (certkit_home / "cas" / "default" / "ca.pem").read_bytes()
    r = run_certkit("init-ca", "--force")
    assert r.returncode == 0, r.stderr
    new = (certkit_home / "cas" / "default" / "ca.pem").read_bytes()
    assert new != old
    aside = list((certkit_home / "cas").glob("default.replaced-*"))
    assert len(aside) == 1
    assert (aside[0] / "ca.pem").read_bytes() == old
    assert (aside[0] / "ca-key.pem").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--key-type", "dsa"], "Unknown key type"),
        (["--days", "0"], "--days"),
        (["--ca", "../evil"], "not a valid CA name"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(args: list[str], needle: str) -> None:
    r = run_certkit("init-ca", *args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unreadable_or_corrupted_ca_is_a_clear_error(certkit_home: Path) -> None:
    assert run_certkit("init-ca").returncode == 0
    (certkit_home / "cas" / "default" / "ca.pem").write_text("garbage")
    r = run_certkit("ca", "show")
    assert r.returncode == 2
    assert "corrupted" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
def test_ca_profile_is_what_strict_clients_require(certkit_home: Path, key_type: str) -> None:
    r = run_certkit("init-ca", "--key-type", key_type, "--cn", "Test CA", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["key_type"] == key_type
    cert = x509.load_pem_x509_certificate(Path(info["cert_path"]).read_bytes())
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert cert.serial_number > 2**63
    assert cert.not_valid_before_utc < cert.not_valid_after_utc
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3650


def test_encrypted_ca_key_needs_the_passphrase(certkit_home: Path) -> None:
    env = {"CERTKIT_CA_PASSPHRASE": "correct horse"}
    r = run_certkit("init-ca", "--encrypt", env=env)
    assert r.returncode == 0, r.stderr
    key = (certkit_home / "cas" / "default" / "ca-key.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in key
    show = run_certkit("ca", "show", "--json")
    assert json.loads(show.stdout)["encrypted"] is True

    from certkit.errors import UsageError
    from certkit.store import CAStore

    os.environ["CERTKIT_CA_PASSPHRASE"] = "wrong"
    try:
        with pytest.raises(UsageError, match="Wrong passphrase"):
            CAStore("default").load_key()
        os.environ["CERTKIT_CA_PASSPHRASE"] = "correct horse"
        assert CAStore("default").load_key() is not None
    finally:
        del os.environ["CERTKIT_CA_PASSPHRASE"]


def test_encrypt_without_passphrase_or_terminal_is_refused(certkit_home: Path) -> None:
    r = run_certkit("init-ca", "--encrypt", input="")
    assert r.returncode == 2
    assert "CERTKIT_CA_PASSPHRASE" in r.stderr
    assert not (certkit_home / "cas" / "default" / "ca.pem").exists()


def test_ca_list_and_show(certkit_home: Path) -> None:
    assert run_certkit("init-ca", "--ca", "prod").returncode == 0
    assert run_certkit("init-ca", "--ca", "staging").returncode == 0
    r = run_certkit("ca", "list", "--json")
    assert [c["name"] for c in json.loads(r.stdout)] == ["prod", "staging"]
    show = run_certkit("ca", "show", "--ca", "prod")
    assert show.returncode == 0
    assert str(certkit_home / "cas" / "prod" / "ca.pem") in show.stdout
    missing = run_certkit("ca", "show", "--ca", "nope")
    assert missing.returncode == 2 and "certkit init-ca --ca nope" in missing.stderr


def test_pkilint_finds_nothing_at_warning_or_above(certkit_home: Path) -> None:
    r = run_certkit("init-ca", "--json")
    ca_path = json.loads(r.stdout)["cert_path"]
    lint = subprocess.run(
        [sys.executable, "-m", "pkilint.bin.lint_pkix_cert", "lint", "-s", "WARNING", ca_path],
        capture_output=True,
        text=True,
    )
    # pkilint exits non-zero when it reports findings at or above the severity.
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout.strip() == ""


def test_cli_start_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from certkit.cli import app;"
        "bad = [m for m in ('docker', 'requests', 'cryptography', 'rich') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_do_not_import_docker(args: list[str]) -> None:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['certkit', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('certkit', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('DOCKER' if 'docker' in sys.modules else 'CLEAN', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stderr.strip().endswith("CLEAN"), out.stderr
    assert "certkit" in out.stdout


def test_installed_entry_point_runs() -> None:
    exe = Path(sys.executable).parent / "certkit"
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert r.returncode == 0
    import certkit

    assert r.stdout.strip() == f"certkit {certkit.__version__}"
