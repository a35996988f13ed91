"""The docker CLI's context store, written the way the docker CLI writes it.

A docker context is two things under the docker config dir (facts doc
section 2)::

    contexts/meta/<sha256(name)>/meta.json          0755 dir, 0644 file
    contexts/tls/<sha256(name)>/docker/ca.pem       0700 dirs, 0600 files
                                      /cert.pem
                                      /key.pem

plus, when it is the one in use, ``currentContext`` in ``config.json``.
certkit writes this format itself instead of going through docker-py's
``Context.save`` (which copies files under the umask and renames ``tcp://``
to ``https://``), every file atomically through :mod:`certkit.files`.

This module also renders ``certkit env`` (``DOCKER_HOST`` & co. for tools
that ignore contexts) and reads and writes the tar of ``docker context
export``, refusing anything in an imported tar that is not a context.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import files, paths
from .errors import OperationError, UsageError
from .names import format_host, ip_or_none, normalize_dns_name

StrPath = str | os.PathLike[str]

TLS_FILES = paths.CLIENT_FILES  # the only names the docker CLI reads
ENDPOINT = "docker"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$")
# Variables that make requests (hence docker-py) ignore the context's ca.pem.
CA_BUNDLE_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


# ---------------------------------------------------------------- names and hosts


def validate_context_name(name: str) -> str:
    """Return ``name`` if the docker CLI accepts it as a context name, else raise UsageError."""
    if name == "default":
        raise UsageError(
            "'default' is reserved by the docker CLI for its built-in context; choose another name."
        )
    if not _NAME.match(name):
        raise UsageError(
            f"{name!r} is not a valid docker context name: use at least two characters, "
            "letters, digits, '_', '.', '+' and '-', starting with a letter or digit."
        )
    return name


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


# ---------------------------------------------------------------- the store


@dataclass
class ContextInfo:
    """A docker context on disk: its name, endpoint and where its files are."""

    name: str
    host: str  # tcp://HOST:PORT
    meta_path: Path
    tls_dir: Path  # .../contexts/tls/<id>/docker
    config_dir: Path
    description: str = ""

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
        }


def _locate(name: str, config_dir: Path) -> tuple[Path, Path]:
    """(meta dir, tls dir) of context ``name`` in ``config_dir``."""
    digest = context_id(name)
    contexts = config_dir / "contexts"
    return contexts / "meta" / digest, contexts / "tls" / digest


def context_exists(name: str, docker_config: StrPath | None = None) -> bool:
    meta_dir, _ = _locate(name, paths.docker_config_dir(docker_config))
    return (meta_dir / "meta.json").exists()


def meta_document(name: str, host: str, description: str = "") -> dict[str, Any]:
    """meta.json exactly as the docker CLI writes it (key order included)."""
    return {
        "Name": name,
        "Metadata": {"Description": description} if description else {},
        "Endpoints": {ENDPOINT: {"Host": host, "SkipTLSVerify": False}},
    }


def _ensure_config_dir(config_dir: Path) -> None:
    # A config dir certkit creates is private (config.json holds registry
    # credentials); an existing one keeps the mode its owner gave it.
    if not config_dir.exists():
        files.ensure_dir(config_dir, files.PRIVATE_DIR)


def _store(
    name: str,
    meta: dict[str, Any],
    tls: Mapping[str, bytes],
    config_dir: Path,
    force: bool,
) -> tuple[Path, Path]:
    """Write one context (TLS files first, then meta.json); returns (meta.json, tls dir)."""
    meta_dir, tls_root = _locate(name, config_dir)
    meta_path = meta_dir / "meta.json"
    if meta_path.exists() and not force:
        raise UsageError(
            f"A docker context named {name!r} already exists in {config_dir}; "
            "pass --force to replace it, or choose another name."
        )
    try:
        return _write_store(meta, tls, config_dir, meta_dir, tls_root)
    except OSError as e:
        raise _unwritable(config_dir, e) from None


def _write_store(
    meta: dict[str, Any], tls: Mapping[str, bytes], config_dir: Path, meta_dir: Path, tls_root: Path
) -> tuple[Path, Path]:
    """The writes of :func:`_store`, which turns their OSError into one sentence."""
    meta_path = meta_dir / "meta.json"
    _ensure_config_dir(config_dir)
    files.ensure_dir(config_dir / "contexts", files.PUBLIC_DIR)
    files.ensure_dir(config_dir / "contexts" / "meta", files.PUBLIC_DIR)
    files.ensure_dir(meta_dir, files.PUBLIC_DIR)
    files.ensure_dir(config_dir / "contexts" / "tls", files.PRIVATE_DIR)
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
    files.atomic_write(meta_path, json.dumps(meta, separators=(",", ":")), files.PUBLIC_FILE)
    return meta_path, tls_dir


def _unwritable(config_dir: Path, e: OSError) -> OperationError:
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
    config_dir = paths.docker_config_dir(docker_config)
    meta = meta_document(name, endpoint, description)
    tls = {"ca.pem": ca_pem, "cert.pem": cert_pem, "key.pem": key_pem}
    meta_path, tls_dir = _store(name, meta, tls, config_dir, force)
    return ContextInfo(name, endpoint, meta_path, tls_dir, config_dir, description)


def read_context(name: str, docker_config: StrPath | None = None) -> ContextInfo:
    """The context ``name`` as stored; UsageError when it does not exist or is unreadable."""
    config_dir = paths.docker_config_dir(docker_config)
    meta_dir, tls_root = _locate(name, config_dir)
    meta_path = meta_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"No docker context named {name!r} in {config_dir}; "
            "create one with `certkit client-context NAME --host HOST`."
        ) from None
    except (OSError, ValueError):
        raise UsageError(f"The context metadata {meta_path} is unreadable or corrupted.") from None
    try:
        host = str(meta["Endpoints"][ENDPOINT]["Host"])
        description = str((meta.get("Metadata") or {}).get("Description", ""))
    except (KeyError, TypeError, AttributeError):
        raise UsageError(f"Context {name!r} has no docker endpoint in {meta_path}.") from None
    return ContextInfo(name, host, meta_path, tls_root / ENDPOINT, config_dir, description)


def remove_context(name: str, docker_config: StrPath | None = None) -> None:
    """Delete context ``name`` (meta first, so it disappears before its files do)."""
    import shutil

    meta_dir, tls_root = _locate(name, paths.docker_config_dir(docker_config))
    shutil.rmtree(meta_dir, ignore_errors=True)
    shutil.rmtree(tls_root, ignore_errors=True)


# ---------------------------------------------------------------- config.json


def set_current_context(name: str, docker_config: StrPath | None = None) -> Path:
    """Make ``name`` the current context in ``config.json``; returns the file's path.

    Only the ``currentContext`` value is touched: every other byte of the
    file (``auths``, ``credsStore``, ``proxies``, formatting) stays as it
    was.  The file is replaced atomically with mode 0600, and followed when
    it is a symlink (as the docker CLI does).
    """
    validate_context_name(name)
    config_dir = paths.docker_config_dir(docker_config)
    _ensure_config_dir(config_dir)
    config = config_dir / "config.json"
    target = config.resolve() if config.is_symlink() else config
    try:
        text = target.read_text()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"Cannot read {config}: {e}; fix or remove it first.") from None
    try:
        files.atomic_write(target, _with_current_context(text, name, config), files.PRIVATE_FILE)
    except OSError as e:
        raise _unwritable(config_dir, e) from None
    return config


def current_context(docker_config: StrPath | None = None) -> str | None:
    """``currentContext`` from config.json, or None."""
    config = paths.docker_config_dir(docker_config) / "config.json"
    try:
        value = json.loads(config.read_text()).get("currentContext")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def _with_current_context(text: str, name: str, where: Path) -> str:
    """``text`` (a JSON object) with ``currentContext`` set, all else byte-for-byte."""
    value = json.dumps(name)
    if not text.strip():
        return "{\n\t" + f'"currentContext": {value}' + "\n}"
    try:
        spans = _top_level_spans(text)
    except ValueError:
        raise UsageError(
            f"{where} is not a JSON object; fix it (or move it aside) and run again."
        ) from None
    found = [s for s in spans if s[0] == "currentContext"]
    if found:
        _, start, end = found[-1]  # the last duplicate is the one parsers keep
        return text[:start] + value + text[end:]
    close = text.rindex("}")
    if not spans:
        return text[:close] + f'\n\t"currentContext": {value}\n' + text[close:]
    first_key = text.index('"', text.index("{"))
    line_start = text.rfind("\n", 0, first_key) + 1
    indent = text[line_start:first_key] if line_start else ""
    sep = f"\n{indent}" if "\n" in text[: first_key + 1] else " "
    last_end = spans[-1][2]
    return text[:last_end] + f',{sep}"currentContext": {value}' + text[last_end:]


def _top_level_spans(text: str) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of each top-level member of a JSON object."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")

    def skip(i: int) -> int:
        m = ws.match(text, i)
        assert m is not None
        return m.end()

    i = skip(0)
    if text[i : i + 1] != "{":
        raise ValueError("not an object")
    i = skip(i + 1)
    spans: list[tuple[str, int, int]] = []
    if text[i : i + 1] == "}":
        return spans
    while True:
        key, i = decoder.raw_decode(text, i)
        if not isinstance(key, str):
            raise ValueError("bad key")
        i = skip(i)
        if text[i : i + 1] != ":":
            raise ValueError("missing ':'")
        start = skip(i + 1)
        _, end = decoder.raw_decode(text, start)
        spans.append((key, start, end))
        i = skip(end)
        if text[i : i + 1] == ",":
            i = skip(i + 1)
            continue
        if text[i : i + 1] == "}" and not text[i + 1 :].strip():
            return spans
        raise ValueError("trailing data")


# ---------------------------------------------------------------- environment


def docker_host_override_warning() -> str | None:
    """The warning to print when ``DOCKER_HOST`` would override contexts, else None."""
    value = os.environ.get("DOCKER_HOST", "")
    if not value:
        return None
    return (
        f"DOCKER_HOST is set ({value}) and overrides the current docker context "
        "(only an explicit `docker --context NAME` beats it): run `unset DOCKER_HOST` "
        "to use the context."
    )


def docker_context_override_warning(name: str) -> str | None:
    """The warning to print when ``DOCKER_CONTEXT`` names another context than ``name``."""
    value = os.environ.get("DOCKER_CONTEXT", "")
    if not value or value == name:
        return None
    return (
        f"DOCKER_CONTEXT is set to {value!r} and overrides currentContext in config.json: "
        f"run `unset DOCKER_CONTEXT` (or `export DOCKER_CONTEXT={name}`) to use {name!r}."
    )


def ca_bundle_override() -> list[str]:
    """The set ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` variables, as ``VAR=value``."""
    return [f"{v}={os.environ[v]}" for v in CA_BUNDLE_VARS if os.environ.get(v)]


def docker_py_advice(name: str | None = None) -> list[str]:
    """Why docker-py fails in this environment and how to fix it, or [] when nothing is in the way.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace the CA
    docker-py sets from ``ca.pem`` (psf/requests#3829, docker/docker-py#2433):
    the daemon's certificate is then checked against the system CAs and
    fails.  Measured with docker 7.2.0: building the client with an explicit
    ``version`` (so the constructor does not call the daemon) and then
    setting ``client.api.trust_env = False`` works.  With ``name`` the fix
    loads that context (docker-py 7.2+); without, it reads ``certkit env``'s
    variables.
    """
    found = [v for v in CA_BUNDLE_VARS if os.environ.get(v)]
    if not found:
        return []
    load = (
        f'docker.DockerClient.from_context("{name}", version="1.41")'
        if name
        else 'docker.from_env(version="1.41")'
    )
    return [
        f"{' and '.join(found)} {'is' if len(found) == 1 else 'are'} set here, and requests "
        "lets them replace the context's ca.pem: docker-py fails with CERTIFICATE_VERIFY_FAILED.",
        "Fix: run docker-py without them (env -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE python ...),"
        f" or in code: client = {load}; client.api.trust_env = False",
    ]


def ensure_config_file(docker_config: StrPath | None = None) -> Path:
    """Create an empty ``config.json`` (``{}``, 0600) when there is none; returns its path.

    docker-py (7.2) looks for contexts next to the first ``config.json`` it
    finds: with ``DOCKER_CONFIG`` set but no ``config.json`` in it,
    ``from_context``/``from_env`` never see the contexts there.
    """
    config_dir = paths.docker_config_dir(docker_config)
    config = config_dir / "config.json"
    if not config.exists() and not config.is_symlink():
        try:
            _ensure_config_dir(config_dir)
            files.atomic_write(config, "{}\n", files.PRIVATE_FILE)
        except OSError as e:
            raise _unwritable(config_dir, e) from None
    return config


SHELLS = ("bash", "zsh", "fish", "powershell", "cmd")


def env_variables(info: ContextInfo) -> dict[str, str]:
    """What ``certkit env`` exports: the variables ``docker-machine env`` used to."""
    if not info.host.startswith("tcp://"):
        raise UsageError(
            f"Context {info.name!r} does not point at a tcp:// host ({info.host}); "
            "`certkit env` is for remote daemons over TLS."
        )
    missing = [f for f in TLS_FILES if not (info.tls_dir / f).exists()]
    if missing:
        raise UsageError(
            f"Context {info.name!r} has no {', '.join(missing)} in {info.tls_dir}; "
            "recreate it with `certkit client-context --force`."
        )
    return {
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_HOST": info.host,
        "DOCKER_CERT_PATH": str(info.tls_dir),
    }


def render_env(
    variables: Mapping[str, str],
    shell: str,
    command: str,
    *,
    unset: bool = False,
    notes: list[str] | None = None,
) -> str:
    """Shell code that sets (or unsets) ``variables``, then comments, like ``docker-machine env``.

    Comments come last on purpose: the unquoted ``eval $(certkit env NAME)`` joins the
    output into one line, where everything after the first ``#`` is ignored.
    """
    if shell not in SHELLS:
        raise UsageError(f"Unknown shell {shell!r}: use one of {', '.join(SHELLS)}.")
    lines = [
        _unset_line(shell, k) if unset else _set_line(shell, k, v) for k, v in variables.items()
    ]
    comment = "REM" if shell == "cmd" else "#"
    for note in notes or []:
        lines.append(f"{comment} {note}" if note else comment)
    lines.append(f"{comment} Run this command to configure your shell: ")
    lines.append(f"{comment} {_eval_hint(shell, command)}")
    return "\n".join(lines) + "\n"


def _set_line(shell: str, key: str, value: str) -> str:
    if shell == "fish":
        return f'set -gx {key} "{_escape(value, chr(92) + chr(34) + "$")}";'
    if shell == "powershell":
        return f'$Env:{key} = "{_escape(value, "`" + chr(34) + "$", "`")}"'
    if shell == "cmd":
        return f'SET "{key}={value}"'  # quoted: a path with & or ^ stays one value
    return f'export {key}="{_escape(value, chr(92) + chr(34) + "$`")}"'


