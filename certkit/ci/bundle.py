"""The CI secret's format: a :class:`Bundle`, its encodings, and how a job reads and checks it.

A bundle is a small versioned JSON (host, port, context name, CA bundle,
client certificate and key), carried as one line of base64 in
``CERTKIT_BUNDLE``, or as the four-variable layout (``CERTKIT_DOCKER_HOST``,
``CERTKIT_CA_PEM``, ``CERTKIT_CERT_PEM``, ``CERTKIT_KEY_PEM``) that
:func:`render` writes as a dotenv.  :func:`read_secret` finds it in the
environment; :func:`check_bundle` checks it completely before anything is
written.

Error messages name the variable and what is wrong with it, never its value:
a CI log is the last place a private key should end up.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from .. import certs
from ..errors import UsageError
from ..names import format_host, parse_endpoint
from ..untrusted import loads_json, refuse_controls

if TYPE_CHECKING:
    from cryptography import x509

BUNDLE_VERSION = 1
BUNDLE_ENV = "CERTKIT_BUNDLE"
HOST_ENV = "CERTKIT_DOCKER_HOST"
CA_ENV = "CERTKIT_CA_PEM"
CERT_ENV = "CERTKIT_CERT_PEM"
KEY_ENV = "CERTKIT_KEY_PEM"
CONTEXT_ENV = "CERTKIT_CONTEXT"
LAYOUT_ENVS = (HOST_ENV, CA_ENV, CERT_ENV, KEY_ENV)

WARN_DAYS = 7  # check_bundle warns when the certificate has less left

Format = Literal["bundle", "env", "tar", "github", "gitlab", "json"]
FORMATS: tuple[str, ...] = get_args(Format)
# Formats that print how to set the secret rather than the secret itself.
RECIPE_FORMATS = ("github", "gitlab")

_FIELDS = ("host", "port", "context", "ca", "cert", "key", "not_after")
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/=_-]*")  # always fullmatch: "$" accepts a "\n"


def check_format(value: str) -> Format:
    if value not in FORMATS:
        raise UsageError(f"Unknown format {value!r}; choose one of {', '.join(FORMATS)}.")
    return value  # type: ignore[return-value]


def check_secret_format(value: str) -> Format:
    """A format that holds the secret itself (bundle, env, json): what :func:`render` takes."""
    fmt = check_format(value)
    if fmt in RECIPE_FORMATS:
        raise UsageError(
            f"--format {fmt} prints setup commands, not a secret; use bundle, env or json here."
        )
    return fmt


# ---------------------------------------------------------------- the bundle


@dataclass(frozen=True)
class Bundle:
    """Everything a CI job needs to reach one Docker daemon over mutual TLS.

    ``ca`` is the trust bundle (several CA certificates during a CA rotation),
    ``cert`` and ``key`` the CI client certificate and its unencrypted key,
    all PEM text.  ``not_after`` is informational: the certificate decides.
    """

    host: str
    port: int
    context: str
    ca: str
    cert: str
    key: str
    not_after: str

    def to_json(self) -> dict[str, Any]:
        """The versioned structure (``"v"`` first), as the ``json`` format prints it."""
        return {"v": BUNDLE_VERSION, **{k: getattr(self, k) for k in _FIELDS}}

    def encode(self) -> str:
        """One line of standard base64: what goes into the ``CERTKIT_BUNDLE`` secret.

        Standard base64 with padding is what GitLab can mask (RFC 4648
        alphabet, one line, at least 8 characters); GitHub masks any value.
        """
        compact = json.dumps(self.to_json(), separators=(",", ":"))
        return base64.b64encode(compact.encode()).decode("ascii")


def decode_bundle(text: str, source: str = BUNDLE_ENV) -> Bundle:
    """Parse a bundle (base64 or the JSON itself); ``source`` names it in errors.

    Whitespace (a pasted bundle wrapped over lines) and URL-safe base64 are
    accepted.  Every failure is a :class:`UsageError` that never quotes the
    secret.
    """
    compact = "".join(text.split())
    if not compact:
        raise UsageError(_empty_message(source))
    if compact.startswith("{"):
        data = _json_or_none(text.strip().encode())
        if data is None:
            raise UsageError(
                f"{source} looks like a JSON bundle but is truncated or corrupted; "
                "export it again with `certkit ci export`."
            )
    else:
        if "-----BEGIN" in text:
            raise UsageError(
                f"{source} holds a PEM file, not a certkit bundle; store the output of "
                f"`certkit ci export` in it, or use {CA_ENV}, {CERT_ENV} and {KEY_ENV}."
            )
        if not _BASE64_CHARS.fullmatch(compact):
            raise UsageError(
                f"{source} is not a certkit bundle: it contains characters that base64 never "
                "uses; store the output of `certkit ci export` in it."
            )
        data = _json_or_none(_b64decode(compact))
        if data is None:
            raise UsageError(
                f"{source} is truncated or corrupted: its {len(compact)} characters do not "
                "decode to a complete bundle; copy the whole output of `certkit ci export` "
                "into the secret again."
            )
    return _bundle_from_json(data, source)


def _b64decode(compact: str) -> bytes:
    padded = compact.replace("-", "+").replace("_", "/").rstrip("=")
    padded += "=" * (-len(padded) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _json_or_none(raw: bytes) -> Any:
    try:
        return loads_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _bundle_from_json(data: Any, source: str) -> Bundle:
    if not isinstance(data, dict) or "v" not in data:
        raise UsageError(
            f"{source} is not a certkit bundle (no format version in it); store the output "
            "of `certkit ci export` in it."
        )
    if data["v"] != BUNDLE_VERSION:
        raise UsageError(
            f"{source} is a bundle of format version {data['v']!r}, but this certkit reads "
            f"version {BUNDLE_VERSION}; install the certkit version that exported it "
            "(or newer) in the CI job."
        )
    for name in _FIELDS:
        if name not in data:
            raise UsageError(
                f"{source} lacks the field {name!r}; export it again with `certkit ci export`."
            )
    port = data["port"]
    if not isinstance(port, int) or isinstance(port, bool):
        raise UsageError(f"{source} has a port that is not a number; export it again.")
    for name in ("host", "context", "ca", "cert", "key", "not_after"):
        if not isinstance(data[name], str):
            raise UsageError(f"{source} has a {name!r} that is not text; export it again.")
    return Bundle(**{k: data[k] for k in _FIELDS})


def _empty_message(source: str) -> str:
    return (
        f"{source} is empty or not set: the CI secret is missing or not passed to this job "
        "(GitHub gives none to pull requests from forks, GitLab gives protected variables "
        "only to protected branches); store the output of `certkit ci export NAME --host HOST` "
        f"in it and pass it as {source}."
    )


# ---------------------------------------------------------------- reading the environment


def _value_or_file(value: str, var: str) -> str:
    """The variable's value, or the file's content for GitLab "File" type variables."""
    stripped = value.strip()
    if stripped.startswith("/") and "\n" not in stripped and os.path.isfile(stripped):
        try:
            return Path(stripped).read_text(errors="replace")
        except OSError as e:
            raise UsageError(f"Cannot read the file named by {var}: {e.strerror}.") from None
    return value


def _pem_value(env: Mapping[str, str], var: str) -> str:
    """A PEM from ``var``: PEM text, PEM with literal ``\\n``, or base64 of a PEM."""
    raw = _value_or_file(env.get(var, ""), var).strip()
    if not raw:
        raise UsageError(
            f"{var} is empty or not set, but the other CERTKIT_* variables are; "
            f"set all of {', '.join(LAYOUT_ENVS)} (or use {BUNDLE_ENV} alone)."
        )
    if "-----BEGIN" in raw:
        if "\n" not in raw and "\\n" in raw:  # a UI that stored the newlines as \n
            raw = raw.replace("\\n", "\n")
        return raw + "\n"
    compact = "".join(raw.split())
    decoded = _b64decode(compact) if _BASE64_CHARS.fullmatch(compact) else b""
    try:
        text = decoded.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if "-----BEGIN" not in text:
        raise UsageError(f"{var} is neither a PEM file nor base64 of one.")
    return text


def read_secret(env: Mapping[str, str] | None = None, from_env: str | None = None) -> Bundle:
    """The bundle from the environment, unchecked.

    ``from_env`` names the variable holding the bundle (default
    ``CERTKIT_BUNDLE``).  Without it, when ``CERTKIT_BUNDLE`` is empty and the
    four-variable layout (``CERTKIT_DOCKER_HOST``, ``CERTKIT_CA_PEM``,
    ``CERTKIT_CERT_PEM``, ``CERTKIT_KEY_PEM``; optional ``CERTKIT_CONTEXT``)
    is present, that is read instead.  A variable holding a path to an
    existing file (GitLab "File" variables) is read from that file.
    """
    env = os.environ if env is None else env
    var = from_env or BUNDLE_ENV
    if from_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", from_env):
        raise UsageError(f"--from-env {from_env!r} is not an environment variable name.")
    raw = env.get(var, "")
    if from_env is None and not raw.strip() and any(env.get(v, "").strip() for v in LAYOUT_ENVS):
        return _read_layout(env)
    return decode_bundle(_value_or_file(raw, var), var)


def _read_layout(env: Mapping[str, str]) -> Bundle:
    host_value = env.get(HOST_ENV, "").strip()
    if not host_value:
        raise UsageError(
            f"{HOST_ENV} is empty or not set; set it to tcp://HOST:PORT next to "
            f"{CA_ENV}, {CERT_ENV} and {KEY_ENV}."
        )
    host, port = parse_endpoint(host_value)
    ca, cert, key = (_pem_value(env, v) for v in (CA_ENV, CERT_ENV, KEY_ENV))
    context = env.get(CONTEXT_ENV, "").strip()
    return Bundle(host, port, context, ca, cert, key, "")


# ---------------------------------------------------------------- checking


@dataclass
class Checked:
    """A bundle that passed every check, with what was learnt on the way."""

    bundle: Bundle
    ci_name: str
    issuer: str
    not_after: dt.datetime
    days_left: float
    warnings: list[str] = field(default_factory=list)

    @property
    def expiry_date(self) -> str:
        return self.not_after.date().isoformat()


def check_bundle(
    bundle: Bundle, source: str = BUNDLE_ENV, now: dt.datetime | None = None
) -> Checked:
    """Check a bundle completely; raise one clear :class:`UsageError` for the first fault.

    Checked: the host and port, every PEM, that the key belongs to the
    certificate, that the certificate is a client certificate issued by one of
    the bundle's CA certificates (several during a CA rotation), and that it
    and its CA are valid now.  Expiring within :data:`WARN_DAYS` is a warning.
    """
    now = now or dt.datetime.now(dt.UTC)
    refuse_controls(bundle.host, f"The host in {source},")
    refuse_controls(bundle.context, f"The context name in {source},")
    parse_endpoint(bundle.host, bundle.port)
    ca_certs = _load(lambda: certs.load_certs(bundle.ca.encode()), source, "CA certificate")
    cert = _load(lambda: certs.load_cert(bundle.cert.encode()), source, "certificate")
    key = _load(lambda: certs.load_key(bundle.key.encode()), source, "private key")
    if not certs.key_matches_cert(key, cert):
        raise UsageError(
            f"The private key in {source} does not belong to its certificate; "
            "export the bundle again with `certkit ci export`."
        )
    issuer = next((ca for ca in ca_certs if certs.signed_by(cert, ca)), None)
    if issuer is None:
        trusted = ", ".join(repr(certs.common_name(c)) for c in ca_certs)
        raise UsageError(
            f"The certificate in {source} was not issued by the CA in the bundle: it names "
            f"{_issuer_cn(cert)!r} as issuer, the bundle trusts {trusted}; "
            "export it again from the CA the Docker host trusts."
        )
    if not _is_client_cert(cert):
        raise UsageError(
            f"The certificate in {source} is not a client certificate (no clientAuth usage); "
            "export one with `certkit ci export`."
        )
    name = _ci_name(cert)
    again = f"`certkit ci export {shlex.quote(name)}`" if name else "`certkit ci export`"
    if cert.not_valid_before_utc > now:
        raise UsageError(
            f"The certificate in {source} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check this machine's clock."
        )
    if cert.not_valid_after_utc <= now:
        raise UsageError(
            f"The certificate in {source} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
            f"export a new bundle with {again} and update the secret."
        )
    if issuer.not_valid_after_utc <= now:
        raise UsageError(
            f"The CA that issued the certificate in {source} expired on "
            f"{issuer.not_valid_after_utc:%Y-%m-%d}; rotate the CA, then export again."
        )
    left = certs.days_left(cert, now)
    checked = Checked(bundle, name, certs.common_name(issuer), cert.not_valid_after_utc, left)
    if left <= WARN_DAYS:
        checked.warnings.append(
            f"the CI certificate expires on {checked.expiry_date} (in {describe_days(left)}); "
            f"export a new bundle with {again} and update the secret."
        )
    return checked


def _load(loader: Any, source: str, what: str) -> Any:
    try:
        return loader()
    except UsageError:
        raise UsageError(
            f"The {what} in {source} is not readable PEM; export the bundle again."
        ) from None


def _issuer_cn(cert: x509.Certificate) -> str:
    from cryptography.x509.oid import NameOID

    attrs = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.issuer.rfc4514_string()


def _is_client_cert(cert: x509.Certificate) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no EKU: any use allowed (Go agrees)
    return ExtendedKeyUsageOID.CLIENT_AUTH in eku


def _ci_name(cert: x509.Certificate) -> str:
    cn = certs.common_name(cert)
    return cn[3:] if cn.startswith("ci:") else ""


def describe_days(left: float) -> str:
    """``30 days``, ``1 day``, ``5 hours``: how long a certificate has left, rounded."""
    if left < 1:
        hours = max(1, round(left * 24))
        return f"{hours} hour{'' if hours == 1 else 's'}"
    days = round(left)
    return f"{days} day{'' if days == 1 else 's'}"


# ---------------------------------------------------------------- rendering


TAR_DIR = ".certkit-tls"  # what the tar secret unpacks to
TAR_HOST_FILE = "docker-host"  # in it, beside ca.pem, cert.pem, key.pem: tcp://HOST:PORT


def encode_tar(bundle: Bundle) -> str:
    """One line of base64 of a tar holding :data:`TAR_DIR` (0700) with ``ca.pem``,
    ``cert.pem``, ``key.pem`` (0600) and :data:`TAR_HOST_FILE`: what a job unpacks with
    ``base64 -d | tar -x`` and points ``DOCKER_CERT_PATH`` at, no certkit installed."""
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        top = tarfile.TarInfo(TAR_DIR)
        top.type, top.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(top)
        host = format_host(bundle.host, bundle.port) + "\n"
        for name, text in (
            ("ca.pem", bundle.ca), ("cert.pem", bundle.cert), ("key.pem", bundle.key),
            (TAR_HOST_FILE, host),
        ):  # fmt: skip
            data = text.encode()
            info = tarfile.TarInfo(f"{TAR_DIR}/{name}")
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(raw.getvalue()).decode("ascii")


def render(bundle: Bundle, fmt: Format) -> str:
    """The secret in ``fmt`` (bundle, tar, env or json), without a trailing newline for
    bundle and tar."""
    if fmt == "bundle":
        return bundle.encode()
    if fmt == "tar":
        return encode_tar(bundle)
    if fmt == "json":
        return json.dumps(bundle.to_json(), indent=2) + "\n"
    if fmt == "env":
        return _render_env(bundle)
    check_secret_format(fmt)  # raises: a recipe format has no secret to render
    raise AssertionError(fmt)


def _render_env(bundle: Bundle) -> str:
    b64 = {
        var: base64.b64encode(pem.encode()).decode("ascii")
        for var, pem in ((CA_ENV, bundle.ca), (CERT_ENV, bundle.cert), (KEY_ENV, bundle.key))
    }
    return (
        f"# certkit CI secret, valid until {bundle.not_after[:10]}. Each *_PEM value is the\n"
        "# base64 of a PEM file (decode with `base64 -d`); `certkit ci bootstrap` reads them\n"
        "# as they are. Store the *_PEM lines as masked CI variables.\n"
        f"{HOST_ENV}={format_host(bundle.host, bundle.port)}\n"
        f"{CONTEXT_ENV}={bundle.context}\n"
        + "".join(f"{var}={value}\n" for var, value in b64.items())
    )
