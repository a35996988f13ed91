"""Team mode on a real OpenBao: init-ca --issuer openbao, issuance through sign/<role>.

Every certificate certkit asks OpenBao for passes ``openssl verify -x509_strict``, pkilint
and Python's strict verification (ssl.VERIFY_X509_STRICT).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from bao_support import ROOT_TOKEN, BaoNode, api, running_dev
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from support import run_certkit, strict_context

from certkit.store import CAStore

pytestmark = pytest.mark.bao


@pytest.fixture
def bao_dev(tmp_path: Path) -> Iterator[BaoNode]:
    with running_dev(tmp_path) as node:
        yield node


def certkit(node: BaoNode, *args: str, token: str | None = ROOT_TOKEN) -> dict:
    r = run_certkit(*args, "--json", env=node.env(token))
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def init_team(node: BaoNode, ca: str = "default") -> dict:
    """A root in pki-root, the team's intermediate in pki-docker (as the docs set it up)."""
    certkit(node, "init-ca", "--ca", "root", "--issuer", "openbao", "--mount", "pki-root",
            "--create")  # fmt: skip
    return certkit(node, "init-ca", "--ca", ca, "--issuer", "openbao", "--mount", "pki-docker",
                   "--create", "--parent-mount", "pki-root")  # fmt: skip


def split_pems(data: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data)