def _unset_line(shell: str, key: str) -> str:
    return {
        "fish": f"set -e {key};",
        "powershell": f"Remove-Item Env:\\{key}",
        "cmd": f"SET {key}=",
    }.get(shell, f"unset {key}")


def _escape(value: str, specials: str, escape: str = "\\") -> str:
    return "".join(escape + c if c in specials else c for c in value)


def _eval_hint(shell: str, command: str) -> str:
    if shell == "fish":
        return f"eval ({command})"
    if shell == "powershell":
        return f"& {command} | Invoke-Expression"
    if shell == "cmd":
        return f"\t@FOR /f \"tokens=*\" %i IN ('{command}') DO @%i"
    # Quoted: unquoted $(...) would squeeze runs of spaces in DOCKER_CERT_PATH.
    return f'eval "$({command})"'


# ---------------------------------------------------------------- export / import

MAX_MEMBER = 4 * 1024 * 1024  # TLS files are a few KiB; anything bigger is not a context
MAX_ARCHIVE = 16 * 1024 * 1024


def export_context(name: str, docker_config: StrPath | None = None) -> bytes:
    """The tar ``docker context export NAME`` writes: meta.json, tls/, tls/docker/, files.

    Modes as the docker CLI sets them (meta.json 0644, tls dirs 0700, TLS
    files 0600); owner 0 and mtime 0 so the archive says nothing about this machine.
    """
    info = read_context(name, docker_config)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_file(tar, "meta.json", info.meta_path.read_bytes(), files.PUBLIC_FILE)
        present = [f for f in TLS_FILES if (info.tls_dir / f).is_file()]
        if present:
            _add_dir(tar, "tls")
            _add_dir(tar, f"tls/{ENDPOINT}")
            for fname in present:
                data = (info.tls_dir / fname).read_bytes()
                _add_file(tar, f"tls/{ENDPOINT}/{fname}", data, files.PRIVATE_FILE)
    return buf.getvalue()


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    member = tarfile.TarInfo(name)
    member.type = tarfile.DIRTYPE
    member.mode = files.PRIVATE_DIR
    tar.addfile(member)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    member.mode = mode
    tar.addfile(member, io.BytesIO(data))


