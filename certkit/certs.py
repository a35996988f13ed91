"""Pure certificate logic: keys and the three certificate profiles.

No I/O happens here.  Every certificate starts from :func:`_builder` (subject,
validity, serial, public key, SKI) and each profile adds only its own
extensions, following what strict X.509 verifiers require (Python 3.13's
``VERIFY_X509_STRICT``, urllib3 2.4+, Go's crypto/x509, pkilint).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import secrets
from typing import Literal, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .defaults import (
    CA_DAYS,
    CLIENT_DAYS,
    DEFAULT_KEY_TYPE,
    KEY_TYPES,
    KeyType,
)
from .errors import PassphraseError, UsageError
from .names import SubjectNames

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

Kind = Literal["ca", "server", "client", "ci"]

# Absorb clock skew between the machine that issues and the ones that verify.
BACKDATE = dt.timedelta(minutes=5)


def check_key_type(value: str) -> KeyType:
    """Return ``value`` as a :data:`KeyType` or raise a :class:`UsageError`."""
    if value not in KEY_TYPES:
        raise UsageError(f"Unknown key type {value!r}; choose one of {', '.join(KEY_TYPES)}.")
    return value  # type: ignore[return-value]


def check_days(days: int) -> int:
    if days <= 0:
        raise UsageError(f"--days must be a positive number of days, got {days}.")
    if days > 100 * 365:
        raise UsageError(f"--days {days} is more than 100 years; choose a shorter validity.")
    return days


def generate_key(key_type: KeyType = DEFAULT_KEY_TYPE) -> PrivateKey:
    """A fresh private key of the given type."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    bits = int(key_type.split("-")[1])
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def cert_key_type(cert: x509.Certificate) -> KeyType:
    """The key type of a certificate's public key (certkit only makes the supported ones)."""
    return key_type_of(cast(PublicKey, cert.public_key()))


def key_type_of(key: PrivateKey | PublicKey) -> KeyType:
    """The :data:`KeyType` name of a key (private or public)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ec-p384" if key.curve.name == "secp384r1" else "ec-p256"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return check_key_type(f"rsa-{key.key_size}")
    return "ed25519"


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # Ed25519 signs the message itself
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def random_serial() -> int:
    """A positive serial with 127 bits of entropy (RFC 5280: at most 20 octets)."""
    return secrets.randbits(127) | 1 << 126


# ---------------------------------------------------------------- profiles


def _general_names(names: SubjectNames) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = [x509.DNSName(d) for d in names.dns]
    out += [x509.IPAddress(ipaddress.ip_address(i)) for i in names.ips]
    return out


def leaf_cn(cn: str) -> str:
    """The common name a certificate asked for ``cn`` gets (X.509 allows 64 characters)."""
    return cn[:64]


def _name(cn: str, org: str = "certkit") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, leaf_cn(cn)),
        ]
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    days: int,
    now: dt.datetime | None,
    not_after: dt.datetime | None,
    serial: int | None,
) -> x509.CertificateBuilder:
    start = (now or dt.datetime.now(dt.UTC)) - BACKDATE
    end = not_after or (start + BACKDATE + dt.timedelta(days=days))
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial or random_serial())
        .not_valid_before(min(start, end - dt.timedelta(minutes=1)))
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(
    key: PrivateKey,
    common_name: str = "certkit CA",
    days: int = CA_DAYS,
    *,
    now: dt.datetime | None = None,
    serial: int | None = None,
    constraints: x509.NameConstraints | None = None,
) -> x509.Certificate:
    """A self-signed CA certificate that strict verifiers accept.

    ``constraints`` (see :mod:`certkit.constraints`) limits the names it may
    sign for; the extension is critical, so every verifier applies it.

    >>> key = generate_key()
    >>> ca = make_ca(key, "prod CA")
    """
    name = _name(common_name)
    builder = (
        _builder(name, name, key.public_key(), days, now, None, serial)
        # pathlen 0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,  # sign OCSP/CRL-like data; harmless and expected
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,  # sign certificates
                crl_sign=True,  # sign revocation lists
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # No EKU on the CA: Go's verifier would then demand it list clientAuth.
    )
    if constraints is not None:
        builder = builder.add_extension(constraints, critical=True)
    return builder.sign(key, _hash_for(key))


# A bulk issuance signs thousands of leaves: their constant extensions are made once.
_LEAF_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)
_SERVER_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
_CLIENT_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])


@functools.lru_cache(maxsize=2)
def _leaf_usage(is_rsa: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa,  # RSA key transport only; RFC 5480 forbids it for EC
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@functools.lru_cache(maxsize=8)
def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI extension of ``ca_cert``'s leaves (once per CA, not once per leaf)."""
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def make_leaf(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: PublicKey,
    kind: Kind,
    common_name: str,
    names: SubjectNames | None = None,
    days: int = CLIENT_DAYS,
    *,
    now: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """A server (``kind="server"``) or client (``"client"``/``"ci"``) certificate.

    Servers get EKU serverAuth and a SAN with every name; clients get EKU
    clientAuth.  ``not_after`` overrides ``days`` (tests use it to make an
    expired certificate).
    """
    if kind == "ca":
        raise ValueError("use make_ca for CA certificates")
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (
        _builder(_name(common_name), ca_cert.subject, public_key, days, now, not_after, serial)
        .add_extension(_LEAF_CONSTRAINTS, critical=True)
        .add_extension(_authority_key_id(ca_cert), critical=False)
        .add_extension(_leaf_usage(is_rsa), critical=True)
        .add_extension(_SERVER_EKU if kind == "server" else _CLIENT_EKU, critical=False)
    )
    if names is not None and names.all():
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_general_names(names)), critical=False
        )
    return builder.sign(ca_key, _hash_for(ca_key))


# ---------------------------------------------------------------- encoding


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted when a passphrase is given (only ever for CA keys)."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def load_cert(data: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise UsageError("The data is not a PEM certificate.") from None


def load_certs(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (at least one)."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise UsageError("The data is not a PEM certificate bundle.") from None
    return certs


def load_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Load a PEM private key; raises :class:`PassphraseError` for a missing or wrong one."""
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except TypeError:
        if passphrase is None:
            raise PassphraseError(
                "The CA key is encrypted: set CERTKIT_CA_PASSPHRASE or run on a terminal."
            ) from None
        raise UsageError("The key is not encrypted, but a passphrase was given.") from None
    except ValueError:
        if passphrase is not None:
            raise PassphraseError(
                "Wrong passphrase for the CA key: check CERTKIT_CA_PASSPHRASE, or unset it to "
                "be asked on the terminal."
            ) from None
        raise UsageError("The data is not a readable PEM private key.") from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise UsageError(f"Unsupported key algorithm {type(key).__name__}.")
    return key


def is_encrypted_pem(data: bytes) -> bool:
    return b"ENCRYPTED" in data.split(b"\n", 1)[0]


# ---------------------------------------------------------------- inspection


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as colon-separated upper-case hex (as openssl prints it)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.subject.rfc4514_string()


def san_names(cert: x509.Certificate) -> list[str]:
    """DNS names then IP addresses from the SAN, as strings."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


def public_key_bytes(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches_cert(key: PrivateKey, cert: x509.Certificate) -> bool:
    return public_key_bytes(key.public_key()) == public_key_bytes(cert.public_key())  # type: ignore[arg-type]


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` issued ``cert`` (name match and valid signature)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def days_left(cert: x509.Certificate, now: dt.datetime | None = None) -> float:
    now = now or dt.datetime.now(dt.UTC)
    return (cert.not_valid_after_utc - now).total_seconds() / 86400
