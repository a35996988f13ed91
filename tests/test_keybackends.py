"""CA key backends: a backend registered by a program is used by every command.

The in-memory backend below is a real backend (it makes, keeps and signs with
real keys); its keys live in this test process, so the commands run
in-process through certkit's own entry point (``certkit.cli.main``).  Nothing
in the library knows about it: it goes through :func:`certkit.keys.register`
only, as an out-of-tree backend would.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certkit import certs, keys
from certkit.certs import PrivateKey
from certkit.ci import decode_bundle
from certkit.defaults import KeyType
from certkit.errors import UsageError
from certkit.keys import HeldKey, KeyInfo, NewKey
from certkit.store import CAStore

SCHEME = "memory"


class MemoryBackend:
    """``memory://NAME``: CA keys held in a dict of this process, never written anywhere."""

    scheme = SCHEME

    def __init__(self) -> None:
        self.keys: dict[str, PrivateKey] = {}
        self.opened = 0  # how many times a signer was opened

    def _name(self, uri: str | None) -> str:
        if uri is None or not uri.startswith("memory://") or not uri[len("memory://") :]:
            raise UsageError(f"{uri!r} is not a memory://NAME key URI.")
        return uri[len("memory://") :]

    def create(
        self, uri: str | None, key_type: KeyType, *, encrypt: bool, passphrase: bytes | None
    ) -> NewKey:
        if encrypt:
            raise UsageError("--encrypt is for key files; a memory key has no passphrase.")
        name = self._name(uri)
        if name in self.keys:
            return NewKey(self.keys[name], uri, created=False)
        self.keys[name] = certs.generate_key(key_type)
        return NewKey(self.keys[name], uri)

    def open(self, held: HeldKey, cert: x509.Certificate) -> PrivateKey:
        key = self.keys.get(self._name(held.uri))
        if key is None or not certs.key_matches_cert(key, cert):
            raise UsageError(f"No key {held.uri} that matches the CA certificate.")
        self.opened += 1
        return key

    def next_key(self, held: HeldKey, key_type: KeyType, now: dt.datetime) -> NewKey:
        base, n = self._name(held.uri).split("@")[0], 2
        while f"{base}@{n}" in self.keys:
            n += 1
        return self.create(f"memory://{base}@{n}", key_type, encrypt=False, passphrase=None)

    def describe(self, held: HeldKey) -> KeyInfo:
        assert held.uri is not None
        return KeyInfo(SCHEME, held.uri, lives="in memory", short="key in memory")

    def check(self, held: HeldKey, cert: x509.Certificate) -> tuple[bool, str]:
        key = self.keys.get(self._name(held.uri))
        if key is None:
            return False, f"no key {held.uri} in this process"
        if not certs.key_matches_cert(key, cert):
            return False, f"{held.uri} is not the key of the CA certificate"
        return True, f"{held.uri} is held and matches the CA certificate"


@pytest.fixture
def memory() -> Iterator[MemoryBackend]:
    backend = MemoryBackend()
    keys.register(SCHEME, backend)
    try:
        yield backend
    finally:
        keys.unregister(SCHEME)  # the next test registers its own


