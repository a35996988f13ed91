"""A CA key that lives in a hardware token or HSM, reached through PKCS#11.

The key is made on the token (sensitive, never extractable) and never leaves
it; the store keeps only a reference to it, an RFC 7512 URI such as::

    pkcs11:token=certkit;object=ca-key?module-path=/usr/lib/softhsm/libsofthsm2.so

(``module-path`` is also accepted among the path attributes, the form step-ca
uses).  :func:`open_key` returns an object that *is* a cryptography private
key (a subclass of its ``EllipticCurvePrivateKey`` / ``RSAPrivateKey``
ABCs): ``CertificateBuilder.sign()`` calls its :meth:`sign`, which signs on
the token, so :class:`certkit.ca.Signer` needs no second code path.

The PIN comes from a ``pin-source=file:PATH`` attribute of the URI,
``$CERTKIT_PKCS11_PIN`` or a hidden prompt, never from the command line, and is
never printed or stored.  Imported only for a CA whose key is on a token: it
needs ``pip install 'certkit[pkcs11]'`` (python-pkcs11).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.utils import Buffer

from .defaults import KeyType
from .errors import OperationError, UsageError

PIN_ENV = "CERTKIT_PKCS11_PIN"
SCHEME = "pkcs11:"
# Path attributes (RFC 7512 section 2.3) certkit matches on; the others only
# narrow a search further, so they are accepted and ignored.
_PATH_ATTRS = {"token", "object", "id", "type", "serial"}
_IGNORED = {"manufacturer", "model", "library-manufacturer", "library-description"}
_IGNORED |= {"library-version", "slot-manufacturer", "slot-description", "slot-id"}
_QUERY_ATTRS = {"module-path", "pin-source"}
_CURVES = {"ec-p256": "secp256r1", "ec-p384": "secp384r1"}
_STAMP = re.compile(r"-\d{8}T\d{6}Z$")


# ---------------------------------------------------------------- the URI


@dataclass(frozen=True)
class KeyURI:
    """Where a key is: module, token, object label or id, and where its PIN comes from."""

    module: str
    object: str | None = None
    id: bytes | None = None
    token: str | None = None
    serial: str | None = None
    pin_source: str | None = None

    def text(self) -> str:
        """The URI in RFC 7512 form (no PIN: certkit never writes one)."""
        path = [("token", self.token), ("serial", self.serial), ("object", self.object)]
        parts = [f"{k}={quote(v, safe='')}" for k, v in path if v is not None]
        if self.id is not None:
            parts.append("id=" + "".join(f"%{b:02X}" for b in self.id))
        parts.append("type=private")
        query = [f"module-path={quote(self.module, safe='/')}"]
        if self.pin_source is not None:
            query.append(f"pin-source={quote(self.pin_source, safe='/:')}")
        return SCHEME + ";".join(parts) + "?" + "&".join(query)

    def where(self) -> str:
        """``key 'ca-key' on token 'certkit'``: for messages."""
        what = f"key {self.object!r}" if self.object else f"key id {(self.id or b'').hex()}"
        token = self.token or self.serial
        return f"{what} on " + (f"token {token!r}" if token else "the only token")


def parse_uri(text: str) -> KeyURI:
    """Parse an RFC 7512 ``pkcs11:`` URI naming a private key; bad input is a UsageError."""
    if not text.lower().startswith(SCHEME):
        raise UsageError(f"{text!r} is not a PKCS#11 URI: it must start with 'pkcs11:'.")
    path, _, query = text[len(SCHEME) :].partition("?")
    pairs = [(p, _PATH_ATTRS | _QUERY_ATTRS) for p in path.split(";")]
    pairs += [(q, _QUERY_ATTRS) for q in query.split("&")]
    attrs: dict[str, str] = {}
    for part, allowed in pairs:
        name, eq, value = part.partition("=")
        if name == "pin-value":
            raise UsageError(
                "The key URI must not hold the PIN (it would end up in shell history and in "
                f"the store): drop pin-value and set {PIN_ENV} or use pin-source=file:PATH."
            )
        if part and (not eq or (name not in allowed and name not in _IGNORED)):
            raise UsageError(f"The key URI has an unknown attribute {part!r}.")
        if part:
            attrs[name] = value
    if attrs.get("type", "private") != "private":
        raise UsageError("The key URI must name a private key (type=private).")
    if not attrs.get("module-path"):
        raise UsageError(
            "The key URI needs module-path=/path/to/pkcs11-module.so "
            "(SoftHSM: /usr/lib/softhsm/libsofthsm2.so)."
        )
    if "object" not in attrs and "id" not in attrs:
        raise UsageError("The key URI needs object=LABEL (or id=...) to name the key.")
    text_of = {k: unquote(v) for k, v in attrs.items()}
    return KeyURI(
        module=text_of["module-path"],
        object=text_of.get("object"),
        id=unquote_to_bytes(attrs["id"]) if "id" in attrs else None,
        token=text_of.get("token"),
        serial=text_of.get("serial"),
        pin_source=text_of.get("pin-source"),
    )


# ---------------------------------------------------------------- module, token, session, PIN


def _library() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise UsageError(
            "This CA's key is on a PKCS#11 token but python-pkcs11 is not installed: "
            "pip install 'certkit[pkcs11]'."
        ) from None
    return pkcs11


@contextlib.contextmanager
def _token_errors(uri: KeyURI) -> Iterator[None]:
    """Turn python-pkcs11's exceptions into one sentence each."""
    p11 = _library()
    where = uri.where()
    try:
        yield
    except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
        raise UsageError(f"Wrong PIN for {where}; nothing was changed.") from None
    except p11.PinLocked:
        raise UsageError(
            f"The PIN of the token holding {where} is locked (too many wrong tries); "
            "unblock it with the token's SO PIN or PUK."
        ) from None
    except (p11.TokenNotPresent, p11.DeviceRemoved, p11.TokenNotRecognised):
        raise UsageError(f"The token holding {where} is not present; plug it in.") from None
    except p11.MultipleObjectsReturned:
        raise UsageError(
            f"Several private keys match {where}; add id=... to the key URI."
        ) from None
    except p11.PKCS11Error as e:
        raise OperationError(
            f"The PKCS#11 module {uri.module} failed on {where}: {type(e).__name__} {e}".rstrip()
            + "."
        ) from None


