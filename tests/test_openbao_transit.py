"""A CA key in OpenBao's transit engine signs a CA, leaves and a CRL that verify strictly;
no key material can leave OpenBao (checked through its API)."""

from __future__ import annotations

import datetime as dt
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
from bao_support import ROOT_TOKEN, BaoNode, api, running_dev
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from test_openbao import openssl_verify, pkilint_clean

from certkit import certs
from certkit.errors import UsageError
from certkit.names import parse_names
from certkit.openbao import transit

pytestmark = pytest.mark.bao
URI = "openbao-transit://transit/certkit-ca"


@pytest.fixture
def bao_transit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BaoNode]:
    with running_dev(tmp_path) as node:
        api(node.addr, "POST", "sys/mounts/transit", ROOT_TOKEN, {"type": "transit"})
        for key, value in node.env().items():
            monkeypatch.setenv(key, value)
        yield node


def test_a_transit_key_signs_a_ca_a_leaf_and_a_crl_that_verify_strictly(
    bao_transit: BaoNode, tmp_path: Path
) -> None:
    key = transit.generate_or_open(URI, "ec-p256")
    assert key.created and key.uri == URI
    ca = certs.make_ca(key, "certkit CA transit", 3650)
    leaf_key = certs.generate_key("ec-p256")
    leaf = certs.make_leaf(ca, key, leaf_key.public_key(), "server", "docker1.test",
                           parse_names(["docker1.test"]), 30)  # fmt: skip
    (tmp_path / "ca.pem").write_bytes(certs.cert_pem(ca))
    (tmp_path / "leaf.pem").write_bytes(certs.cert_pem(leaf))
    openssl_verify(tmp_path / "ca.pem", tmp_path / "leaf.pem", "sslserver")
    pkilint_clean(tmp_path / "leaf.pem")
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert crl.is_signature_valid(ca.public_key())
    # Opened again (a later command): the same key, proven against the CA certificate.
    again = transit.open_key(URI, ca)
    assert not again.created
    other = certs.make_ca(certs.generate_key("ec-p256"), "another", 30)
    with pytest.raises(Exception, match="not the key of this CA"):
        transit.open_key(URI, other)


def test_no_key_material_leaves_openbao(bao_transit: BaoNode) -> None:
    key = transit.generate_or_open(URI, "ec-p256")
    data = api(bao_transit.addr, "GET", "transit/keys/certkit-ca", ROOT_TOKEN)["data"]
    assert data["exportable"] is False and data["allow_plaintext_backup"] is False
    for path in ("transit/export/signing-key/certkit-ca", "transit/backup/certkit-ca"):
        with pytest.raises(urllib.error.HTTPError):
            api(bao_transit.addr, "GET", path, ROOT_TOKEN)
    with pytest.raises(UsageError, match="cannot be exported"):
        key.private_bytes()  # type: ignore[call-arg]
    # An exportable key is refused: it could be copied.
    api(bao_transit.addr, "POST", "transit/keys/loose", ROOT_TOKEN,
        {"type": "ecdsa-p256", "exportable": True})  # fmt: skip
    with pytest.raises(UsageError, match="can be exported"):
        transit.generate_or_open("openbao-transit://transit/loose", "ec-p256")


def test_rotation_makes_the_next_key_in_transit(bao_transit: BaoNode) -> None:
    first = transit.generate_or_open(URI, "ec-p256")
    when = dt.datetime(2027, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    nxt = transit.generate_next(URI, "ec-p256", when)
    assert nxt.created and nxt.uri == f"{URI}-20270102T030405Z"
    assert nxt.public_key().public_numbers() != first.public_key().public_numbers()
    with pytest.raises(UsageError, match="not a transit key URI"):
        transit.parse_uri("openbao-transit://only-a-mount")
