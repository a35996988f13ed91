"""What a CA is called and what it may sign for: its own subject, and ``init-ca --permit``.

Name constraints are proven against the real verifiers: ``openssl verify`` and
the docker CLI (Go's crypto/x509) connecting to a TLS server.  The
certificates outside the constraints are forged with the CA key straight
through :func:`certkit.certs.make_leaf`, as a stolen CA key would sign them:
certkit itself refuses to sign them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from support import cli_json, run_certkit

from certkit import certs, constraints
from certkit.names import parse_names
from certkit.store import CAStore

# -- the CA's subject ------------------------------------------------------------------


SUBJECT = re.compile(r"^CN=certkit CA (\S+) (\d{4}-\d{2}-\d{2}) ([0-9a-f]{6}),O=certkit$")


def key_id(cert: x509.Certificate) -> str:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()


def test_each_new_ca_has_a_subject_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subjects = []
    for home in ("a", "b"):  # two stores, both with a CA called "default"
        monkeypatch.setenv("CERTKIT_HOME", str(tmp_path / home))
        info = cli_json("init-ca")
        m = SUBJECT.match(info["subject"])
        assert m is not None, info["subject"]
        assert m[1] == "default" and m[2] == dt.datetime.now(dt.UTC).date().isoformat()
        assert key_id(CAStore().load_cert()).startswith(m[3])
        subjects.append(info["subject"])
    assert subjects[0] != subjects[1]
    # --cn is taken as given.
    assert (
        cli_json("init-ca", "--ca", "named", "--cn", "Ops CA")["subject"] == "CN=Ops CA,O=certkit"
    )


def test_a_rotated_ca_gets_a_subject_of_its_own_and_an_old_one_is_kept(
    certkit_home: Path,
) -> None:
    # A CA made before this change: its subject is left alone by every command.
    store = CAStore("old")
    store.ensure_dirs()
    key = certs.generate_key()
    (store.dir / "ca.pem").write_bytes(certs.cert_pem(certs.make_ca(key, "certkit CA old")))
    (store.dir / "ca-key.pem").write_bytes(certs.key_pem(key))
    assert cli_json("ca", "show", "--ca", "old")["subject"] == "CN=certkit CA old,O=certkit"
    cli_json("issue-client", "alice", "--ca", "old", "--out", str(certkit_home / "alice"))
    assert store.load_cert().subject.rfc4514_string() == "CN=certkit CA old,O=certkit"
    # Its rotation, and the rotation of a new CA: the base name, then the day and the new key.
    cli_json("init-ca", "--ca", "new")
    for name in ("old", "new"):
        before = CAStore(name).load_cert()
        cli_json("rotate-ca", "start", "--ca", name)
        after = CAStore(name).load_cert()
        m = SUBJECT.match(after.subject.rfc4514_string())
        assert m is not None and m[1] == name, after.subject
        assert key_id(after).startswith(m[3]) and key_id(after) != key_id(before)


# -- name constraints ------------------------------------------------------------------


def nc_of(path: Path) -> x509.Extension[x509.NameConstraints]:
    cert = certs.load_cert(path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.NameConstraints)


def test_permit_is_a_critical_name_constraint_that_ca_show_lists(certkit_home: Path) -> None:
    info = cli_json(
        "init-ca", "--permit", "Corp.Example.com", "--permit", ".lab.example.com",
        "--permit", "10.0.0.0/8", "--permit", "fd00::/8",
    )  # fmt: skip
    assert info["permitted"] == ["corp.example.com", ".lab.example.com", "10.0.0.0/8", "fd00::/8"]
    ext = nc_of(Path(info["cert_path"]))
    assert ext.critical and ext.value.excluded_subtrees is None
    show = run_certkit("ca", "show")
    assert "Names:       corp.example.com, .lab.example.com, 10.0.0.0/8, fd00::/8" in show.stdout
    # Without --permit: no extension, "any" in ca show.
    plain = cli_json("init-ca", "--ca", "plain")
    assert plain["permitted"] == []
    assert "any (no name constraints)" in run_certkit("ca", "show", "--ca", "plain").stdout


def test_a_form_not_permitted_gets_no_name_at_all(certkit_home: Path) -> None:
    dns_only = nc_of(Path(cli_json("init-ca", "--permit", "corp.example.com")["cert_path"]))
    ips = [n.value for n in dns_only.value.excluded_subtrees or []]
    assert {str(n) for n in ips} == {"0.0.0.0/0", "::/0"}
    ip_only = nc_of(Path(cli_json("init-ca", "--ca", "ips", "--permit", "10.0.0.0/8")["cert_path"]))
    assert ip_only.value.excluded_subtrees == [x509.DNSName("")]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("10.0.0.1/8", "is not a network"),
        ("*.corp.example.com", "give the DNS suffix itself"),
        ("bad name", "not a valid host name"),
        ("exa..mple.com", "empty label"),
    ],
)
def test_a_bad_permit_is_one_sentence_and_exit_2(certkit_home: Path, value: str, says: str) -> None:
    r = run_certkit("init-ca", "--permit", value)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert not (certkit_home / "cas" / "default" / "ca.pem").exists()


def issued_dirs(store: CAStore) -> list[Path]:
    return sorted((store.dir / "issued").glob("*")) if (store.dir / "issued").exists() else []


def test_every_issuance_outside_the_constraints_is_refused_before_signing(
    certkit_home: Path, tmp_path: Path
) -> None:
    cli_json("init-ca", "--permit", "corp.example.com", "--permit", "10.0.0.0/8")
    store = CAStore()
    inside = cli_json(
        "issue-server", "docker1.corp.example.com", "--san", "corp.example.com", "--san",
        "10.1.2.3", "--out", str(tmp_path / "ok"),
    )  # fmt: skip
    assert inside["names"] == ["docker1.corp.example.com", "corp.example.com", "10.1.2.3"]
    cli_json("client-context", "laptop", "--host", "docker1.corp.example.com")  # no SAN: fine
    before = issued_dirs(store)
    out = ["--out", str(tmp_path / "refused")]
    for args, bad in [
        (["issue-server", "docker1.example.org", *out], "docker1.example.org is"),
        (["issue-server", "evilcorp.example.com", *out], "evilcorp.example.com is"),
        (["issue-server", "d.corp.example.com", "--san", "192.168.1.5", *out], "192.168.1.5 is"),
        (
            ["issue-server", "x.example.org", "--san", "11.0.0.1", *out],
            "x.example.org, 11.0.0.1 are",
        ),
    ]:
        r = run_certkit(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert f"{bad} outside the names this CA may sign for" in r.stderr, r.stderr
        assert "(corp.example.com, 10.0.0.0/8); nothing was signed." in r.stderr
    assert issued_dirs(store) == before  # nothing signed, nothing recorded
    assert not (tmp_path / "refused").exists()


def test_a_rotated_ca_keeps_the_constraints(certkit_home: Path) -> None:
    cli_json("init-ca", "--permit", "corp.example.com")
    old = nc_of(CAStore().cert_path)
    cli_json("rotate-ca", "start")
    assert nc_of(CAStore().cert_path) == old
    r = run_certkit("issue-client", "x", "--out", str(certkit_home / "x"))
    assert r.returncode == 0, r.stderr  # a client has no name to constrain
    r = run_certkit("issue-server", "docker1.example.org", "--out", str(certkit_home / "s"))
    assert r.returncode == 2 and "outside the names" in r.stderr


def test_the_constraint_matcher_follows_rfc_5280() -> None:
    nc = constraints.build(["corp.example.com", ".lab.example.com", "10.0.0.0/8"])
    assert nc is not None

    def out(*names: str) -> list[str]:
        return constraints.outside(nc, parse_names(list(names)))

    assert out("corp.example.com", "a.b.corp.example.com", "x.lab.example.com", "10.9.9.9") == []
    assert out("lab.example.com") == ["lab.example.com"]  # a leading dot: only names under it
    assert out("xcorp.example.com", "corp.example.com.evil.org") == [
        "xcorp.example.com",
        "corp.example.com.evil.org",
    ]
    assert out("::1", "11.0.0.1") == ["::1", "11.0.0.1"]  # no IPv6 network permitted: none


# -- the real verifiers: openssl and Go (the docker CLI) --------------------------------


class Forged:
    """The store's CA, a certificate it issued, and one forged outside its constraints."""

    def __init__(self, home: Path, tmp: Path) -> None:
        cli_json("init-ca", "--permit", "localhost", "--permit", "127.0.0.0/8")
        store = CAStore()
        self.ca = store.cert_path
        cli_json("issue-server", "localhost", "--san", "127.0.0.1", "--out", str(tmp / "good"))
        self.good = (tmp / "good/server-cert.pem", tmp / "good/server-key.pem")
        ca_cert, ca_key = store.load_cert(), store.load_key()
        leaf_key = certs.generate_key()
        names = parse_names(["localhost", "127.0.0.1", "docker.evil.test"])
        leaf = certs.make_leaf(ca_cert, ca_key, leaf_key.public_key(), "server", "localhost", names)
        (tmp / "bad").mkdir()
        self.bad = (tmp / "bad/cert.pem", tmp / "bad/key.pem")
        self.bad[0].write_bytes(certs.cert_pem(leaf))
        self.bad[1].write_bytes(certs.key_pem(leaf_key))
        cli_json("issue-client", "me", "--out", str(tmp / "me"))
        self.client = tmp / "me"