def _token(uri: KeyURI) -> Any:
    p11 = _library()
    if not Path(uri.module).is_file():
        raise UsageError(
            f"No PKCS#11 module at {uri.module}: install it (Debian: softhsm2, or opensc for "
            "a YubiKey) or fix module-path in the key URI."
        )
    try:
        lib = p11.lib(uri.module)
    except p11.PKCS11Error as e:
        raise UsageError(f"{uri.module} cannot be loaded as a PKCS#11 module ({e}).") from None
    with _token_errors(uri):
        tokens = list(lib.get_tokens())
    found = [
        t
        for t in tokens
        if (uri.token is None or t.label == uri.token)
        and (uri.serial is None or t.serial.decode(errors="replace").strip() == uri.serial)
    ]
    if len(found) == 1:
        return found[0]
    labels = ", ".join(repr(t.label) for t in tokens) or "none"
    if not found:
        wanted = f"labelled {uri.token!r}" if uri.token else f"with serial {uri.serial!r}"
        raise UsageError(
            f"No token {wanted} in {uri.module} (tokens present: {labels}); "
            "plug it in or fix token= in the key URI."
        )
    raise UsageError(f"Several tokens in {uri.module} ({labels}); add token=LABEL to the key URI.")


def read_pin(uri: KeyURI, label: str) -> str:
    """The user PIN: ``pin-source`` file, else ``$CERTKIT_PKCS11_PIN``, else a hidden prompt."""
    if uri.pin_source is not None:
        path = Path(re.sub(r"^file:(//)?", "", uri.pin_source))
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:  # as ssh refuses a readable private key: the PIN is one
                raise UsageError(
                    f"The PIN file {path} (pin-source) is readable by group or others "
                    f"(mode {mode:04o}): run chmod 600 {path}."
                )
            return path.read_text().rstrip("\r\n")
        except OSError as e:
            raise UsageError(
                f"Cannot read the PIN file {path} (pin-source): {e.strerror}."
            ) from None
    env = os.environ.get(PIN_ENV)
    if env:
        return env
    import sys

    if not sys.stdin.isatty():
        raise UsageError(
            f"Token {label!r} needs its PIN: set {PIN_ENV}, add pin-source=file:PATH to the "
            "key URI, or run on a terminal."
        )
    import getpass

    try:
        pin = getpass.getpass(f"PIN for token {label!r}: ")
    except EOFError:
        raise UsageError("No PIN given; nothing was changed.") from None
    if not pin:
        raise UsageError("No PIN given; nothing was changed.")
    return pin


@dataclass
class _Login:
    session: Any
    pin: str


