"""A CA key in OpenBao's transit engine: ``openbao-transit://MOUNT/KEY``.

For admins who keep certkit's own profiles and inventory but want a CA key no one can
copy: the key is an ``ecdsa-p256``/``ecdsa-p384`` transit key made non-exportable, and
:class:`TransitECKey` is a cryptography ``EllipticCurvePrivateKey`` whose ``sign()``
sends the digest to ``transit/sign`` (prehashed) — certkit's certificate builder signs
CAs, leaves and CRLs with it as with a key file.

The entry points mirror :mod:`certkit.pkcs11` (``generate_or_open``, ``generate_next``,
``open_key``) so the key-backend registry can list this module under the scheme
``openbao-transit``.  Addresses and token: ``BAO_ADDR``, ``BAO_TOKEN``, ``BAO_CACERT``.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from ..errors import OperationError, UsageError
from .client import Bao, Missing, settings

SCHEME = "openbao-transit"
_TYPES = {"ec-p256": "ecdsa-p256", "ec-p384": "ecdsa-p384"}
_HASHES = {32: "sha2-256", 48: "sha2-384", 64: "sha2-512"}  # by digest size
_URI = re.compile(r"^openbao-transit://([A-Za-z0-9][A-Za-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)$")


@dataclass(frozen=True)
class TransitURI:
    mount: str
    key: str

    def text(self) -> str:
        return f"{SCHEME}://{self.mount}/{self.key}"


def parse_uri(text: str) -> TransitURI:
    m = _URI.match(text.strip())
    if m is None:
        raise UsageError(f"{text!r} is not a transit key URI: use {SCHEME}://MOUNT/KEY.")
    return TransitURI(m.group(1), m.group(2))


class TransitECKey(ec.EllipticCurvePrivateKey):
    """An EC key that lives in OpenBao's transit engine; signing is one API call."""

    def __init__(self, bao: Bao, uri: TransitURI, version: int, public: Any, created: bool):
        self._bao, self._uri, self._version, self._public = bao, uri, version, public
        self.uri = uri.text()
        self.created = created

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve  # type: ignore[no-any-return]

    @property
    def key_size(self) -> int:
        return int(self._public.curve.key_size)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public  # type: ignore[no-any-return]

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError(f"a transit EC key signs with ECDSA, not {signature_algorithm!r}")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
        else:
            h = hashes.Hash(algorithm)
            h.update(bytes(data))
            digest = h.finalize()
        body = {"input": base64.b64encode(digest).decode(), "prehashed": True,
                "marshaling_algorithm": "asn1", "key_version": self._version}  # fmt: skip
        path = f"{self._uri.mount}/sign/{self._uri.key}/{_HASHES[len(digest)]}"
        signature = str(self._bao.write(path, body)["data"]["signature"])
        return base64.b64decode(signature.split(":", 2)[2])  # vault:vN:BASE64 (DER)

    def _no_export(self, *args: Any, **kwargs: Any) -> Any:
        raise UsageError(f"The CA key is in OpenBao ({self.uri}): it cannot be exported.")

    private_bytes = private_numbers = exchange = _no_export

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Any:
        return self


def _read(bao: Bao, uri: TransitURI) -> dict[str, Any] | None:
    try:
        return dict(bao.read(f"{uri.mount}/keys/{uri.key}")["data"])
    except Missing:
        return None


def _wrap(bao: Bao, uri: TransitURI, data: dict[str, Any], created: bool) -> TransitECKey:
    if data.get("exportable") or data.get("allow_plaintext_backup"):
        raise UsageError(
            f"The transit key {uri.text()} can be exported, so it could be copied; name a new "
            "key and certkit makes one that cannot."
        )
    if data.get("type") not in _TYPES.values():
        kind = data.get("type")
        raise UsageError(f"The transit key {uri.text()} is {kind}, not ECDSA P-256 or P-384.")
    version = int(data["latest_version"])
    pem = data["keys"][str(version)]["public_key"]
    public = serialization.load_pem_public_key(pem.encode())
    return TransitECKey(bao, uri, version, public, created)


def generate_or_open(uri_text: str, key_type: str) -> TransitECKey:
    """The transit key ``uri_text`` names, made (not exportable) when it is not there."""
    uri = parse_uri(uri_text)
    if key_type not in _TYPES:
        raise UsageError(f"A transit CA key is ec-p256 or ec-p384, not {key_type}.")
    bao = Bao(settings())
    found = _read(bao, uri)
    if found is not None:
        return _wrap(bao, uri, found, created=False)
    bao.write(f"{uri.mount}/keys/{uri.key}", {"type": _TYPES[key_type], "exportable": False})
    made = _read(bao, uri)
    assert made is not None
    return _wrap(bao, uri, made, created=True)


def generate_next(uri_text: str, key_type: str, now: dt.datetime) -> TransitECKey:
    """For ``rotate-ca start``: a new key ``<old key>-<UTC stamp>`` beside the old one."""
    old = parse_uri(uri_text)
    base = re.sub(r"-\d{8}T\d{6}Z(-\d+)?$", "", old.key)
    return generate_or_open(TransitURI(old.mount, f"{base}-{now:%Y%m%dT%H%M%SZ}").text(), key_type)


def open_key(uri_text: str, certificate: x509.Certificate) -> TransitECKey:
    """The signing key of ``certificate`` in transit (its public key must match)."""
    uri = parse_uri(uri_text)
    bao = Bao(settings())
    data = _read(bao, uri)
    if data is None:
        raise UsageError(f"OpenBao has no transit key {uri.text()} (ca-key.uri in the store).")
    key = _wrap(bao, uri, data, created=False)
    pem = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*pem) != certificate.public_key().public_bytes(*pem):
        raise OperationError(f"The transit key {uri.text()} is not the key of this CA.")
    return key
