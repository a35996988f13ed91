"""A CA key on a PKCS#11 token: a real SoftHSM2 token, the real CLI, a real dockerd.

The token lives in a temporary SoftHSM2 token dir (``SOFTHSM2_CONF``); every
test names its own key label, so one token serves the module.  Attributes on
the token are read by a separate python-pkcs11 process, never through certkit.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sshd_support import start_sshd
from support import (
    cli_json,
    cli_ok,
    free_port,
    refused,
    run_certkit,
    sandbox_daemon_settings,
    strict_context,
    write_json,
)

from certkit import certs, dockercli
from certkit.ci import decode_bundle
from certkit.pkcs11 import KeyURI, generate_or_open, parse_uri
from certkit.store import CAStore

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN, SO_PIN = "4711", "2718281828"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SoftHSM2 token labelled ``certkit`` in a temp dir; CERTKIT_PKCS11_PIN is its PIN."""
    if not (os.path.exists(MODULE) and shutil.which("softhsm2-util")):
        if os.environ.get("CERTKIT_REQUIRE_SOFTHSM") == "1":
            pytest.fail("softhsm2 is required (CERTKIT_REQUIRE_SOFTHSM=1) but not installed")
        pytest.skip("softhsm2 is not installed (Debian: apt-get install softhsm2)")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    saved = {k: os.environ.get(k) for k in ("SOFTHSM2_CONF", "CERTKIT_PKCS11_PIN")}
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ["CERTKIT_PKCS11_PIN"] = PIN
    init = ["softhsm2-util", "--init-token", "--free", "--label", "certkit"]
    subprocess.run([*init, "--pin", PIN, "--so-pin", SO_PIN], check=True, capture_output=True)
    yield base
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def uri(label: str, module: str = MODULE, token: str = "certkit") -> str:
    return f"pkcs11:module-path={module};token={token};object={label}"


# What the token says about a key, asked by python-pkcs11 in a process of its own.
_PROBE = """
import json, sys, pkcs11
from pkcs11 import Attribute as A, ObjectClass
lib = pkcs11.lib(sys.argv[1])
with lib.get_token(token_label="certkit").open(user_pin=sys.argv[2]) as s:
    out = {}
    for k in s.get_objects({A.CLASS: ObjectClass.PRIVATE_KEY}):
        out[k.label] = {a: bool(k[getattr(A, a)]) for a in
                        ("SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE")}
print(json.dumps(out))
"""


def token_keys() -> dict[str, dict[str, bool]]:
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, MODULE, PIN], capture_output=True, text=True, check=True
    )
    return dict(json.loads(r.stdout))


def openssl_verify(ca_file: Path, leaf: Path) -> None:
    r = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(ca_file), str(leaf)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), r.stdout + r.stderr


def pkilint_clean(cert: Path) -> None:
    lint = REPO / ".venv" / "bin" / "lint_pkix_cert"
    r = subprocess.run(
        [str(lint), "lint", "-s", "WARNING", str(cert)], capture_output=True, text=True
    )
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "", ""), r.stdout


def assert_no_ca_key_file(store: CAStore) -> None:
    """No CA private key in any file: only issued leaves keep theirs, each its own."""
    for path in store.dir.rglob("*"):
        if not path.is_file():
            continue
        if "issued" in path.relative_to(store.dir).parts:
            if path.name == "key.pem":
                leaf = certs.load_cert((path.parent / "cert.pem").read_bytes())
                assert certs.key_matches_cert(certs.load_key(path.read_bytes()), leaf)
                assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            continue
        assert b"PRIVATE KEY" not in path.read_bytes(), path
    assert not list(store.dir.rglob("ca-key.pem"))


