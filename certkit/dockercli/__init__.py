"""The docker CLI's files, and the only code in certkit that knows their format.

* :mod:`.store`: the context store (``contexts/meta``, ``contexts/tls``):
  read, list, write and remove contexts, and the context name rule.
* :mod:`.config`: ``config.json``'s ``currentContext``, edited without
  losing the credentials kept next to it.
* :mod:`.env`: what overrides a context (``DOCKER_HOST``,
  ``DOCKER_CONTEXT``, CA-bundle variables that break docker-py) and
  ``certkit env``'s variables for five shells.
* :mod:`.archive`: the tar (or zip) of ``docker context export``/``import``.

Everyone else asks this package for a :class:`ContextInfo` instead of
reading ``meta.json`` files themselves, as docker/cli's own
``cli/context/store`` keeps its layout to itself.
"""

from __future__ import annotations

from .archive import MAX_ARCHIVE, ContextArchive, export_context, import_context, read_archive
from .config import (
    check_current_context,
    current_context,
    ensure_config_file,
    set_current_context,
)
from .env import (
    CA_BUNDLE_VARS,
    SHELLS,
    ca_bundle_override,
    docker_context_override_warning,
    docker_host_override_warning,
    docker_py_advice,
    env_variables,
    render_env,
    selected_context,
)
from .store import (
    ENDPOINT,
    TLS_FILES,
    ContextInfo,
    check_config_dir,
    check_endpoint,
    check_writable,
    context_exists,
    context_id,
    default_name_for,
    list_contexts,
    meta_document,
    read_context,
    remove_context,
    save_context,
    validate_context_name,
    validate_description,
    write_context,
)

__all__ = [
    "CA_BUNDLE_VARS",
    "ENDPOINT",
    "MAX_ARCHIVE",
    "SHELLS",
    "TLS_FILES",
    "ContextArchive",
    "ContextInfo",
    "ca_bundle_override",
    "check_config_dir",
    "check_current_context",
    "check_endpoint",
    "check_writable",
    "context_exists",
    "context_id",
    "current_context",
    "default_name_for",
    "docker_context_override_warning",
    "docker_host_override_warning",
    "docker_py_advice",
    "ensure_config_file",
    "env_variables",
    "export_context",
    "import_context",
    "list_contexts",
    "meta_document",
    "read_archive",
    "read_context",
    "remove_context",
    "render_env",
    "save_context",
    "selected_context",
    "set_current_context",
    "validate_context_name",
    "validate_description",
    "write_context",
]
