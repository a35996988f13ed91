"""Where the CA lives: issue a CI client certificate and render it as a secret.

:func:`export_ci` issues a short-lived client certificate (kind ``ci``, CN
``ci:NAME``), supersedes the previous one of that name, and renders the
secret (:mod:`certkit.ci.bundle`).  :func:`setup_recipe` prints the commands
that pipe it into ``gh secret set`` / ``glab variable set`` instead.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import certs, defaults, dockercli, files, paths
from ..errors import OperationError, UsageError
from ..names import DOCKER_TLS_PORT, check_port, parse_endpoint
from ..origins import CIOrigin
from .bundle import Bundle, Format, check_secret_format, render

if TYPE_CHECKING:
    from ..store import CAStore, Record

# GitLab refuses CI/CD variable values longer than this.
GITLAB_MAX_VALUE = 10_000


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
    if days is None:
        days = (last and last.days) or defaults.CI_DAYS
    days = certs.check_days(days)
    key_type = certs.check_key_type(
        key_type or (last and last.key_type) or defaults.DEFAULT_KEY_TYPE
    )
    context = dockercli.validate_context_name(context or (last and last.context) or name)
    return ExportSettings(name, host, port, days, key_type, context)


def check_ci_name(name: str) -> str:
    """A CI name is also the default context name, so docker's rule applies (and CN length)."""
    dockercli.validate_context_name(name)
    if len(name) > 61:  # the CN "ci:NAME" must fit in 64 characters
        raise UsageError(
            f"The CI name {name!r} is longer than 61 characters; choose a shorter one."
        )
    return name


def _active_records(store: CAStore, name: str) -> list[Record]:
    return store.inventory().find(kind="ci", name=name, active=True)


def export_ci(store: CAStore, settings: ExportSettings, fmt: Format = "bundle") -> Exported:
    """Issue a CI client certificate for ``settings.name`` and render the secret in ``fmt``.

    The previous active certificate of that name is marked superseded by the
    new one in the inventory.  It stays valid until it expires (dockerd has
    no revocation): that is why CI certificates are short-lived.
    """
    from .. import ca

    check_secret_format(fmt)  # github/gitlab: setup_recipe() instead
    ca.require_ca(store)
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


def export_command(settings: ExportSettings, ca_name: str) -> str:
    """The ``certkit ci export`` command line that re-creates ``settings``."""
    parts = ["certkit", "ci", "export", settings.name, "--host", settings.host]
    if settings.port != DOCKER_TLS_PORT:
        parts += ["--port", str(settings.port)]
    if settings.days != defaults.CI_DAYS:
        parts += ["--days", str(settings.days)]
    if settings.key_type != defaults.DEFAULT_KEY_TYPE:
        parts += ["--key-type", settings.key_type]
    if settings.context != settings.name:
        parts += ["--context", settings.context]
    if ca_name != paths.DEFAULT_CA:
        parts += ["--ca", ca_name]
    return " ".join(shlex.quote(p) for p in parts)


def setup_recipe(fmt: Format, settings: ExportSettings, ca_name: str) -> str:
    """How to put the secret into GitHub or GitLab without it touching argv or the screen,
    and the job's side: a few POSIX sh lines (base64, tar: nothing installed), or certkit
    installed pinned to a wheel and its hash (never a bare name from a public index).

    Nothing is issued: the commands shown issue the certificate when run.
    """
    from .. import __version__

    export = export_command(settings, ca_name)
    tar_export = f"{export} --format tar"
    wheel = f"certkit-{__version__}-py3-none-any.whl"
    if fmt == "github":
        return _GITHUB_RECIPE.format(
            export=export, tar_export=tar_export, context=settings.context, wheel=wheel,
            sh=_indent(SH_BOOTSTRAP_GITHUB, "#            "),
        )  # fmt: skip
    if fmt == "gitlab":
        return _GITLAB_RECIPE.format(
            export=export, tar_export=tar_export, context=settings.context, wheel=wheel,
            sh=_indent(SH_BOOTSTRAP, "#          - "),
        )  # fmt: skip
    raise ValueError(f"{fmt} is not a recipe format")


def _indent(lines: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in lines.splitlines())


