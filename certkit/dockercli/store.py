"""The context store: where the docker CLI keeps its contexts, and how to read and write them.

A docker context is two things under the docker config dir (docs/design.md,
"The docker CLI's context store")::

    contexts/meta/<sha256(name)>/meta.json          0755 dir, 0644 file
    contexts/tls/<sha256(name)>/docker/ca.pem       0700 dirs, 0600 files
                                      /cert.pem
                                      /key.pem

This module is the only one that knows that layout: everyone else asks it
(:func:`read_context`, :func:`list_contexts`, :func:`write_context`) and gets
a :class:`ContextInfo`.  certkit writes the format itself instead of going
through docker-py's ``Context.save`` (which copies files under the umask and
renames ``tcp://`` to ``https://``), every file atomically through
:mod:`certkit.files`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import files, paths
from ..errors import OperationError, UsageError
from ..files import StrPath
from ..names import format_host, ip_or_none, normalize_dns_name, parse_endpoint
from ..untrusted import has_controls, loads_json, refuse_controls

TLS_FILES = paths.CLIENT_FILES  # the only names the docker CLI reads
ENDPOINT = "docker"
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.+-]+")  # fullmatch: "$" would let "\n" through


# ---------------------------------------------------------------- names


def validate_context_name(name: str) -> str:
    """Return ``name`` if the docker CLI accepts it as a context name, else raise UsageError."""
    if name == "default":
        raise UsageError(
            "'default' is reserved by the docker CLI for its built-in context; choose another name."
        )
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a valid docker context name: use at least two characters, "
            "letters, digits, '_', '.', '+' and '-', starting with a letter or digit."
        )
    return name


DESCRIPTION_MAX = 512


def validate_description(text: str) -> str:
    """Return ``text`` if it can describe a context: one line (``docker context ls`` prints
    it in a table row), no control character, at most :data:`DESCRIPTION_MAX` characters."""
    if has_controls(text) or len(text) > DESCRIPTION_MAX:
        raise UsageError(
            f"The description {text[:40]!r} is not one line of at most {DESCRIPTION_MAX} "
            "printable characters (docker context ls shows it in a table row)."
        )
    return text


def context_id(name: str) -> str:
    """The directory name the docker CLI uses for context ``name``: sha256 hex of the name."""
    return hashlib.sha256(name.encode()).hexdigest()


def default_name_for(host: str) -> str:
    """A context name derived from a host: ``Docker1.example.com`` -> ``docker1``.

    IP addresses keep all their digits (``10.0.0.5`` -> ``10-0-0-5``) since the
    first part alone would name the network, not the host.
    """
    bare = host.strip().strip("[]")
    if ip_or_none(bare) is not None:
        candidate = re.sub(r"[^a-zA-Z0-9]+", "-", bare).strip("-")
    else:
        from contextlib import suppress

        with suppress(UsageError):  # a bad host is reported by format_host
            bare = normalize_dns_name(bare)  # as in the endpoint: lower case, IDN A-labels
        candidate = bare.split(".")[0]
    candidate = re.sub(r"[^a-zA-Z0-9_.+-]", "-", candidate).strip("-_.+")
    if len(candidate) < 2 or candidate == "default":
        candidate = f"docker-{candidate}".rstrip("-")
    return validate_context_name(candidate)


def check_endpoint(host: str, context: str) -> str:
    """The canonical ``tcp://HOST:PORT`` of a context's endpoint; UsageError for anything else.

    Every endpoint that crosses a trust boundary (an imported archive, a
    meta.json about to be rendered by ``certkit env``) goes through the one
    endpoint parser: a TLS context points at ``tcp://`` and nothing else
    (no ``ssh://``, ``unix://``, paths, users, quotes or control characters).
    """
    refuse_controls(host, f"The endpoint of context {context!r},")
    if not host.startswith("tcp://"):
        raise UsageError(
            f"Context {context!r} points at {host!r}, not at a tcp:// host: "
            "certkit handles only TLS contexts (tcp://HOST:PORT)."
        )
    try:
        bare, port = parse_endpoint(host)
        return format_host(bare, port)
    except UsageError as e:
        raise UsageError(
            f"Context {context!r} has an invalid endpoint {host!r} ({e.message.rstrip('.')})."
        ) from None


# ---------------------------------------------------------------- the layout


@dataclass
class ContextInfo:
    """A docker context on disk: its name, endpoint and where its files are."""

    name: str
    host: str  # tcp://HOST:PORT
    meta_path: Path
    tls_dir: Path  # .../contexts/tls/<id>/docker
    config_dir: Path
    description: str = ""
    skip_tls_verify: bool = False  # the endpoint's SkipTLSVerify: the CLI trusts any server

    def tls_file(self, name: str) -> Path:
        return self.tls_dir / name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "description": self.description,
            "meta_path": str(self.meta_path),
            "tls_dir": str(self.tls_dir),
            "docker_config": str(self.config_dir),
            "skip_tls_verify": self.skip_tls_verify,
        }


def _meta_root(config_dir: Path) -> Path:
    return config_dir / "contexts" / "meta"


def _tls_root(config_dir: Path) -> Path:
    return config_dir / "contexts" / "tls"


def _locate(name: str, config_dir: Path) -> tuple[Path, Path]:
    """(meta dir, tls dir) of context ``name`` in ``config_dir``."""
    digest = context_id(name)
    return _meta_root(config_dir) / digest, _tls_root(config_dir) / digest


def ensure_config_dir(config_dir: Path) -> None:
    """Create the docker config dir private (0700) when it does not exist yet.

    config.json holds registry credentials; an existing dir keeps the mode its
    owner gave it.
    """
    if not config_dir.exists():
        files.ensure_dir(config_dir, files.PRIVATE_DIR)


def check_config_dir(config_dir: Path) -> None:
    """UsageError when an existing docker config dir is someone else's to fill.

    It must be owned by you (or root) and not writable by others: whoever can
    plant entries there (a sticky /tmp-like directory too) chooses what
    certkit's writes replace, and what the docker CLI reads.  A missing dir
    is created 0700 later.
    """
    try:
        st = config_dir.stat()
    except OSError:
        return  # missing, or reported by the write itself
    if st.st_uid not in (os.geteuid(), 0):
        raise UsageError(
            f"The docker config dir {config_dir} is owned by uid {st.st_uid}, not by you; "
            "point DOCKER_CONFIG or --docker-config at a directory of your own."
        )
    if st.st_mode & 0o002:
        raise UsageError(
            f"The docker config dir {config_dir} is writable by every user "
            f"(mode {st.st_mode & 0o7777:04o}); point DOCKER_CONFIG or --docker-config at a "
            "directory of your own (the docker CLI creates ~/.docker 0700)."
        )


def unwritable(config_dir: Path, e: OSError) -> OperationError:
    """The error for a failed write under the docker config dir."""
    return OperationError(
        f"Cannot write to the docker config dir {config_dir} ({e.strerror or e}); "
        "point DOCKER_CONFIG or --docker-config at a writable directory."
    )


def check_writable(directory: Path, option: str = "DOCKER_CONFIG or --docker-config") -> None:
    """UsageError unless ``directory`` is, or can be created as, a writable directory.

    Called before a certificate is issued, so a bad ``--docker-config`` (or
    ``--out``, named by ``option``) costs nothing.
    """
    cur = directory
    while not cur.exists() and cur != cur.parent:
        cur = cur.parent
    if not cur.is_dir() or not os.access(cur, os.W_OK | os.X_OK):
        raise UsageError(
            f"{directory} cannot be written ({cur} is not a writable directory); "
            f"point {option} at a writable directory."
        )


# ---------------------------------------------------------------- reading


def context_exists(name: str, docker_config: StrPath | None = None) -> bool:
    meta_dir, _ = _locate(name, paths.docker_config_dir(docker_config))
    return (meta_dir / "meta.json").exists()


def read_context(name: str, docker_config: StrPath | None = None) -> ContextInfo:
    """The context ``name`` as stored; UsageError when it does not exist or is unreadable."""
    config_dir = paths.docker_config_dir(docker_config)
    meta_dir, tls_root = _locate(name, config_dir)
    meta_path = meta_dir / "meta.json"
    try:
        meta = loads_json(meta_path.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"No docker context named {name!r} in {config_dir}; "
            "create one with `certkit client-context NAME --host HOST`."
        ) from None
    except (OSError, ValueError):
        raise UsageError(f"The context metadata {meta_path} is unreadable or corrupted.") from None
    parsed = _parse_meta(meta)
    if parsed is None or "Host" not in meta["Endpoints"][ENDPOINT]:
        raise UsageError(f"Context {name!r} has no docker endpoint in {meta_path}.")
    _, host, description, skip = parsed
    return ContextInfo(name, host, meta_path, tls_root / ENDPOINT, config_dir, description, skip)


def _parse_meta(meta: Any) -> tuple[str, str, str, bool] | None:
    """(Name, Host, Description, SkipTLSVerify) of a meta.json document, None when malformed."""
    try:
        endpoint = meta["Endpoints"][ENDPOINT]
        host = str(endpoint.get("Host", ""))
        description = str((meta.get("Metadata") or {}).get("Description", ""))
        return str(meta.get("Name", "")), host, description, bool(endpoint.get("SkipTLSVerify"))
    except (KeyError, TypeError, AttributeError):
        return None


def list_contexts(docker_config: StrPath | None = None) -> list[ContextInfo]:
    """Every readable context in the store, in the order of their directory ids.

    A meta.json that cannot be read, or has no name or no docker endpoint, is
    skipped (the docker CLI would not list it either).  ``host`` is empty for
    an endpoint without a ``Host``.
    """
    config_dir = paths.docker_config_dir(docker_config)
    found = []
    for meta_path in sorted(_meta_root(config_dir).glob("*/meta.json")):
        try:
            meta = loads_json(meta_path.read_text())
        except (OSError, ValueError):
            continue
        parsed = _parse_meta(meta)
        if parsed is None or not parsed[0]:
            continue
        name, host, description, skip = parsed
        tls_dir = _tls_root(config_dir) / meta_path.parent.name / ENDPOINT
        found.append(ContextInfo(name, host, meta_path, tls_dir, config_dir, description, skip))
    return found


# ---------------------------------------------------------------- writing


def meta_document(name: str, host: str, description: str = "") -> dict[str, Any]:
    """meta.json exactly as the docker CLI writes it (key order included)."""
    return {
        "Name": name,
        "Metadata": {"Description": description} if description else {},
        "Endpoints": {ENDPOINT: {"Host": host, "SkipTLSVerify": False}},
    }


def save_context(
    name: str,
    meta: dict[str, Any],
    tls: Mapping[str, bytes],
    docker_config: StrPath | None = None,
    *,
    force: bool = False,
) -> ContextInfo:
    """Write one context as given (TLS files first, then meta.json) and read it back.

    ``meta`` is the meta.json document (see :func:`meta_document`), ``tls``
    maps TLS file names (:data:`TLS_FILES`) to their content; a replaced
    context loses the TLS files the new one lacks.
    """
    config_dir = paths.docker_config_dir(docker_config)
    check_config_dir(config_dir)
    meta_dir, tls_root = _locate(name, config_dir)
    if (meta_dir / "meta.json").exists() and not force:
        raise UsageError(
            f"A docker context named {name!r} already exists in {config_dir}; "
            "pass --force to replace it, or choose another name."
        )
    try:
        _write(meta, tls, config_dir, meta_dir, tls_root)
    except OSError as e:
        raise unwritable(config_dir, e) from None
    return read_context(name, config_dir)


def _write(
    meta: dict[str, Any], tls: Mapping[str, bytes], config_dir: Path, meta_dir: Path, tls_root: Path
) -> None:
    """The writes of :func:`save_context`, which turns their OSError into one sentence."""
    ensure_config_dir(config_dir)
    files.ensure_dir(config_dir / "contexts", files.PUBLIC_DIR)
    files.ensure_dir(_meta_root(config_dir), files.PUBLIC_DIR)
    files.ensure_dir(meta_dir, files.PUBLIC_DIR)
    files.ensure_dir(_tls_root(config_dir), files.PRIVATE_DIR)
    files.ensure_dir(tls_root, files.PRIVATE_DIR)
    tls_dir = files.ensure_dir(tls_root / ENDPOINT, files.PRIVATE_DIR)
    if tls:
        files.atomic_write_many(
            [(tls_dir / fname, data, files.PRIVATE_FILE) for fname, data in tls.items()]
        )
    for stale in TLS_FILES:  # a replaced context must not keep files the new one lacks
        if stale not in tls:
            (tls_dir / stale).unlink(missing_ok=True)
    # meta.json last: the docker CLI sees the context only once its TLS files are in place.
    meta_json = json.dumps(meta, separators=(",", ":"))
    files.atomic_write(meta_dir / "meta.json", meta_json, files.PUBLIC_FILE)


def write_context(
    name: str,
    host: str,
    port: int,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    description: str = "",
    docker_config: StrPath | None = None,
    force: bool = False,
) -> ContextInfo:
    """Create (or with ``force`` replace) the docker context ``name`` for ``tcp://host:port``.

    ``ca_pem`` is what the client trusts (use ``CAStore.trust_bundle_pem()``),
    ``cert_pem``/``key_pem`` the client certificate and its unencrypted key.
    The result is what ``docker context create`` would have written: the
    docker CLI, ``docker context ls`` and docker-py 7.2+ all read it.

    >>> info = write_context("prod", "docker1", 2376, ca, cert, key)  # doctest: +SKIP
    >>> info.host
    'tcp://docker1:2376'
    """
    validate_context_name(name)
    endpoint = format_host(host, port)
    meta = meta_document(name, endpoint, validate_description(description))
    tls = {"ca.pem": ca_pem, "cert.pem": cert_pem, "key.pem": key_pem}
    return save_context(name, meta, tls, docker_config, force=force)


def remove_context(name: str, docker_config: StrPath | None = None) -> None:
    """Delete context ``name`` (meta first, so it disappears before its files do)."""
    import shutil

    meta_dir, tls_root = _locate(name, paths.docker_config_dir(docker_config))
    shutil.rmtree(meta_dir, ignore_errors=True)
    shutil.rmtree(tls_root, ignore_errors=True)
