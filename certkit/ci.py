"""CI secrets: one opaque bundle out of the store, a docker context out of it in the job.

Two halves that never meet on the same machine:

* :func:`export_ci` runs where the CA lives.  It issues a short-lived client
  certificate (kind ``ci``, CN ``ci:NAME``), supersedes the previous one of
  that name, and renders the secret: a :class:`Bundle` (base64 of a small
  versioned JSON), a dotenv, or the JSON itself.  :func:`setup_recipe` prints
  the commands that pipe it into ``gh secret set`` / ``glab variable set``.
* :func:`bootstrap` runs on a bare CI runner.  It reads the secret from the
  environment (:func:`read_secret`), checks it completely before writing
  anything (:func:`check_bundle`), then writes the docker context with
  :mod:`certkit.dockercli` and tells later steps about it (``$GITHUB_ENV`` or
  ``export`` lines).  It needs no certkit store and never creates one.

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

from . import certs, files, paths
from .errors import OperationError, UsageError
from .names import DOCKER_TLS_PORT, check_port, format_host, parse_endpoint
from .origins import CIOrigin

if TYPE_CHECKING:
    from cryptography import x509

    from .store import CAStore, Record

BUNDLE_VERSION = 1
BUNDLE_ENV = "CERTKIT_BUNDLE"
HOST_ENV = "CERTKIT_DOCKER_HOST"
CA_ENV = "CERTKIT_CA_PEM"
CERT_ENV = "CERTKIT_CERT_PEM"
KEY_ENV = "CERTKIT_KEY_PEM"
CONTEXT_ENV = "CERTKIT_CONTEXT"
LAYOUT_ENVS = (HOST_ENV, CA_ENV, CERT_ENV, KEY_ENV)
GITHUB_ENV = "GITHUB_ENV"

DEFAULT_DAYS = 30
WARN_DAYS = 7
# GitLab refuses CI/CD variable values longer than this.
GITLAB_MAX_VALUE = 10_000

Format = Literal["bundle", "env", "github", "gitlab", "json"]
FORMATS: tuple[str, ...] = get_args(Format)
# Formats that print how to set the secret rather than the secret itself.
RECIPE_FORMATS = ("github", "gitlab")

_FIELDS = ("host", "port", "context", "ca", "cert", "key", "not_after")
_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=_-]*$")


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


# ---------------------------------------------------------------- hosts


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
        if not _BASE64_CHARS.match(compact):
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
        return json.loads(raw.decode("utf-8"))
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
    decoded = _b64decode(compact) if _BASE64_CHARS.match(compact) else b""
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
    if from_env is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", from_env):
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


# ---------------------------------------------------------------- export


@dataclass
class Exported:
    """A freshly exported CI secret: the bundle, its rendering and its inventory record."""

    name: str
    bundle: Bundle
    record: Record
    superseded: list[Record]
    fmt: Format
    text: str  # the rendering in ``fmt``: holds the private key

    def summary(self) -> dict[str, Any]:
        """What the command may print about it: no key material."""
        return {
            "name": self.name,
            "serial": self.record.serial,
            "subject": self.record.subject,
            "context": self.bundle.context,
            "host": self.bundle.host,
            "port": self.bundle.port,
            "not_after": self.record.not_after,
            "format": self.fmt,
            "superseded": [r.serial for r in self.superseded],
        }


@dataclass(frozen=True)
class ExportSettings:
    """How a CI secret is issued: given on the command line or remembered from the last one."""

    name: str
    host: str
    port: int
    days: int
    key_type: str
    context: str


def export_settings(
    store: CAStore,
    name: str,
    host: str | None = None,
    port: int | None = None,
    days: int | None = None,
    key_type: str | None = None,
    context: str | None = None,
) -> ExportSettings:
    """Fill what was not given from the last active export of ``name``, then defaults.

    So ``certkit ci export NAME`` re-exports (rotates) with the same host,
    port, validity and context as the first time.
    """
    from .dockercli import validate_context_name

    check_ci_name(name)
    previous = _active_records(store, name)
    last = previous[-1].leaf_origin if previous else None
    last = last if isinstance(last, CIOrigin) else None
    if host is None and not (last and last.host):
        raise UsageError(
            f"No CI secret named {name!r} was exported yet, so --host is needed: "
            f"certkit ci export {shlex.quote(name)} --host HOST."
        )
    if host is not None:
        host, parsed_port = parse_endpoint(host)
        port = parsed_port if port is None else port
    else:
        assert last is not None
        host = last.host
    port = check_port((last.port if last else DOCKER_TLS_PORT) if port is None else port)
    days = certs.check_days(((last and last.days) or DEFAULT_DAYS) if days is None else days)
    key_type = certs.check_key_type(key_type or (last and last.key_type) or certs.DEFAULT_KEY_TYPE)
    context = validate_context_name(context or (last and last.context) or name)
    return ExportSettings(name, host, port, days, key_type, context)


def check_ci_name(name: str) -> str:
    """A CI name is also the default context name, so docker's rule applies (and CN length)."""
    from .dockercli import validate_context_name

    validate_context_name(name)
    if len(name) > 61:  # the CN "ci:NAME" must fit in 64 characters
        raise UsageError(
            f"The CI name {name!r} is longer than 61 characters; choose a shorter one."
        )
    return name