def openssl_verify(ca: Path, cert_pem: Path, purpose: str) -> None:
    """``openssl verify -x509_strict`` with the intermediates cert.pem carries."""
    chain = split_pems(cert_pem.read_bytes())
    untrusted = cert_pem.with_suffix(".chain")
    untrusted.write_bytes(b"".join(c.public_bytes(ssl_encoding()) for c in chain[1:]))
    leaf = cert_pem.with_suffix(".leaf")
    leaf.write_bytes(chain[0].public_bytes(ssl_encoding()))
    args = ["openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(ca)]
    if chain[1:]:
        args += ["-untrusted", str(untrusted)]
    r = subprocess.run([*args, str(leaf)], capture_output=True, text=True)
    assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr


def ssl_encoding():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


def pkilint_clean(cert_pem: Path) -> None:
    leaf = cert_pem.with_suffix(".lint")
    leaf.write_bytes(split_pems(cert_pem.read_bytes())[0].public_bytes(ssl_encoding()))
    r = subprocess.run(
        [sys.executable, "-m", "pkilint.bin.lint_pkix_cert", "lint", "-s", "ERROR", str(leaf)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_init_ca_makes_the_mount_roles_and_policies_and_ca_show_describes_it(
    bao_dev: BaoNode, certkit_home: Path
) -> None:
    made = init_team(bao_dev)
    assert made["intermediate"] is True
    assert any("intermediate issuer" in c for c in made["created"])
    role = api(bao_dev.addr, "GET", "pki-docker/roles/certkit-server", ROOT_TOKEN)["data"]
    assert role["key_usage"] == ["DigitalSignature"]  # not OpenBao's keyEncipherment default
    assert role["ext_key_usage"] == ["ServerAuth"] and role["key_type"] == "ec"
    person = api(bao_dev.addr, "GET", "pki-docker/roles/certkit-person", ROOT_TOKEN)["data"]
    assert person["allowed_domains_template"] and not person["allow_any_name"]
    assert person["max_ttl"] == 12 * 3600 and person["ext_key_usage"] == ["ClientAuth"]
    policy = api(bao_dev.addr, "GET", "sys/policies/acl/certkit-person", ROOT_TOKEN)["data"]
    assert "pki-docker/sign/certkit-person" in policy["policy"]
    assert "/issue/" not in policy["policy"]  # never the endpoint where OpenBao makes keys
    # The store: ca.pem is the root (the trust anchor), openbao.json the binding; no key.
    store = CAStore("default")
    assert (store.dir / "openbao.json").stat().st_mode & 0o777 == 0o600
    assert not store.key_path.exists()
    anchor = x509.load_pem_x509_certificate(store.cert_path.read_bytes())
    assert anchor.subject == anchor.issuer and "certkit CA root" in anchor.subject.rfc4514_string()
    shown = certkit(bao_dev, "ca", "show")
    assert shown["issuer"] == "openbao" and shown["mount"] == "pki-docker"
    assert "certkit CA default" in shown["subject"]
    human = run_certkit("ca", "show", env=bao_dev.env())
    assert "issued by OpenBao" in human.stdout and "never leaves" in human.stdout
    # Again without --create: adopted, nothing made, the same issuer.
    again = certkit(bao_dev, "init-ca", "--issuer", "openbao", "--mount", "pki-docker")
    assert again["created"] == [] and again["issuer_id"] == made["issuer_id"]


def test_refusals_are_one_sentence_with_the_right_exit_code(
    bao_dev: BaoNode, certkit_home: Path
) -> None:
    missing = run_certkit("init-ca", "--issuer", "openbao", "--mount", "nope", env=bao_dev.env())
    assert missing.returncode == 2 and "pass --create" in missing.stderr
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    bad = run_certkit(
        "init-ca", "--issuer", "openbao", "--mount", "x", env={"BAO_ADDR": "ftp://host"}
    )
    assert bad.returncode == 2 and "not an OpenBao address" in bad.stderr
    denied = run_certkit("init-ca", "--issuer", "openbao", "--mount", "pki-docker", "--create",
                         env=bao_dev.env(token="not-a-token"))  # fmt: skip
    assert denied.returncode == 1 and "OpenBao denied it" in denied.stderr
    assert denied.stderr.count("\n") == 1


def test_server_and_client_certificates_pass_every_strict_check(
    bao_dev: BaoNode, certkit_home: Path, tmp_path: Path
) -> None:
    init_team(bao_dev)
    server = certkit(bao_dev, "team", "issue-server", "docker1.test", "--san", "127.0.0.1",
                     "--out", str(tmp_path / "srv"))  # fmt: skip
    client = certkit(bao_dev, "team", "issue-client", "ci-runner", "--out", str(tmp_path / "cli"))
    srv, cli = tmp_path / "srv", tmp_path / "cli"
    assert (srv / "server-key.pem").stat().st_mode & 0o777 == 0o600
    leaf, *chain = split_pems((srv / "server-cert.pem").read_bytes())
    assert len(chain) == 1  # the intermediate: the root stays in ca.pem
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(map(str, sans.get_values_for_type(x509.DNSName))) == ["docker1.test"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    cleaf, *_ = split_pems((cli / "cert.pem").read_bytes())
    eku = cleaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):  # no CN copied into a SAN
        cleaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    for path, purpose in ((srv / "server-cert.pem", "sslserver"), (cli / "cert.pem", "sslclient")):
        openssl_verify(srv / "ca.pem", path, purpose)
        pkilint_clean(path)
    handshake_strict(srv, cli)
    # Recorded: the inventory knows both, issued by the intermediate.
    listed = api(bao_dev.addr, "LIST", "pki-docker/certs", ROOT_TOKEN)["data"]["keys"]
    norm = lambda s: s.replace(":", "").lower().lstrip("0")  # noqa: E731
    assert norm(server["serial"]) in {norm(k) for k in listed}
    assert client["issued"][0]["name"] == "ci-runner"


def handshake_strict(srv: Path, cli: Path) -> None:
    """A TLS server with server-cert.pem and a client with cert.pem, both strict."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(srv / "server-cert.pem", srv / "server-key.pem")
    server_ctx.load_verify_locations(srv / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    client_ctx = strict_context(cli / "ca.pem", cli / "cert.pem", cli / "key.pem")
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as s:
            peer = s.getpeercert()
            seen.append(dict(x[0] for x in peer["subject"])["commonName"])
            s.sendall(b"ok")

    t = threading.Thread(target=serve)
    t.start()
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client_ctx.wrap_socket(raw, server_hostname="docker1.test") as s,
    ):
        assert s.recv(2) == b"ok"
    t.join(10)
    listener.close()
    assert seen == ["ci-runner"]


def test_hvac_is_imported_only_by_the_commands_that_talk_to_openbao(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_startup import imported

    for args in (["login", "--help"], ["team", "issue-server", "--help"], ["init-ca", "--help"],
                 ["ca", "list"], ["--help"]):  # fmt: skip
        modules = imported(tmp_path, *args)
        assert not {m for m in modules if m.split(".")[0] in ("hvac", "requests")}, args
    # ...and a command that does talk to it imports it (the check can fail).
    monkeypatch.setenv("CERTKIT_BAO_PASSWORD", "pw")
    monkeypatch.setenv("CERTKIT_BAO_RETRY_SECONDS", "0")
    talks = imported(tmp_path, "login", "--issuer", "http://127.0.0.1:9", "--host", "h",
                     "--username", "x")  # fmt: skip
    assert "hvac" in talks


def test_ca_list_shows_an_openbao_backed_ca(bao_dev: BaoNode, certkit_home: Path) -> None:
    init_team(bao_dev)
    listed = {c["name"]: c for c in certkit(bao_dev, "ca", "list")}
    assert set(listed) == {"root", "default"}
    assert all(c["error"] is None for c in listed.values())


def test_team_doctor_finds_a_role_that_lost_certkits_profile(
    bao_dev: BaoNode, certkit_home: Path
) -> None:
    init_team(bao_dev)
    ok = certkit(bao_dev, "team", "doctor")
    assert ok["ok"] and ok["findings"] == []
    # An admin resets the server role's key usage to OpenBao's default.
    api(bao_dev.addr, "POST", "pki-docker/roles/certkit-server", ROOT_TOKEN,
        {"key_usage": ["DigitalSignature", "KeyAgreement", "KeyEncipherment"]})  # fmt: skip
    r = run_certkit("team", "doctor", env=bao_dev.env())
    assert r.returncode == 1 and "KeyEncipherment in key usage" in r.stdout
    assert "certkit-server" in r.stdout