def certkit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """Run ``certkit ARGS`` in this process through the real entry point: (exit, out, err)."""
    from certkit.cli import main

    monkeypatch.setattr(sys, "argv", ["certkit", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def signed_by(cert: x509.Certificate, key: PrivateKey) -> bool:
    """``cert``'s signature verifies with ``key``'s public half."""
    public = key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    try:
        assert cert.signature_hash_algorithm is not None
        public.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    except Exception:
        return False
    return True


def pem_cert(path: Path) -> x509.Certificate:
    return certs.load_cert(path.read_bytes())


def test_a_registered_backend_goes_through_every_command(
    memory: MemoryBackend,
    certkit_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ok(*args: str) -> Any:
        code, out, err = certkit(capsys, monkeypatch, *args, "--json")
        assert code == 0, err
        return json.loads(out)

    # init-ca: the key is made by the backend; the store keeps only its URI.
    info = ok("init-ca", "--key-uri", "memory://ca")
    assert info["key_uri"] == "memory://ca" and info["key_created"] is True
    assert info["key_backend"] == SCHEME and info["key_path"] is None
    store = CAStore()
    assert store.key_uri_path.read_text() == "memory://ca\n"
    assert not store.key_path.exists()
    ca_key = memory.keys["ca"]
    assert certs.key_matches_cert(ca_key, store.load_cert())
    shown = ok("ca", "show")
    assert shown["key_lives"] == "in memory" and shown["encrypted"] is False

    # issue-server --out, client-context, issue-client: each signed by the memory key.
    ok("issue-server", "docker1.example.com", "--out", str(tmp_path / "srv"))
    assert signed_by(pem_cert(tmp_path / "srv/server-cert.pem"), ca_key)
    ctx = ok("client-context", "laptop", "--host", "docker1.example.com")
    assert ctx["serial"]
    ok("issue-client", "alice", "--out", str(tmp_path / "alice"))
    assert signed_by(pem_cert(tmp_path / "alice/cert.pem"), ca_key)

    # bulk: one open of the key for the whole batch.
    before = memory.opened
    ok("issue-client", "--count", "3", "--prefix", "bot", "--out", str(tmp_path / "bots"))
    assert memory.opened == before + 1
    for n in (1, 2, 3):
        assert signed_by(pem_cert(tmp_path / f"bots/bot-{n}/cert.pem"), ca_key)

    # CI export: the bundle's certificate is the memory key's.
    code, out, err = certkit(
        capsys, monkeypatch, "ci", "export", "deploy", "--host", "docker1.example.com"
    )
    assert code == 0, err
    bundle = decode_bundle(out.strip())
    assert signed_by(certs.load_cert(bundle.cert.encode()), ca_key)

    # renew: the client's new certificate is signed by the same key.
    renewed = ok("renew", "client", "laptop")
    assert renewed["old_serial"] == ctx["serial"] != renewed["serial"]
    assert signed_by(pem_cert(store.issued_dir(renewed["serial"]) / "cert.pem"), ca_key)
    # bulk renewal: every certificate due is re-signed with one open of the key.
    before = memory.opened
    due = ok("renew", "--expiring-within", "3650")
    assert memory.opened == before + 1, due
    assert len(due["renewed"]) == 6 and not due.get("failed")
    for item in due["renewed"]:
        assert signed_by(pem_cert(store.issued_dir(item["serial"]) / "cert.pem"), ca_key)

    # rotation: the backend makes the next key; the old one stays where it was.
    started = ok("rotate-ca", "start")
    assert started["previous"]["key_uri"] == "memory://ca"
    assert started["current"]["key_uri"] == "memory://ca@2"
    assert set(memory.keys) == {"ca", "ca@2"}
    assert (store.previous_dir / "ca-key.uri").read_text() == "memory://ca\n"
    new_ca = store.load_cert()
    assert certs.key_matches_cert(memory.keys["ca@2"], new_ca)
    assert new_ca.subject != pem_cert(store.previous_dir / "ca.pem").subject
    ok("issue-client", "carol", "--out", str(tmp_path / "carol"))
    assert signed_by(pem_cert(tmp_path / "carol/cert.pem"), memory.keys["ca@2"])
    finished = ok("rotate-ca", "finish", "--force")
    assert finished["state"] == "finished"
    assert not any(store.dir.rglob("ca-key.pem"))  # no key was ever written to the store

    # doctor: the backend's check, PASS while it holds the key, FAIL once it is gone.
    def key_check() -> dict[str, Any]:
        _, out, _ = certkit(capsys, monkeypatch, "doctor", "--root", str(tmp_path), "--json")
        (check,) = [c for c in json.loads(out)["checks"] if c["name"] == "ca-key"]
        return dict(check)

    assert key_check() == {
        "name": "ca-key",
        "status": "PASS",
        "message": "CA 'default': memory://ca@2 is held and matches the CA certificate",
    }
    del memory.keys["ca@2"]
    gone = key_check()
    assert gone["status"] == "FAIL" and "no key memory://ca@2" in gone["message"]
    code, _, err = certkit(
        capsys, monkeypatch, "issue-client", "dave", "--out", str(tmp_path / "d")
    )
    assert code == 2 and "No key memory://ca@2" in err


def test_backend_refusals_and_unknown_schemes_write_nothing(
    memory: MemoryBackend,
    certkit_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = certkit(capsys, monkeypatch, "init-ca", "--key-uri", "memory://x", "--encrypt")
    assert code == 2 and "a memory key has no passphrase" in err
    code, _, err = certkit(capsys, monkeypatch, "init-ca", "--key-uri", "nosuch://k")
    assert code == 2 and "No CA key backend for nosuch: URIs" in err and "memory" in err
    code, _, err = certkit(capsys, monkeypatch, "init-ca", "--key-uri", "no scheme")
    assert code == 2 and "is not a key URI" in err
    assert memory.keys == {}
    assert not (certkit_home / "cas/default").exists() or not any(
        (certkit_home / "cas/default").iterdir()
    )


def test_the_builtin_backends_load_only_when_a_ca_uses_them() -> None:
    """``certkit.keys`` itself imports no backend: the registry names modules, loaded lazily."""
    import subprocess

    probe = (
        "import contextlib, io, sys, certkit, certkit.keys, certkit.store\n"
        "sys.argv = ['certkit', *sys.argv[1:]]\n"
        "from certkit.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main()\n"
        "print(sorted(m for m in sys.modules if m.startswith('certkit.keys.') or m == 'pkcs11'))"
    )
    for args in (["--help"], ["init-ca", "--help"], ["ca", "list"]):
        r = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True
        )
        assert r.stdout.strip().splitlines()[-1] == "[]", (args, r.stdout)
    assert keys.backend_for(None) is keys.backend_for("file:k")
    with pytest.raises(UsageError, match="No CA key backend for memory: URIs"):
        keys.backend_for("memory://ca")  # registered by a test only while it runs
    assert keys.backend_for("pkcs11:token=t;object=k").scheme == "pkcs11"