def _active_records(store: CAStore, name: str) -> list[Record]:
    if not store.inventory_path.exists():
        return []
    return store.inventory().find(kind="ci", name=name, active=True)


def export_ci(store: CAStore, settings: ExportSettings, fmt: Format = "bundle") -> Exported:
    """Issue a CI client certificate for ``settings.name`` and render the secret in ``fmt``.

    The previous active certificate of that name is marked superseded by the
    new one in the inventory.  It stays valid until it expires (dockerd has
    no revocation): that is why CI certificates are short-lived.
    """
    from . import ca

    check_secret_format(fmt)  # github/gitlab: setup_recipe() instead
    store.require()
    issued = ca.issue(
        store,
        "ci",
        settings.name,
        f"ci:{settings.name}",
        None,
        settings.days,
        settings.key_type,
        origin=CIOrigin(
            host=settings.host,
            port=settings.port,
            context=settings.context,
            days=settings.days,
            key_type=settings.key_type,
            format=fmt,
        ),
    )
    superseded = _supersede(store, settings.name, issued.record.serial)
    bundle = Bundle(
        host=settings.host,
        port=settings.port,
        context=settings.context,
        ca=issued.ca_pem.decode(),
        cert=issued.cert_pem.decode(),
        key=issued.key_pem.decode(),
        not_after=issued.record.not_after,
    )
    return Exported(settings.name, bundle, issued.record, superseded, fmt, render(bundle, fmt))


def _supersede(store: CAStore, name: str, new_serial: str) -> list[Record]:
    with store.transaction() as inv:
        old = [r for r in inv.find(kind="ci", name=name, active=True) if r.serial != new_serial]
        for r in old:
            r.superseded_by = new_serial
    return old


def render(bundle: Bundle, fmt: Format) -> str:
    """The secret in ``fmt`` (bundle, env or json), without a trailing newline for bundle."""
    if fmt == "bundle":
        return bundle.encode()
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


def export_command(settings: ExportSettings, ca_name: str) -> str:
    """The ``certkit ci export`` command line that re-creates ``settings``."""
    parts = ["certkit", "ci", "export", settings.name, "--host", settings.host]
    if settings.port != DOCKER_TLS_PORT:
        parts += ["--port", str(settings.port)]
    if settings.days != DEFAULT_DAYS:
        parts += ["--days", str(settings.days)]
    if settings.key_type != certs.DEFAULT_KEY_TYPE:
        parts += ["--key-type", settings.key_type]
    if settings.context != settings.name:
        parts += ["--context", settings.context]
    if ca_name != paths.DEFAULT_CA:
        parts += ["--ca", ca_name]
    return " ".join(shlex.quote(p) for p in parts)


