"""`certkit init-ca`, `certkit ca show|list`, and the CA certificate profile."""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
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
    assert f"Previous CA kept in {aside[0]}" in r.stdout
    assert (aside[0] / "ca-key.pem").exists()


def test_force_twice_in_the_same_second_keeps_every_old_ca(certkit_home: Path) -> None:
    from certkit.ca import init_ca

    for _ in range(3):  # well within one second: the same timestamp each time
        init_ca(force=True)
    cas = certkit_home / "cas"
    assert not [p.name for p in cas.iterdir() if p.name.startswith(".")]  # no staging left
    kept = {(p / "ca.pem").read_bytes() for p in cas.glob("default.replaced-*")}
    assert len(kept) == 2  # both replaced CAs kept, none overwritten
    assert (cas / "default" / "ca.pem").read_bytes() not in kept


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
    # One broken CA does not hide the others from `ca list`.
    assert run_certkit("init-ca", "--ca", "prod").returncode == 0
    listed = run_certkit("ca", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    by_name = {c["name"]: c for c in json.loads(listed.stdout)}
    assert "corrupted" in by_name["default"]["error"]
    assert by_name["prod"]["error"] is None and by_name["prod"]["key_type"] == "ec-p256"
    human = run_certkit("ca", "list").stdout
    assert "default" in human and "unreadable" in human and "prod" in human


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


def _on_a_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run certkit ARGS with a real pseudo-terminal as its controlling terminal.

    Each answer is typed after the next prompt (text ending in ': ');
    returns the exit code and everything the terminal showed.
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/stderr and /dev/tty are the terminal
        os.execv(sys.executable, [sys.executable, "-m", "certkit", *args])
    shown = b""

    def read_more() -> bytes:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            raise AssertionError(f"no output from certkit; so far: {shown!r}")
        try:
            return os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return b""

    for answer in answers:
        while not shown.rstrip().endswith(b":"):
            chunk = read_more()
            if not chunk:
                break
            shown += chunk
        os.write(fd, answer.encode() + b"\n")
        shown += b"<typed>"
    while chunk := read_more():
        shown += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_passphrase_is_asked_twice_on_the_terminal_and_not_echoed(certkit_home: Path) -> None:
    code, shown = _on_a_terminal(["init-ca", "--encrypt"], ["tty horse", "tty horse"])
    assert code == 0, shown
    assert shown.count("passphrase") >= 2 and "Repeat" in shown
    assert "tty horse" not in shown  # hidden: the terminal never echoed it
    key = (certkit_home / "cas" / "default" / "ca-key.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in key

    from certkit.certs import load_key

    assert load_key(key, b"tty horse") is not None
    # Signing asks once, on the terminal too; a wrong one is one clear error.
    code, shown = _on_a_terminal(["issue-server", "docker1.example.com"], ["tty horse"])
    assert code == 0, shown
    code, shown = _on_a_terminal(["issue-server", "docker1.example.com"], ["wrong"])
    assert code == 2 and "Wrong passphrase" in shown and "Traceback" not in shown


def test_two_different_passphrases_write_nothing(certkit_home: Path) -> None:
    code, shown = _on_a_terminal(["init-ca", "--encrypt"], ["one horse", "two horses"])
    assert code == 2, shown
    assert "differ" in shown and "Traceback" not in shown
    assert not (certkit_home / "cas" / "default" / "ca-key.pem").exists()
    # Ctrl-D at the prompt: the same, no traceback.
    code, shown = _on_a_terminal(["init-ca", "--encrypt"], ["\x04"])
    assert code == 2 and "No passphrase given" in shown and "Traceback" not in shown
    assert not (certkit_home / "cas" / "default" / "ca-key.pem").exists()


_ISSUER = """
import sys
from pathlib import Path
from certkit import names
from certkit.ca import issue
from certkit.store import CAStore

go = Path(sys.argv[1])
while not go.exists():  # start together, to make the writers overlap
    pass
store = CAStore()
for i in range(int(sys.argv[2])):
    name = f"{sys.argv[3]}-{i}.example.com"
    issue(store, "server", name, name, names.parse_names([name]), 30)
"""


def test_concurrent_issuers_lose_no_record_and_share_no_serial(
    certkit_home: Path, tmp_path: Path
) -> None:
    assert run_certkit("init-ca").returncode == 0
    go, per_process, workers = tmp_path / "go", 5, 16
    procs = [
        subprocess.Popen([sys.executable, "-c", _ISSUER, str(go), str(per_process), f"w{w}"])
        for w in range(workers)
    ]
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * workers

    from certkit.store import CAStore

    store = CAStore()
    servers = store.inventory().find(kind="server")
    assert len(servers) == workers * per_process  # no read-modify-write lost a record
    assert len({r.serial for r in servers}) == len(servers)
    names = {f"w{w}-{i}.example.com" for w in range(workers) for i in range(per_process)}
    assert {r.name for r in servers} == names
    issued = {p.name for p in (store.dir / "issued").iterdir()}
    assert issued == {r.serial for r in servers}
    with sqlite3.connect(store.inventory_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_file_where_the_store_should_be_is_a_clear_error(tmp_path: Path) -> None:
    in_the_way = tmp_path / "file"
    in_the_way.write_text("x")
    in_the_way.chmod(0o644)
    r = run_certkit("init-ca", env={"CERTKIT_HOME": str(in_the_way)})
    assert r.returncode == 2 and "CERTKIT_HOME" in r.stderr and "Traceback" not in r.stderr
    assert stat.S_IMODE(in_the_way.stat().st_mode) == 0o644