@dataclass
class ContextArchive:
    """A context read from an export tar and checked: ready to be written."""

    name: str
    meta: dict[str, Any]
    tls: dict[str, bytes]


def read_archive(data: bytes, source: str = "the archive") -> ContextArchive:
    """Parse and check an export tar (or zip); UsageError (one sentence) for anything suspicious.

    Accepted: ``meta.json``, the directories ``tls/`` and ``tls/docker/``, and
    ``tls/docker/{ca,cert,key}.pem``, as regular files of at most 4 MiB.
    Refused: absolute paths, ``..``, links, devices, anything else.  The
    docker CLI ends its tar without the end-of-archive blocks (and without
    padding the last file); that is accepted, a truly truncated file is not.
    A zip with the same layout is read too, as ``docker context import`` does.
    """
    if not data:
        raise UsageError(f"{source} is empty: expected the tar of `docker context export`.")
    if len(data) > MAX_ARCHIVE:
        raise UsageError(f"{source} is {len(data)} bytes: too big to be a docker context export.")
    if data[:4] == b"PK\x03\x04":  # `docker context import` takes zip files too
        return _read_zip(data, source)
    padded = data + b"\0" * (-len(data) % 512) + b"\0" * 1024
    meta_raw: bytes | None = None
    tls: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(padded), mode="r:") as tar:
            for member in tar:
                kind = _check_member(member, source)
                if kind == "dir":
                    continue
                if member.offset_data + member.size > len(data):
                    raise UsageError(f"{source} is truncated inside {member.name!r}.")
                extracted = tar.extractfile(member)
                assert extracted is not None
                content = extracted.read()
                if kind == "meta":
                    meta_raw = content
                else:
                    tls[PurePosixPath(member.name).name] = content
    except tarfile.TarError as e:
        raise UsageError(f"{source} is not a docker context export (tar: {e}).") from None
    if meta_raw is None:
        raise UsageError(f"{source} has no meta.json: it is not a docker context export.")
    meta = _check_meta(meta_raw, source)
    return ContextArchive(str(meta.get("Name", "")), meta, tls)