@pytest.fixture
def forged(certkit_home: Path, tmp_path: Path) -> Forged:
    return Forged(certkit_home, tmp_path)


def test_openssl_refuses_a_certificate_outside_the_constraints(forged: Forged) -> None:
    def verify(cert: Path) -> subprocess.CompletedProcess[str]:
        cmd = ["openssl", "verify", "-x509_strict", "-CAfile", str(forged.ca), str(cert)]
        return subprocess.run(cmd, capture_output=True, text=True)

    ok = verify(forged.good[0])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = verify(forged.bad[0])
    assert bad.returncode != 0 and "permitted subtree violation" in bad.stdout + bad.stderr


@contextlib.contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """A TLS server presenting ``cert`` on a free port of 127.0.0.1: it completes the
    handshake (the peer's verdict on ``cert`` is the point) and closes each connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), conn:
                conn.settimeout(5)
                ctx.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()


def docker_x509_error(forged: Forged, cert: Path, key: Path) -> str:
    """What the docker CLI (Go) says about the server's certificate ("" when it accepts it)."""
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is required (Go's verifier)")
    with tls_server(cert, key) as port:
        c = forged.client
        r = subprocess.run(
            ["docker", "--tlsverify", f"--tlscacert={c / 'ca.pem'}", f"--tlscert={c / 'cert.pem'}",
             f"--tlskey={c / 'key.pem'}", "-H", f"tcp://localhost:{port}", "version"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    # The server closes after the handshake: a failure either way, but only a
    # certificate failure mentions x509.
    return r.stderr if "x509" in r.stderr else ""


def test_go_refuses_a_certificate_outside_the_constraints(forged: Forged) -> None:
    assert docker_x509_error(forged, *forged.good) == ""
    error = docker_x509_error(forged, *forged.bad)
    assert "not permitted by any constraint" in error or "not authorized to sign" in error, error


def test_pkilint_accepts_a_constrained_ca(certkit_home: Path) -> None:
    import sys

    info = cli_json("init-ca", "--permit", "corp.example.com", "--permit", "10.0.0.0/8")
    ca_path = info["cert_path"]
    lint = subprocess.run(
        [sys.executable, "-m", "pkilint.bin.lint_pkix_cert", "lint", "-s", "WARNING", ca_path],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout + lint.stderr