# The job's side of a ``--format tar`` secret in CERTKIT_DOCKER_TLS: POSIX sh, base64 and tar
# only (no certkit, no Python).  The files go to the runner's temp dir (GitHub), else HOME,
# never the checkout; umask 077 keeps them the job user's.
SH_BOOTSTRAP = """\
umask 077; d="${RUNNER_TEMP:-$HOME}"
printf '%s' "$CERTKIT_DOCKER_TLS" | base64 -d | tar -xf - -C "$d"
export DOCKER_CERT_PATH="$d/.certkit-tls" DOCKER_TLS_VERIFY=1
read -r DOCKER_HOST < "$DOCKER_CERT_PATH/docker-host"; export DOCKER_HOST"""
# GitHub: later steps see only what a step appends to $GITHUB_ENV.
SH_BOOTSTRAP_GITHUB = SH_BOOTSTRAP + "".join(
    f'\necho "{v}=${v}" >> "$GITHUB_ENV"'
    for v in ("DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "DOCKER_HOST")
)

_GITHUB_RECIPE = """\
# 1. Store the secret in the repository. gh reads it from stdin:
#    it is never a command-line argument and never shown.
{tar_export} | gh secret set CERTKIT_DOCKER_TLS
#    (outside a clone add --repo OWNER/REPO; for an environment add --env NAME)

# 2. In the workflow, before any docker step (POSIX sh, base64 and tar: nothing installed):
#      steps:
#        - run: |
{sh}
#          env:
#            CERTKIT_DOCKER_TLS: ${{{{ secrets.CERTKIT_DOCKER_TLS }}}}
#        - run: docker version    # later steps use DOCKER_HOST, DOCKER_CERT_PATH
#
#    Or with certkit in the job (a docker context named {context}): store the output of
#    `{export}` as CERTKIT_BUNDLE instead, and install certkit
#    pinned to a wheel you built and its hash, never by a bare name from a public index
#    (certkit is not published there: whoever registers the name gets the job's key):
#        - run: pip install "certkit @ https://YOUR-HOST/{wheel}#sha256=THE-WHEEL-SHA256"
#        - run: certkit ci bootstrap
#          env:
#            CERTKIT_BUNDLE: ${{{{ secrets.CERTKIT_BUNDLE }}}}

# 3. Rotate: run the command of step 1 again (the old certificate is superseded).
"""

_GITLAB_RECIPE = """\
# 1. Store the secret as a masked, protected CI/CD variable. glab reads it
#    from stdin: it is never a command-line argument and never shown.
{tar_export} | glab variable set CERTKIT_DOCKER_TLS --masked --protected
#    Rotating later: the same pipe into
#    `glab variable update CERTKIT_DOCKER_TLS --masked --protected`.
#    Without glab, the API reads the value from stdin (curl's "<-") and the token from a
#    file (never in curl's arguments, which every local user can read in ps):
#    printf 'PRIVATE-TOKEN: %s\\n' "$GITLAB_TOKEN" > ~/.gitlab-token-header  # umask 077
#    {tar_export} | curl --fail --request POST \\
#      --header @$HOME/.gitlab-token-header --form key=CERTKIT_DOCKER_TLS \\
#      --form "value=<-" --form masked=true --form protected=true \\
#      "https://gitlab.example.com/api/v4/projects/PROJECT_ID/variables"
#    (PUT .../variables/CERTKIT_DOCKER_TLS to update it.)

# 2. In .gitlab-ci.yml (POSIX sh, base64 and tar: nothing installed, any image with docker):
#      deploy:
#        script:
{sh}
#          - docker version
#
#    Or with certkit in the job (a docker context named {context}): store the output of
#    `{export}` as CERTKIT_BUNDLE instead, and install certkit
#    pinned to a wheel you built and its hash, never by a bare name from a public index
#    (certkit is not published there: whoever registers the name gets the job's key):
#          - pip install "certkit @ https://YOUR-HOST/{wheel}#sha256=THE-WHEEL-SHA256"
#          - certkit ci bootstrap

# The secret is one line of base64 (masking needs a single line of at least
# 8 base64 characters and GitLab takes at most 10,000); protected variables
# reach only protected branches and tags.
"""


def check_out(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """The absolute ``--out`` path, refused before anything is issued when it cannot be
    written: a directory, a link, a file already there without ``force``, an unsafe directory."""
    p = Path(path).expanduser().absolute()
    if p.is_dir() and not p.is_symlink():
        raise UsageError(f"--out {path} is a directory; give a file name.")
    return files.check_output_file(p, force=force)


def write_out(path: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    """Write a rendered secret to ``path``: created 0600 and atomically, never world-readable,
    never through a link; an existing file is replaced only with ``force``."""
    p = check_out(path, force=force)
    try:
        return files.write_output_file(p, text, files.PRIVATE_FILE, force=force)
    except OSError as e:
        raise OperationError(f"Cannot write {p}: {e.strerror}.") from None