def _read_zip(data: bytes, source: str) -> ContextArchive:
    """The zip variant of :func:`read_archive`: the same layout and the same refusals."""
    import stat
    import zipfile

    meta_raw: bytes | None = None
    tls: dict[str, bytes] = {}
    seen: set[str] = set()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16  # Unix mode, when a Unix zip wrote it
                if stat.S_ISLNK(mode):
                    kind = "link"
                elif info.is_dir():
                    kind = "dir"
                else:
                    kind = "file" if not mode or stat.S_ISREG(mode) else "other"
                found = _classify(info.filename.rstrip("/"), kind, info.file_size, source)
                if found == "dir":
                    continue
                if info.filename in seen:
                    raise UsageError(f"{source} holds {info.filename!r} twice; refusing it.")
                seen.add(info.filename)
                with zf.open(info) as f:  # read at most the limit: file_size may lie
                    content = f.read(MAX_MEMBER + 1)
                if len(content) > MAX_MEMBER:
                    raise UsageError(f"{source} holds {info.filename!r} of over 4 MiB.")
                if found == "meta":
                    meta_raw = content
                else:
                    tls[PurePosixPath(info.filename).name] = content
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
        raise UsageError(f"{source} is not a readable zip ({e}).") from None
    except RuntimeError:  # zipfile's "File is encrypted, password required"
        raise UsageError(f"{source} is an encrypted zip; export the context again.") from None
    if meta_raw is None:
        raise UsageError(f"{source} has no meta.json: it is not a docker context export.")
    meta = _check_meta(meta_raw, source)
    return ContextArchive(str(meta.get("Name", "")), meta, tls)


