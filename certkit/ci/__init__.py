"""CI secrets: one opaque bundle out of the store, a docker context out of it in the job.

Two halves that never meet on the same machine:

* :mod:`.export` runs where the CA lives: :func:`export_ci` issues a
  short-lived client certificate (kind ``ci``, CN ``ci:NAME``), supersedes
  the previous one of that name, and renders the secret; :func:`setup_recipe`
  prints the commands that pipe it into ``gh secret set`` / ``glab variable
  set``.
* :mod:`.bootstrap` runs on a bare CI runner: :func:`bootstrap` reads the
  secret from the environment, checks it completely before writing anything,
  then writes the docker context and tells later steps about it.

:mod:`.bundle` is the format both halves share: a :class:`Bundle` (base64 of
a small versioned JSON), a dotenv, or the JSON itself.  Error messages name
the variable and what is wrong with it, never its value.
"""

from __future__ import annotations

from .bootstrap import GITHUB_ENV, Bootstrapped, bootstrap
from .bundle import (
    BUNDLE_ENV,
    BUNDLE_VERSION,
    CA_ENV,
    CERT_ENV,
    CONTEXT_ENV,
    FORMATS,
    HOST_ENV,
    KEY_ENV,
    LAYOUT_ENVS,
    RECIPE_FORMATS,
    WARN_DAYS,
    Bundle,
    Checked,
    Format,
    check_bundle,
    check_format,
    check_secret_format,
    decode_bundle,
    describe_days,
    read_secret,
    render,
)
from .export import (
    GITLAB_MAX_VALUE,
    Exported,
    ExportSettings,
    check_ci_name,
    check_out,
    export_ci,
    export_command,
    export_settings,
    setup_recipe,
    write_out,
)

__all__ = [
    "BUNDLE_ENV",
    "BUNDLE_VERSION",
    "CA_ENV",
    "CERT_ENV",
    "CONTEXT_ENV",
    "FORMATS",
    "GITHUB_ENV",
    "GITLAB_MAX_VALUE",
    "HOST_ENV",
    "KEY_ENV",
    "LAYOUT_ENVS",
    "RECIPE_FORMATS",
    "WARN_DAYS",
    "Bootstrapped",
    "Bundle",
    "Checked",
    "ExportSettings",
    "Exported",
    "Format",
    "bootstrap",
    "check_bundle",
    "check_ci_name",
    "check_format",
    "check_out",
    "check_secret_format",
    "decode_bundle",
    "describe_days",
    "export_ci",
    "export_command",
    "export_settings",
    "read_secret",
    "render",
    "setup_recipe",
    "write_out",
]