# One logged-in session per token and process: PKCS#11 logs in the whole
# application, so a second C_Login fails with CKR_USER_ALREADY_LOGGED_IN.
_LOGINS: dict[tuple[str, int], _Login] = {}


def _login(uri: KeyURI) -> _Login:
    token = _token(uri)
    slot = (uri.module, int(token.slot.slot_id))
    if slot not in _LOGINS:
        pin = read_pin(uri, token.label)
        with _token_errors(uri):
            _LOGINS[slot] = _Login(token.open(rw=True, user_pin=pin), pin)
    return _LOGINS[slot]


def _find_private(uri: KeyURI, session: Any) -> Any | None:
    p11 = _library()
    attrs: dict[Any, Any] = {p11.Attribute.CLASS: p11.ObjectClass.PRIVATE_KEY}
    if uri.object is not None:
        attrs[p11.Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[p11.Attribute.ID] = uri.id
    with _token_errors(uri):
        found = list(session.get_objects(attrs))
    if len(found) > 1:
        raise UsageError(f"Several private keys match {uri.where()}; add id=... to the key URI.")
    return found[0] if found else None


# ---------------------------------------------------------------- public keys


def _public_of(
    uri: KeyURI, session: Any, private: Any
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public half: its public-key object (same id, else label), else a certificate object."""
    p11 = _library()
    Attr, Cls = p11.Attribute, p11.ObjectClass
    key_id = bytes(_attribute(private, Attr.ID, b"") or b"")
    searches = [{Attr.CLASS: Cls.PUBLIC_KEY, Attr.ID: key_id}] if key_id else []
    searches.append({Attr.CLASS: Cls.PUBLIC_KEY, Attr.LABEL: private.label})
    with _token_errors(uri):
        for attrs in searches:
            for obj in session.get_objects(attrs):
                return _check_public(uri, _decode_public(uri, obj))
        for cert_obj in session.get_objects({Attr.CLASS: Cls.CERTIFICATE, Attr.ID: key_id}):
            cert = x509.load_der_x509_certificate(bytes(cert_obj[Attr.VALUE]))
            return _check_public(uri, cert.public_key())
    raise UsageError(
        f"The token has no public key or certificate beside {uri.where()}; certkit needs one "
        "to make the CA certificate."
    )


def _decode_public(uri: KeyURI, obj: Any) -> Any:
    p11 = _library()
    if obj.key_type == p11.KeyType.EC:
        der = p11.util.ec.encode_ec_public_key(obj)
    elif obj.key_type == p11.KeyType.RSA:
        der = p11.util.rsa.encode_rsa_public_key(obj)
    else:
        raise UsageError(f"The {uri.where()} is {obj.key_type.name}; certkit uses EC or RSA keys.")
    return serialization.load_der_public_key(der)


def _check_public(uri: KeyURI, key: Any) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES.values():
        return key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size in (2048, 3072, 4096):
        return key
    raise UsageError(f"The {uri.where()} is of a type certkit cannot use (EC P-256/P-384 or RSA).")


# ---------------------------------------------------------------- the key objects


class _TokenKey:
    """What both token key classes share: the URI, the session, one signature at a time."""

    uri: str  # the reference kept in the store (``ca-key.uri``)
    created: bool  # generated by this run (``init-ca``, ``rotate-ca start``)

    def _setup(self, uri: KeyURI, login: _Login, private: Any, public: Any, created: bool) -> None:
        p11 = _library()
        self.uri, self.created, self._where = uri.text(), created, uri.where()
        self._key_uri, self._login, self._private, self._public = uri, login, private, public
        self._lock = threading.Lock()
        # A YubiKey PIV slot 9c key wants the PIN again before every signature.
        self._reauth = bool(_attribute(private, p11.Attribute.ALWAYS_AUTHENTICATE, False))

    def _sign_on_token(self, data: bytes, mechanism: Any) -> bytes:
        with self._lock, _token_errors(self._key_uri):
            pin = self._login.pin if self._reauth else None
            return bytes(self._private.sign(data, mechanism=mechanism, pin=pin))

    def _no_export(self, *args: Any, **kwargs: Any) -> Any:
        raise UsageError(f"The CA key is the {self._where}: it cannot be exported.")

    private_bytes = private_numbers = exchange = decrypt = _no_export

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Any:
        return self


def _attribute(obj: Any, attr: Any, default: object) -> Any:
    try:
        return obj[attr]
    except Exception:  # not every token answers every attribute
        return default


class TokenECKey(_TokenKey, ec.EllipticCurvePrivateKey):
    """An EC key on a token, usable wherever cryptography wants an EC private key."""

    def __init__(self, uri: KeyURI, login: _Login, private: Any, public: Any, created: bool):
        self._setup(uri, login, private, public, created)

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve  # type: ignore[no-any-return]

    @property
    def key_size(self) -> int:
        return int(self._public.curve.key_size)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public  # type: ignore[no-any-return]

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError(f"a token EC key signs with ECDSA, not {signature_algorithm!r}")
        digest = _digest(bytes(data), signature_algorithm.algorithm)
        # CKM_ECDSA signs the digest and returns raw r||s; X.509 wants DER.
        raw = self._sign_on_token(digest, _library().Mechanism.ECDSA)
        half = len(raw) // 2
        r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        return utils.encode_dss_signature(r, s)


class TokenRSAKey(_TokenKey, rsa.RSAPrivateKey):
    """An RSA key on a token: PKCS#1 v1.5 signatures with SHA-256/384/512."""

    def __init__(self, uri: KeyURI, login: _Login, private: Any, public: Any, created: bool):
        self._setup(uri, login, private, public, created)

    @property
    def key_size(self) -> int:
        return int(self._public.key_size)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public  # type: ignore[no-any-return]

    def sign(
        self,
        data: Buffer,
        padding_: padding.AsymmetricPadding,
        algorithm: utils.Prehashed | hashes.HashAlgorithm | utils.NoDigestInfo,
    ) -> bytes:
        mechanisms = {"sha256": "SHA256_RSA_PKCS", "sha384": "SHA384_RSA_PKCS"}
        mechanisms["sha512"] = "SHA512_RSA_PKCS"
        if (
            not isinstance(padding_, padding.PKCS1v15)
            or not isinstance(algorithm, hashes.HashAlgorithm)
            or algorithm.name not in mechanisms
        ):
            raise TypeError("a token RSA key signs the data itself with PKCS#1 v1.5 and SHA-2")
        mechanism = getattr(_library().Mechanism, mechanisms[algorithm.name])
        return self._sign_on_token(bytes(data), mechanism)


TokenKey = TokenECKey | TokenRSAKey


def _digest(data: bytes, algorithm: utils.Prehashed | hashes.HashAlgorithm) -> bytes:
    if isinstance(algorithm, utils.Prehashed):
        return data
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _wrap(uri: KeyURI, login: _Login, private: Any, public: Any, created: bool) -> TokenKey:
    if isinstance(public, ec.EllipticCurvePublicKey):
        return TokenECKey(uri, login, private, public, created)
    return TokenRSAKey(uri, login, private, public, created)


# ---------------------------------------------------------------- entry points


def _generate(uri: KeyURI, login: _Login, key_type: KeyType) -> tuple[Any, Any]:
    """A key pair made on the token: the private half sensitive and never extractable."""
    p11 = _library()
    Attr, Flag = p11.Attribute, p11.MechanismFlag
    if key_type not in _CURVES and not key_type.startswith("rsa-"):
        raise UsageError(f"A token key is EC P-256/P-384 or RSA; {key_type} is not supported.")
    private_template = {
        Attr.TOKEN: True,  # stored on the token, not a session object
        Attr.PRIVATE: True,  # usable only after login
        Attr.SENSITIVE: True,  # its value can never be read
        Attr.EXTRACTABLE: False,  # and never wrapped out
    }
    common = {
        "store": True,
        "label": uri.object or "certkit-ca",
        "id": uri.id or secrets.token_bytes(8),
        "capabilities": Flag.SIGN | Flag.VERIFY,
        "private_template": private_template,
        "public_template": {Attr.TOKEN: True, Attr.PRIVATE: False},
    }
    session = login.session
    with _token_errors(uri):
        if key_type in _CURVES:
            params = session.create_domain_parameters(
                p11.KeyType.EC,
                {Attr.EC_PARAMS: p11.util.ec.encode_named_curve_parameters(_CURVES[key_type])},
                local=True,
            )
            pub, priv = params.generate_keypair(**common)
        else:
            bits = int(key_type.split("-")[1])
            pub, priv = session.generate_keypair(p11.KeyType.RSA, bits, **common)
    return pub, priv


def generate_or_open(uri_text: str, key_type: KeyType) -> TokenKey:
    """The key ``uri_text`` names, generated on the token (as ``key_type``) when it is not there.

    ``.created`` tells which happened; an existing key keeps its own type.
    """
    uri = parse_uri(uri_text)
    login = _login(uri)
    private = _find_private(uri, login.session)
    if private is not None:
        _refuse_copyable(uri, private)
        public = _public_of(uri, login.session, private)
        found_id = bytes(_attribute(private, _library().Attribute.ID, b"") or b"")
        uri = replace(uri, id=uri.id if uri.id is not None else found_id or None)
        return _wrap(uri, login, private, public, created=False)
    pub, priv = _generate(uri, login, key_type)
    public = _decode_public(uri, pub)
    uri = replace(uri, id=uri.id if uri.id is not None else bytes(priv[_library().Attribute.ID]))
    return _wrap(uri, login, priv, public, created=True)


def _refuse_copyable(uri: KeyURI, private: Any) -> None:
    """An existing key that could leave the token would defeat the point: refused."""
    Attr = _library().Attribute
    if _attribute(private, Attr.EXTRACTABLE, False) or not _attribute(
        private, Attr.SENSITIVE, True
    ):
        raise UsageError(
            f"The {uri.where()} can be read or exported (CKA_EXTRACTABLE or not CKA_SENSITIVE), "
            "so it could be copied; name a new label and certkit makes a key that cannot."
        )


def generate_next(uri_text: str, key_type: KeyType, now: dt.datetime) -> TokenKey:
    """A new key on the same token as ``uri_text``, labelled ``<old label>-<UTC stamp>``.

    For ``rotate-ca start``: the old key is left on the token untouched.
    """
    old = parse_uri(uri_text)
    base = _STAMP.sub("", old.object or "certkit-ca")
    label, n = f"{base}-{now:%Y%m%dT%H%M%SZ}", 1
    login = _login(old)
    while _find_private(replace(old, object=label, id=None), login.session) is not None:
        n += 1
        label = f"{base}-{now:%Y%m%dT%H%M%SZ}-{n}"
    key = generate_or_open(replace(old, object=label, id=None).text(), key_type)
    assert key.created
    return key


def open_key(uri_text: str, certificate: x509.Certificate) -> TokenKey:
    """The signing key of ``certificate``, on the token ``uri_text`` names.

    One test signature, verified with the certificate's public key, proves
    it is the right key before anything is signed for real.
    """
    uri = parse_uri(uri_text)
    login = _login(uri)
    private = _find_private(uri, login.session)
    if private is None:
        raise UsageError(
            f"No {uri.where()} in {uri.module}; the CA's key is gone or the key URI "
            "(ca-key.uri in the store) is wrong."
        )
    public = _check_public(uri, certificate.public_key())
    key = _wrap(uri, login, private, public, created=False)
    _prove(key, uri, public)
    return key


def _prove(key: TokenKey, uri: KeyURI, public: Any) -> None:
    message = b"certkit: does this token key match the CA certificate?"
    try:
        if isinstance(key, TokenECKey):
            algorithm = ec.ECDSA(hashes.SHA256())
            public.verify(key.sign(message, algorithm), message, algorithm)
        else:
            pkcs1 = padding.PKCS1v15()
            public.verify(
                key.sign(message, pkcs1, hashes.SHA256()), message, pkcs1, hashes.SHA256()
            )
    except (InvalidSignature, TypeError):
        raise UsageError(
            f"The {uri.where()} does not match the CA certificate: the key URI names another key."
        ) from None


def check_token(uri_text: str) -> tuple[bool, str]:
    """For ``certkit doctor``: is the token reachable and the key on it?  (ok, one sentence).

    Logs in only when a PIN is at hand without asking (``pin-source`` or the
    environment); otherwise it looks for the key's public half, which needs no PIN.
    """
    try:
        uri = parse_uri(uri_text)
        if uri.pin_source is not None or os.environ.get(PIN_ENV):
            _find_or_fail(uri, _login(uri).session)
            return True, f"the {uri.where()} is reachable and the PIN opens it"
        p11 = _library()
        with _token_errors(uri), _token(uri).open() as session:
            attrs = {p11.Attribute.CLASS: p11.ObjectClass.PUBLIC_KEY}
            if uri.object is not None:
                attrs[p11.Attribute.LABEL] = uri.object
            if uri.id is not None:
                attrs[p11.Attribute.ID] = uri.id
            if not list(session.get_objects(attrs)):
                return False, f"the token is there but has no {uri.where()}"
        return True, f"the {uri.where()} is reachable (PIN not tried: set {PIN_ENV} to test it)"
    except (UsageError, OperationError) as e:
        return False, e.message


def _find_or_fail(uri: KeyURI, session: Any) -> None:
    if _find_private(uri, session) is None:
        raise UsageError(f"No {uri.where()} in {uri.module}.")