def _check_member(member: tarfile.TarInfo, source: str) -> str:
    """'meta', 'tls' or 'dir' for an allowed member; UsageError for anything else."""
    if member.issym() or member.islnk():
        kind = "link"
    elif member.isdir():
        kind = "dir"
    else:
        kind = "file" if member.isfile() else "other"
    return _classify(member.name, kind, member.size, source)


def _classify(name: str, kind: str, size: int, source: str) -> str:
    """'meta', 'tls' or 'dir' for an allowed entry of ``kind`` file|dir|link|other."""
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or "\\" in name:
        raise UsageError(f"{source} contains the unsafe path {name!r}; refusing to import it.")
    if kind == "link":
        raise UsageError(f"{source} contains a link ({name!r}); refusing to import it.")
    clean = "/".join(p for p in parts if p != ".")
    if kind == "dir":
        if clean in ("tls", f"tls/{ENDPOINT}"):
            return "dir"
        raise UsageError(f"{source} contains an unexpected directory {name!r}; refusing it.")
    if kind != "file":
        raise UsageError(f"{source} contains {name!r}, which is not a regular file; refusing it.")
    if size > MAX_MEMBER:
        raise UsageError(
            f"{source} holds {name!r} of {size} bytes (over 4 MiB): not a context file."
        )
    if clean == "meta.json":
        return "meta"
    if clean in {f"tls/{ENDPOINT}/{f}" for f in TLS_FILES}:
        return "tls"
    raise UsageError(
        f"{source} contains {name!r}: a context export holds only meta.json and "
        f"tls/{ENDPOINT}/{{ca,cert,key}}.pem; refusing to import it."
    )


def _check_meta(raw: bytes, source: str) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
        host = meta["Endpoints"][ENDPOINT]["Host"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{source} has a meta.json without a docker endpoint.") from None
    if not isinstance(meta, dict) or not isinstance(host, str):
        raise UsageError(f"{source} has a malformed meta.json.")
    return meta


def import_context(
    data: bytes,
    name: str | None = None,
    *,
    source: str = "the archive",
    docker_config: StrPath | None = None,
    force: bool = False,
) -> ContextInfo:
    """Write the context in export tar ``data`` as ``name`` (default: the name inside).

    Everything is checked before anything is written; the files get the
    docker CLI's modes whatever the tar says.
    """
    archive = read_archive(data, source)
    target = validate_context_name(name or archive.name)
    meta = dict(archive.meta)
    meta["Name"] = target
    config_dir = paths.docker_config_dir(docker_config)
    _store(target, meta, archive.tls, config_dir, force)
    return read_context(target, config_dir)
