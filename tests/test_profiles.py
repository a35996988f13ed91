"""The certificate profiles, in process (trustme-style): CA, server and client, per key type.

For every key type certkit offers, certkit.certs builds a CA, a server leaf and a
client leaf; the tests assert the rules strict verifiers enforce (Python 3.13's
VERIFY_X509_STRICT, urllib3 2.4+, Go's crypto/x509) and then let Python's own
ssl module, with VERIFY_X509_STRICT on, complete a mutual-TLS handshake over
memory BIOs.  No files but the two PEMs ssl insists on, no network, no daemon.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from certkit import certs
from certkit.names import parse_names

SERVER_NAMES = ["docker1.example.com", "docker1", "10.0.0.5", "127.0.0.1", "::1"]


# -- the two helpers ------------------------------------------------------------------


def ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[Any]:
    return cert.extensions.get_extension_for_class(cls)


def assert_serial_and_validity(cert: x509.Certificate) -> None:
    serial = cert.serial_number
    assert serial > 0
    assert serial.bit_length() >= 64  # at least 64 random bits (CA/B BR 7.1)
    assert serial.bit_length() // 8 + 1 <= 20  # DER INTEGER of at most 20 octets (RFC 5280)
    backdated = dt.datetime.now(dt.UTC) - cert.not_valid_before_utc
    assert dt.timedelta(minutes=1) <= backdated <= dt.timedelta(minutes=15), backdated
    assert cert.not_valid_after_utc > cert.not_valid_before_utc


def assert_is_ca(cert: x509.Certificate) -> None:
    """A CA strict verifiers accept: BC CA:TRUE critical pathlen 0, KU critical
    keyCertSign+cRLSign(+digitalSignature), SKI, no EKU."""
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign
    assert not (ku.value.key_encipherment or ku.value.data_encipherment)
    assert not (ku.value.content_commitment or ku.value.key_agreement)
    ski = ext(cert, x509.SubjectKeyIdentifier)
    assert not ski.critical and ski.value.digest
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.ExtendedKeyUsage)
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)  # self-signed, and the signature checks out
    assert_serial_and_validity(cert)


def assert_is_leaf(cert: x509.Certificate, eku: x509.ObjectIdentifier) -> None:
    """A leaf strict verifiers accept: BC CA:FALSE critical, AKI, SKI, KU critical
    digitalSignature (+keyEncipherment for RSA keys only), EKU ``eku`` alone."""
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False and bc.value.path_length is None
    aki = ext(cert, x509.AuthorityKeyIdentifier)
    assert not aki.critical and aki.value.key_identifier
    ski = ext(cert, x509.SubjectKeyIdentifier)
    assert ski.value.digest == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    is_rsa = isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert ku.value.key_encipherment is is_rsa
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.data_encipherment)
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [eku]
    assert cert.subject != cert.issuer
    assert_serial_and_validity(cert)


# -- one CA and its two leaves per key type, made once ----------------------------------


class Chain:
    def __init__(self, key_type: str) -> None:
        kt = certs.check_key_type(key_type)
        self.ca_key = certs.generate_key(kt)
        self.ca = certs.make_ca(self.ca_key, f"{key_type} test CA")
        self.leaf_key = certs.generate_key(kt)
        self.names = parse_names(SERVER_NAMES)
        self.server = certs.make_leaf(
            self.ca, self.ca_key, self.leaf_key.public_key(), "server", "docker1", self.names
        )
        self.client = certs.make_leaf(
            self.ca, self.ca_key, self.leaf_key.public_key(), "client", "alice"
        )


@functools.cache
def chain(key_type: str) -> Chain:
    return Chain(key_type)


@pytest.fixture(params=certs.KEY_TYPES)
def made(request: pytest.FixtureRequest) -> Chain:
    return chain(request.param)


def test_key_types_are_all_covered() -> None:
    assert set(certs.KEY_TYPES) >= {"ec-p256", "rsa-2048", "ed25519"}


def test_ca_profile(made: Chain) -> None:
    assert_is_ca(made.ca)
    assert certs.key_type_of(made.ca.public_key()) == certs.key_type_of(made.ca_key)


@pytest.mark.parametrize(
    ("kind", "eku"),
    [("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)],
)
def test_leaf_profile_and_issuer(made: Chain, kind: str, eku: x509.ObjectIdentifier) -> None:
    leaf = made.server if kind == "server" else made.client
    assert_is_leaf(leaf, eku)
    ca_ski = ext(made.ca, x509.SubjectKeyIdentifier).value.digest
    assert ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert leaf.issuer == made.ca.subject
    leaf.verify_directly_issued_by(made.ca)
    assert leaf.serial_number != made.ca.serial_number


def test_server_sans_are_the_names_given(made: Chain) -> None:
    san = ext(made.server, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["docker1.example.com", "docker1"]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_client_without_names_has_no_san(made: Chain) -> None:
    with pytest.raises(x509.ExtensionNotFound):
        made.client.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)


def test_leaf_does_not_verify_against_another_ca_of_the_same_name(made: Chain) -> None:
    impostor = certs.make_ca(made.leaf_key, made.ca.subject.rfc4514_string())  # same key type
    impostor_named_alike = certs.make_ca(made.leaf_key, f"{certs.key_type_of(made.ca_key)} test CA")
    assert impostor_named_alike.subject == made.ca.subject
    with pytest.raises(InvalidSignature):
        made.server.verify_directly_issued_by(impostor_named_alike)
    with pytest.raises(ValueError):
        made.server.verify_directly_issued_by(impostor)  # issuer name differs


def test_serials_are_random() -> None:
    serials = {certs.random_serial() for _ in range(50)}
    assert len(serials) == 50


# -- Python's ssl, VERIFY_X509_STRICT, a real handshake in memory -----------------------


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _context(
    side: int,
    made: Chain,
    leaf: x509.Certificate,
    tmp_path: Path,
    ca: x509.Certificate | None = None,
) -> ssl.SSLContext:
    """One side of a mutual-TLS connection: its own leaf, trusting only the CA, strictly."""
    ctx = ssl.SSLContext(side)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_verify_locations(cadata=_pem(ca or made.ca))
    name = "server" if side == ssl.PROTOCOL_TLS_SERVER else "client"
    cert_file, key_file = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    cert_file.write_text(_pem(leaf))
    key_file.write_bytes(certs.key_pem(made.leaf_key))
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, hostname: str) -> None:
    """Run a TLS handshake between the two contexts over memory BIOs; raise on failure."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    # TLS 1.3: the server checks the client's certificate after the client is done;
    # an exchange of application data proves both sides accepted each other.
    client.write(b"ping")
    s_in.write(c_out.read())
    assert server.read(4) == b"ping"
    assert all(done.values())
    assert client.getpeercert() and server.getpeercert()


