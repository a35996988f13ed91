"""The floor of bulk issuance: what any Python tool doing certkit's job must pay.

Run as a script (``python floor.py MODE N``) in a copy of the ``certkit-ca``
seed, so the same encrypted CA key is loaded:

* ``imports``: Python's start-up with the modules an issuance needs (typer,
  ``cryptography``'s x509 and EC, sqlite3, json) and nothing else;
* ``crypto``:  that, plus the CA key decrypted and, for each of N clients, an
  EC P-256 key made, a certificate like certkit's signed, both PEM-encoded;
* ``files``:   that, plus the files written as certkit writes them (a directory
  per client holding ca.pem, cert.pem and key.pem, and the store's copy of the
  certificate and key): each to a temporary file made with its mode, one
  ``syncfs``, the renames, a second ``syncfs``.  No inventory, no checks.

certkit's own time over these is its overhead: parsing options, the
inventory, bookkeeping.  Standard library and ``cryptography`` only.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json  # noqa: F401  (part of what an issuance imports)
import os
import sqlite3  # noqa: F401
import sys
from pathlib import Path

import typer  # noqa: F401
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASS = b"bench-passphrase"  # tools.PASS: the seed's CA key is encrypted with it


def sign_one(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, n: int
) -> tuple[bytes, bytes]:
    """One client: its key and certificate, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certkit"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"c{n}"),
        ]
    )
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .add_extension(usage, True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_all(batch: list[tuple[str, bytes, int]]) -> None:
    """Temp files with their modes, syncfs, renames, syncfs (certkit/files.py's order)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for path, data, mode in batch:
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.write(fd, data)
        os.close(fd)
    fd = os.open(".", os.O_RDONLY)
    libc.syncfs(fd)
    for path, _, _ in batch:
        os.replace(path + ".tmp", path)
    libc.syncfs(fd)
    os.close(fd)


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    if mode == "imports":
        return
    ca_dir = next(Path("home").glob("**/ca-key.pem")).parent
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), PASS)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_pem = (ca_dir / "ca.pem").read_bytes()
    made = [sign_one(ca, ca_key, n) for n in range(count)]
    if mode != "files":
        return
    batch: list[tuple[str, bytes, int]] = []
    for n, (cert, key) in enumerate(made):
        for d in (f"clients/c{n}", f"issued/{n}"):
            os.makedirs(d, mode=0o700)
        batch += [(f"clients/c{n}/ca.pem", ca_pem, 0o644), (f"clients/c{n}/cert.pem", cert, 0o644)]
        batch += [(f"clients/c{n}/key.pem", key, 0o600), (f"issued/{n}/cert.pem", cert, 0o644)]
        batch += [(f"issued/{n}/key.pem", key, 0o600)]
    write_all(batch)


if __name__ == "__main__":
    main()