def setup_recipe(fmt: Format, settings: ExportSettings, ca_name: str) -> str:
    """How to put the secret into GitHub or GitLab without it touching argv or the screen.

    Nothing is issued: the commands shown issue the certificate when run.
    """
    export = export_command(settings, ca_name)
    if fmt == "github":
        return _GITHUB_RECIPE.format(export=export, context=settings.context)
    if fmt == "gitlab":
        return _GITLAB_RECIPE.format(export=export, context=settings.context)
    raise ValueError(f"{fmt} is not a recipe format")


_GITHUB_RECIPE = """\
# 1. Store the bundle as a repository secret. gh reads it from stdin:
#    it is never a command-line argument and never shown.
{export} | gh secret set CERTKIT_BUNDLE
#    (outside a clone add --repo OWNER/REPO; for an environment add --env NAME)

# 2. In the workflow, bootstrap the context before any docker step:
#      steps:
#        - run: pipx install certkit
#        - run: certkit ci bootstrap
#          env:
#            CERTKIT_BUNDLE: ${{{{ secrets.CERTKIT_BUNDLE }}}}
#        - run: docker version    # later steps use DOCKER_CONTEXT={context}

# 3. Rotate: run the command of step 1 again (the old certificate is superseded).
"""

_GITLAB_RECIPE = """\
# 1. Store the bundle as a masked, protected CI/CD variable. glab reads it
#    from stdin: it is never a command-line argument and never shown.
{export} | glab variable set CERTKIT_BUNDLE --masked --protected
#    Rotating later: the same pipe into `glab variable update CERTKIT_BUNDLE --masked --protected`.
#    Without glab, the API reads the value from stdin (curl's "<-"):
#    {export} | curl --fail --request POST \\
#      --header "PRIVATE-TOKEN: $GITLAB_TOKEN" --form key=CERTKIT_BUNDLE \\
#      --form "value=<-" --form masked=true --form protected=true \\
#      "https://gitlab.example.com/api/v4/projects/PROJECT_ID/variables"
#    (PUT .../variables/CERTKIT_BUNDLE to update it.)

# 2. In .gitlab-ci.yml:
#      deploy:
#        script:
#          - pipx install certkit    # or pip, in an image with the docker CLI
#          - certkit ci bootstrap      # context {context}, made current
#          - docker version

# The bundle is one line of base64 (masking needs a single line of at least
# 8 base64 characters and GitLab takes at most 10,000); protected variables
# reach only protected branches and tags.
"""


def check_out(path: str | os.PathLike[str]) -> Path:
    """The absolute ``--out`` path, refused before anything is issued when it cannot be written."""
    p = Path(path).expanduser().absolute()
    if p.is_dir():
        raise UsageError(f"--out {path} is a directory; give a file name.")
    if not p.parent.is_dir():
        raise UsageError(f"--out {path}: the directory {p.parent} does not exist.")
    return p


def write_out(path: str | os.PathLike[str], text: str) -> Path:
    """Write a rendered secret to ``path``: created 0600 and atomically, never world-readable."""
    p = check_out(path)
    try:
        return files.atomic_write(p, text, files.PRIVATE_FILE)
    except OSError as e:
        raise OperationError(f"Cannot write {p}: {e.strerror}.") from None


# ---------------------------------------------------------------- bootstrap


@dataclass
class Bootstrapped:
    """What :func:`bootstrap` wrote and what later steps must know."""

    context: str
    host: str
    port: int
    ci_name: str
    not_after: str
    days_left: float
    docker_config: Path
    meta_path: Path
    used: bool
    github_env: Path | None
    env: dict[str, str]  # variables later steps need (DOCKER_CONTEXT, maybe DOCKER_CONFIG)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "context": self.context,
            "docker_host": format_host(self.host, self.port),
            "ci_name": self.ci_name,
            "not_after": self.not_after,
            "days_left": round(self.days_left, 1),
            "docker_config": str(self.docker_config),
            "current": self.used,
            "github_env": str(self.github_env) if self.github_env else None,
            "env": self.env,
            "warnings": self.warnings,
        }

    def export_lines(self) -> list[str]:
        """``export NAME=value`` lines for ``eval "$(certkit ci bootstrap --print-env)"``."""
        return [f"export {k}={shlex.quote(v)}" for k, v in self.env.items()]