@pytest.mark.parametrize("hostname", ["docker1.example.com", "10.0.0.5", "::1"])
def test_python_ssl_strict_accepts_the_chain(made: Chain, tmp_path: Path, hostname: str) -> None:
    client_ctx = _context(ssl.PROTOCOL_TLS_CLIENT, made, made.client, tmp_path)
    server_ctx = _context(ssl.PROTOCOL_TLS_SERVER, made, made.server, tmp_path)
    assert client_ctx.verify_flags & ssl.VERIFY_X509_STRICT
    assert client_ctx.check_hostname
    handshake(client_ctx, server_ctx, hostname)


def test_handshake_fails_for_a_name_not_in_the_san(tmp_path: Path) -> None:
    made = chain("ec-p256")
    client_ctx = _context(ssl.PROTOCOL_TLS_CLIENT, made, made.client, tmp_path)
    server_ctx = _context(ssl.PROTOCOL_TLS_SERVER, made, made.server, tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(client_ctx, server_ctx, "docker2.example.com")


def test_strict_mode_is_really_on(tmp_path: Path) -> None:
    """A CA whose basicConstraints is not critical (easy-rsa#1418) passes without
    VERIFY_X509_STRICT and fails with it: the handshake above tests what it claims."""
    made = chain("ec-p256")
    key = made.ca_key
    name = made.ca.subject
    now = dt.datetime.now(dt.UTC)
    lax_ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(certs.random_serial())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=False)
        .add_extension(ext(made.ca, x509.KeyUsage).value, critical=True)
        .sign(key, made.ca.signature_hash_algorithm)  # type: ignore[arg-type]
    )

    def attempt(strict: bool) -> None:
        client_ctx = _context(ssl.PROTOCOL_TLS_CLIENT, made, made.client, tmp_path, lax_ca)
        server_ctx = _context(ssl.PROTOCOL_TLS_SERVER, made, made.server, tmp_path, lax_ca)
        if not strict:
            client_ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
            server_ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
        handshake(client_ctx, server_ctx, "docker1.example.com")

    attempt(strict=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        attempt(strict=True)