def tree(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- the URI (pure)


def test_uri_forms_parse_and_the_pin_is_never_part_of_one() -> None:
    step_ca_form = parse_uri(f"pkcs11:module-path={MODULE};token=my%20token;object=ca-key")
    rfc_form = parse_uri(f"pkcs11:token=my%20token;object=ca-key;type=private?module-path={MODULE}")
    assert step_ca_form == rfc_form == KeyURI(MODULE, "ca-key", token="my token")
    assert parse_uri(rfc_form.text()) == rfc_form
    piv = parse_uri("pkcs11:id=%02;token=PIV?module-path=/usr/lib/opensc-pkcs11.so")
    assert piv.id == b"\x02" and piv.object is None
    with_file = parse_uri(uri("k") + ";pin-source=file:/run/pin")
    assert (
        with_file.pin_source == "file:/run/pin" and "pin-source=file:/run/pin" in with_file.text()
    )
    for bad, says in [
        (uri("k") + "?pin-value=1234", "must not hold the PIN"),
        ("pkcs11:token=t;object=k", "needs module-path"),
        (f"pkcs11:module-path={MODULE};token=t", "needs object=LABEL"),
        (uri("k") + ";type=public", "private key"),
        (uri("k") + ";colour=blue", "unknown attribute"),
        ("/usr/lib/softhsm/libsofthsm2.so", "not a key URI: it must start"),
    ]:
        r = run_certkit("init-ca", "--key-uri", bad)
        assert r.returncode == 2 and says in r.stderr, (bad, r.stderr)
        assert r.stderr.count("\n") == 1 and "1234" not in r.stderr + r.stdout


# ---------------------------------------------------------------- cryptography's side


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048"])
def test_cryptography_signs_with_a_token_key_object(softhsm: Path, key_type: str) -> None:
    """The canary for a cryptography upgrade: CertificateBuilder.sign() with a token key.

    certkit's token keys subclass cryptography's private-key ABCs; that this is
    accepted is not documented (pyca/cryptography#12108), hence the pin in
    pyproject.toml and this test.
    """
    key = generate_or_open(uri(f"canary-{key_type}"), key_type)
    assert key.created and certs.key_type_of(key) == key_type
    ca = certs.make_ca(key, "canary CA")  # cryptography calls key.sign()
    leaf_key = certs.generate_key()
    leaf = certs.make_leaf(ca, key, leaf_key.public_key(), "client", "canary")
    ca.verify_directly_issued_by(ca)
    leaf.verify_directly_issued_by(ca)
    assert certs.key_matches_cert(leaf_key, leaf)


# ---------------------------------------------------------------- init-ca --key-uri


def test_init_ca_makes_a_non_extractable_key_on_the_token_and_keeps_only_its_uri(
    softhsm: Path, tmp_path: Path
) -> None:
    out = cli_ok("init-ca", "--key-uri", uri("init-ca-key"))
    assert "CA key (generated, on a PKCS#11 token" in out and PIN not in out
    attrs = token_keys()["init-ca-key"]
    assert attrs == {
        "SENSITIVE": True,
        "EXTRACTABLE": False,
        "ALWAYS_SENSITIVE": True,
        "NEVER_EXTRACTABLE": True,
    }
    store = CAStore()
    ref = store.key_uri_path
    assert ref.stat().st_mode & 0o777 == 0o600
    assert PIN not in ref.read_text() and "object=init-ca-key" in ref.read_text()
    names = {p.name for p in store.dir.iterdir()}
    assert {"ca.pem", "ca-key.uri"} <= names and "ca-key.pem" not in names
    openssl_verify(store.cert_path, store.cert_path)
    pkilint_clean(store.cert_path)
    info = cli_json("ca", "show")
    assert info["key_uri"] == ref.read_text().strip() and info["key_path"] is None
    assert "PKCS#11 token" in cli_ok("ca", "show")
    assert "(key on a PKCS#11 token)" in cli_ok("ca", "list")

    # The same URI again: the key is there, so it is used, not replaced.
    again = cli_json("init-ca", "--ca", "second", "--key-uri", uri("init-ca-key"))
    assert again["key_created"] is False
    first_key = certs.public_key_bytes(store.load_cert().public_key())
    second_key = CAStore("second").load_cert().public_key()
    assert certs.public_key_bytes(second_key) == first_key
    assert_no_ca_key_file(store)


@pytest.mark.parametrize("key_type", ["ec-p384", "rsa-2048"])
def test_other_key_types_sign_certificates_that_pass_strict_checks(
    softhsm: Path, tmp_path: Path, key_type: str
) -> None:
    cli_ok("init-ca", "--key-uri", uri(f"type-{key_type}"), "--key-type", key_type)
    store = CAStore()
    assert certs.cert_key_type(store.load_cert()) == key_type
    cli_ok("issue-server", "docker.example.com", "--out", str(tmp_path / "s"))
    openssl_verify(store.cert_path, tmp_path / "s" / "server-cert.pem")
    pkilint_clean(tmp_path / "s" / "server-cert.pem")


# Make a P-256 key pair on the token the way another tool would: argv label, id (hex), and
# the private key's SENSITIVE, EXTRACTABLE, ALWAYS_AUTHENTICATE as 0/1.
_MAKE = """
import sys, pkcs11
from pkcs11 import Attribute as A, KeyType, MechanismFlag as F
from pkcs11.util.ec import encode_named_curve_parameters
module, pin, label, key_id, sensitive, extractable, always = sys.argv[1:]
token = pkcs11.lib(module).get_token(token_label="certkit")
with token.open(rw=True, user_pin=pin) as s:
    p = s.create_domain_parameters(
        KeyType.EC, {A.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
    p.generate_keypair(store=True, label=label, id=bytes.fromhex(key_id),
        capabilities=F.SIGN | F.VERIFY, private_template={A.SENSITIVE: sensitive == "1",
        A.EXTRACTABLE: extractable == "1", A.ALWAYS_AUTHENTICATE: always == "1"})
"""


def make_key(label: str, key_id: str, sensitive: int, extractable: int, always: int) -> None:
    flags = [str(sensitive), str(extractable), str(always)]
    subprocess.run([sys.executable, "-c", _MAKE, MODULE, PIN, label, key_id, *flags], check=True)


def test_a_key_that_wants_the_pin_for_every_signature_works(softhsm: Path, tmp_path: Path) -> None:
    """Like a YubiKey's PIV slot 9c (PIN policy always): CKA_ALWAYS_AUTHENTICATE."""
    make_key("sign-key", "02", sensitive=1, extractable=0, always=1)
    piv_style = f"pkcs11:token=certkit;id=%02?module-path={MODULE}"
    assert cli_json("init-ca", "--key-uri", piv_style)["key_created"] is False
    cli_ok("issue-client", "--count", "3", "--out", str(tmp_path / "c"))
    for d in (tmp_path / "c").iterdir():
        openssl_verify(CAStore().cert_path, d / "cert.pem")


def test_pin_from_a_pin_source_file(softhsm: Path, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)  # a group/other-readable PIN file is refused
    key_uri = uri("pin-file-key") + f";pin-source=file:{pin_file}"
    r = run_certkit("init-ca", "--key-uri", key_uri, env={"CERTKIT_PKCS11_PIN": ""})
    assert r.returncode == 0, r.stderr
    assert f"pin-source=file:{pin_file}" in CAStore().key_uri_path.read_text()
    r = run_certkit(
        "issue-client", "x", "--out", str(tmp_path / "x"), env={"CERTKIT_PKCS11_PIN": ""}
    )
    assert r.returncode == 0, r.stderr


def _on_a_terminal(args: list[str], typed: str) -> tuple[int, str]:
    """Run certkit with a pseudo-terminal as its controlling tty; type ``typed`` at it."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: certkit, its stdin/stdout/stderr the terminal
        env = {k: v for k, v in os.environ.items() if k != "CERTKIT_PKCS11_PIN"}
        os.execvpe(sys.executable, [sys.executable, "-m", "certkit", *args], env)
    screen = b""
    while b"PIN for token" not in screen:
        screen += os.read(fd, 1024)
    os.write(fd, typed.encode() + b"\n")
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(fd, 1024):
            screen += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def test_the_pin_is_asked_on_a_terminal_and_never_echoed(softhsm: Path) -> None:
    code, screen = _on_a_terminal(["init-ca", "--key-uri", uri("prompted")], PIN)
    assert code == 0, screen
    assert "PIN for token 'certkit': " in screen and PIN not in screen
    assert "CA key (generated, on a PKCS#11 token" in screen
    code, screen = _on_a_terminal(["init-ca", "--ca", "b", "--key-uri", uri("prompted")], "0000")
    assert code == 2 and "Wrong PIN" in screen and "0000" not in screen


# ---------------------------------------------------------------- refusals


def test_wrong_pin_missing_module_token_or_key_exit_2_and_write_nothing(
    softhsm: Path, certkit_home: Path, docker_config: Path, tmp_path: Path
) -> None:
    cases = [
        ({"CERTKIT_PKCS11_PIN": "0000"}, uri("refused"), "Wrong PIN"),
        ({}, uri("refused", module="/usr/lib/nothing/libnope.so"), "No PKCS#11 module at"),
        ({}, uri("refused", token="not-plugged"), "No token labelled 'not-plugged'"),
        ({"CERTKIT_PKCS11_PIN": ""}, uri("refused"), "needs its PIN"),
    ]
    for env, key_uri, says in cases:
        r = subprocess.run(
            [sys.executable, "-m", "certkit", "init-ca", "--key-uri", key_uri],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2, (key_uri, r.stdout, r.stderr)
        assert says in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr and PIN not in r.stderr + r.stdout
        assert tree(certkit_home) == {}, "nothing may be written"
    assert "refused" not in token_keys()  # nor made on the token

    # An existing token CA: a wrong PIN, a vanished key or another key stop issuing
    # before anything is written.
    cli_ok("init-ca", "--key-uri", uri("then-refused"))
    cli_ok("init-ca", "--ca", "other", "--key-uri", uri("another-key"))
    store = CAStore()
    for env, key_uri, says in [
        ({"CERTKIT_PKCS11_PIN": "0000"}, uri("then-refused"), "Wrong PIN"),
        ({}, uri("gone"), "No key 'gone' on token 'certkit'"),
        ({}, uri("another-key"), "does not match the CA certificate"),
    ]:
        store.key_uri_path.write_text(key_uri + "\n")
        before = tree(certkit_home), tree(docker_config)
        for args in (["client-context", "cc", "--host", "h"], ["issue-client", "x", "--out", "x"]):
            r = run_certkit(*args, env=env, cwd=str(tmp_path))
            assert r.returncode == 2 and says in r.stderr, r.stderr
            assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
            assert (tree(certkit_home), tree(docker_config)) == before
            assert not (tmp_path / "x").exists()


def test_without_python_pkcs11_a_token_ca_says_what_to_install(
    softhsm: Path, certkit_home: Path, tmp_path: Path
) -> None:
    cli_ok("init-ca", "--key-uri", uri("no-library"))
    before = tree(certkit_home)
    # sys.modules[name] = None makes `import pkcs11` fail as if it were not installed.
    hide = "import sys; sys.modules['pkcs11'] = None; from certkit.cli import main; main()"
    argv = ["issue-client", "x", "--out", str(tmp_path / "x")]
    r = subprocess.run([sys.executable, "-c", hide, *argv], capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'certkit[pkcs11]'" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and tree(certkit_home) == before
    # A CA whose key is a file never needs it.
    cli_ok("init-ca", "--ca", "plain")
    argv = ["issue-client", "y", "--ca", "plain", "--out", str(tmp_path / "y")]
    r = subprocess.run([sys.executable, "-c", hide, *argv], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_encrypt_and_a_copyable_existing_key_are_refused(softhsm: Path, certkit_home: Path) -> None:
    r = run_certkit("init-ca", "--encrypt", "--key-uri", uri("x"))
    assert r.returncode == 2 and "guarded by its PIN" in r.stderr
    make_key("copyable", "0c", sensitive=1, extractable=1, always=0)
    make_key("readable", "0d", sensitive=0, extractable=0, always=0)
    for label in ("copyable", "readable"):
        r = run_certkit("init-ca", "--key-uri", uri(label))
        assert r.returncode == 2 and "could be copied" in r.stderr, r.stderr
    assert tree(certkit_home) == {}


def test_doctor_checks_the_token_is_reachable(softhsm: Path, tmp_path: Path) -> None:
    cli_ok("init-ca", "--key-uri", uri("doctor-key"))
    root = tmp_path / "root"
    root.mkdir()

    def token_check(env: dict[str, str] | None = None) -> dict[str, Any]:
        r = run_certkit("doctor", "--root", str(root), "--json", env=env)
        checks = json.loads(r.stdout)["checks"]
        (check,) = [c for c in checks if c["name"] == "ca-key"]
        return dict(check)

    assert token_check()["status"] == "PASS"
    no_pin = token_check({"CERTKIT_PKCS11_PIN": ""})
    assert no_pin["status"] == "PASS" and "PIN not tried" in no_pin["message"]
    assert token_check({"CERTKIT_PKCS11_PIN": "0000"})["status"] == "FAIL"
    CAStore().key_uri_path.write_text(uri("doctor-key", token="unplugged") + "\n")
    gone = token_check()
    assert gone["status"] == "FAIL" and "No token labelled 'unplugged'" in gone["message"]


# ---------------------------------------------------------------- every signing path, real dockerd


def docker_gets_in(context: str) -> bool:
    """The real docker CLI reaches the daemon through ``context`` (mutual TLS)."""
    cmd = ["docker", "--context", context, "version", "--format", "{{.Server.Version}}"]
    return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0


def context_cert(name: str) -> Path:
    return dockercli.read_context(name).tls_file("cert.pem")


class Daemon:
    """A dockerd serving TLS on a free port, its daemon.json under a --root install."""

    def __init__(self, sandbox: Path, dockerd: Any) -> None:
        self.port = free_port()
        self.root = sandbox / "root"
        self.sock = str(sandbox / "docker.sock")
        self.config = self.root / "etc/docker/daemon.json"
        write_json(
            self.config, {**sandbox_daemon_settings(sandbox), "hosts": [f"unix://{self.sock}"]}
        )
        self._start = dockerd
        self.proc: Any = None

    def install(self, *how: str) -> None:
        """``issue-server`` into this daemon's --root: locally, or as ``how`` says (--ssh)."""
        cli_ok(
            "issue-server", "localhost", "--san", "127.0.0.1", *(how or ["--install"]), "--root",
            str(self.root), "--method", "daemon-json", "--listen", "127.0.0.1",
            "--port", str(self.port),
        )  # fmt: skip

    def restart(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        tcp = [("127.0.0.1", self.port)]
        self.proc = self._start(config_file=self.config, unix_socket=self.sock, tcp=tcp)


def test_every_signing_path_with_a_token_ca_and_a_real_dockerd(
    softhsm: Path, sandbox: Path, dockerd: Any, tmp_path: Path
) -> None:
    cli_ok("init-ca", "--key-uri", uri("paths-key"))
    store = CAStore()
    daemon = Daemon(sandbox, dockerd)
    daemon.install()
    daemon.restart()
    server_cert = daemon.root / "etc/docker/certkit/server-cert.pem"
    openssl_verify(store.cert_path, server_cert)
    # pkilint rejects the single-label "localhost" (facts doc section 4): lint a real name.
    cli_ok("issue-server", "docker.example.com", "--out", str(tmp_path / "s"))
    pkilint_clean(tmp_path / "s" / "server-cert.pem")

    cli_ok("client-context", "laptop", "--host", "localhost", "--port", str(daemon.port))
    assert docker_gets_in("laptop")
    openssl_verify(store.cert_path, context_cert("laptop"))
    pkilint_clean(context_cert("laptop"))

    out = tmp_path / "bulk"
    cli_ok("issue-client", "--count", "20", "--prefix", "runner", "--out", str(out))
    dirs = sorted(out.iterdir())
    assert len(dirs) == 20
    for d in dirs:
        openssl_verify(store.cert_path, d / "cert.pem")
    tls = strict_context(store.cert_path, dirs[0] / "cert.pem", dirs[0] / "key.pem")
    assert not refused("127.0.0.1", daemon.port, tls, "localhost")

    r = run_certkit("ci", "export", "deploy", "--host", f"localhost:{daemon.port}")
    assert r.returncode == 0, r.stderr
    bundle = decode_bundle(r.stdout)
    (tmp_path / "ci.pem").write_text(bundle.cert)
    openssl_verify(store.cert_path, tmp_path / "ci.pem")

    cli_ok("renew", "client", "laptop")
    assert docker_gets_in("laptop")
    assert_no_ca_key_file(store)


def test_issue_server_over_ssh_with_a_token_ca(
    softhsm: Path, sandbox: Path, dockerd: Any, require_sshd: None
) -> None:
    cli_ok("init-ca", "--key-uri", uri("ssh-key"))
    sshd = start_sshd(sandbox / "ssh")
    try:
        daemon = Daemon(sandbox, dockerd)
        daemon.install(*sshd.cli_args())
    finally:
        sshd.stop()
    daemon.restart()
    openssl_verify(CAStore().cert_path, daemon.root / "etc/docker/certkit/server-cert.pem")
    cli_ok("client-context", "remote", "--host", "localhost", "--port", str(daemon.port))
    assert docker_gets_in("remote")


def test_rotation_with_a_token_ca_against_a_real_dockerd(
    softhsm: Path, sandbox: Path, dockerd: Any
) -> None:
    cli_ok("init-ca", "--key-uri", uri("rotating"))
    store = CAStore()
    old_uri = store.key_uri()
    daemon = Daemon(sandbox, dockerd)
    daemon.install()
    daemon.restart()
    cli_ok("client-context", "old", "--host", "localhost", "--port", str(daemon.port))
    assert docker_gets_in("old")

    out = cli_ok("rotate-ca", "start")
    assert f"Old CA key left where it is: {old_uri}" in out
    new_uri = store.key_uri()
    assert new_uri is not None and new_uri != old_uri
    new_label = parse_uri(new_uri).object
    assert new_label is not None and new_label.startswith("rotating-")
    assert (store.previous_dir / "ca-key.uri").read_text().strip() == old_uri
    keys = token_keys()
    assert keys[new_label]["EXTRACTABLE"] is False and keys[new_label]["SENSITIVE"] is True
    assert "rotating" in keys  # the old key is left on the token

    cli_ok("renew", "server", "localhost", "--bundle-only")
    daemon.restart()
    cli_ok("client-context", "new", "--host", "localhost", "--port", str(daemon.port))
    new_cert = context_cert("new")
    assert certs.signed_by(certs.load_cert(new_cert.read_bytes()), store.load_cert())
    assert docker_gets_in("new")
    assert docker_gets_in("old")  # the overlap: both CAs get in

    cli_ok("renew", "client", "old")
    cli_ok("renew", "server", "localhost")
    daemon.restart()
    out = cli_ok("rotate-ca", "finish")
    assert f"Its key is still where it was (certkit deletes none): {old_uri}" in out
    cli_ok("renew", "server", "localhost", "--bundle-only")
    daemon.restart()
    assert docker_gets_in("new")
    assert docker_gets_in("old")
    openssl_verify(store.cert_path, daemon.root / "etc/docker/certkit/server-cert.pem")
    (archive,) = store.retired_dir.iterdir()
    assert (archive / "ca-key.uri").read_text().strip() == old_uri
    assert_no_ca_key_file(store)