def bootstrap(
    env: Mapping[str, str] | None = None,
    *,
    from_env: str | None = None,
    context: str | None = None,
    docker_config: str | os.PathLike[str] | None = None,
    use: bool = True,
    now: dt.datetime | None = None,
) -> Bootstrapped:
    """Turn the CI secret in the environment into a docker context.

    Everything is checked before anything is written; a bad secret raises a
    :class:`UsageError` and leaves the disk untouched.  Then the context is
    written (replacing one of the same name, so re-runs on a persistent
    runner work), made current when ``use``, and ``DOCKER_CONTEXT`` is
    appended to ``$GITHUB_ENV`` when that is set.  No certkit store is read
    or created.
    """
    from .dockercli import (
        docker_context_override_warning,
        docker_host_override_warning,
        set_current_context,
        validate_context_name,
        write_context,
    )

    env = os.environ if env is None else env
    source = from_env or BUNDLE_ENV
    bundle = read_secret(env, from_env)
    if from_env is None and not env.get(BUNDLE_ENV, "").strip():
        source = "the CERTKIT_*_PEM variables"
    checked = check_bundle(bundle, source, now)
    if context:
        name = validate_context_name(context)
    else:
        name = bundle.context or checked.ci_name or "certkit-ci"
        origin = CONTEXT_ENV if source.startswith("the CERTKIT_") else source
        try:
            validate_context_name(name)
        except UsageError:
            raise UsageError(
                f"The context name {name!r} given by {origin} is not a valid docker context "
                "name; pass --context NAME (letters, digits, '_', '.', '+', '-')."
            ) from None
    config_dir = paths.docker_config_dir(docker_config)
    github_env = _github_env_path(env)

    who = checked.ci_name or name
    info = write_context(
        name,
        bundle.host,
        bundle.port,
        bundle.ca.encode(),
        bundle.cert.encode(),
        bundle.key.encode(),
        description=f"certkit CI {who}, certificate until {checked.expiry_date}",
        docker_config=config_dir,
        force=True,
    )
    if use:
        set_current_context(name, docker_config=config_dir)
    later = {"DOCKER_CONTEXT": name}
    if config_dir != _home_docker_config():
        later["DOCKER_CONFIG"] = str(config_dir)
    if github_env is not None:
        _append_github_env(github_env, later)
    warnings = list(checked.warnings)
    overrides = [docker_host_override_warning()]
    if use and github_env is None:
        overrides.append(docker_context_override_warning(name))
    warnings += [w for w in overrides if w]
    return Bootstrapped(
        context=name,
        host=bundle.host,
        port=bundle.port,
        ci_name=checked.ci_name,
        not_after=checked.not_after.isoformat(),
        days_left=checked.days_left,
        docker_config=config_dir,
        meta_path=Path(info.meta_path),
        used=use,
        github_env=github_env,
        env=later,
        warnings=warnings,
    )


def _home_docker_config() -> Path | None:
    """``~/.docker``, the docker CLI's default config dir; None when there is no home."""
    try:
        return Path.home() / ".docker"
    except RuntimeError:
        return None


def _github_env_path(env: Mapping[str, str]) -> Path | None:
    value = env.get(GITHUB_ENV, "").strip()
    if not value:
        return None
    p = Path(value)
    if not p.parent.is_dir():
        raise UsageError(f"$GITHUB_ENV names {value}, whose directory does not exist.")
    return p


def _append_github_env(path: Path, variables: Mapping[str, str]) -> None:
    """Append ``NAME=value`` lines to the runner's env file (the runner owns it: no rewrite)."""
    for k, v in variables.items():
        if "\n" in v or "\r" in v:
            raise UsageError(f"Cannot pass {k} to later steps: its value contains a line break.")
    lines = "".join(f"{k}={v}\n" for k, v in variables.items())
    try:
        with open(path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    lines = "\n" + lines
            f.write(lines.encode())
    except OSError as e:
        raise OperationError(f"Cannot append to $GITHUB_ENV ({path}): {e.strerror}.") from None
