"""``docker context export`` and ``import``: the tar (or zip) that moves a context.

The archive holds ``meta.json`` (0644), ``tls/`` and ``tls/docker/`` (0700)
and ``tls/docker/{ca,cert,key}.pem`` (0600), nothing else (docs/design.md,
"The docker CLI's context store").  Reading one is hardened the way docker/cli's
import is: every member is checked before anything is written, and anything that is not part of a
context (absolute paths, ``..``, links, devices, other names, oversized
files) is refused with one sentence.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from .. import files
from ..errors import UsageError
from ..files import StrPath
from ..untrusted import loads_json, refuse_controls
from .store import (
    ENDPOINT,
    TLS_FILES,
    ContextInfo,
    check_endpoint,
    read_context,
    save_context,
    validate_context_name,
)

if TYPE_CHECKING:  # tarfile: imported by export and import only, not by setup or env
    import tarfile

MAX_MEMBER = 4 * 1024 * 1024  # TLS files are a few KiB; anything bigger is not a context
MAX_ARCHIVE = 16 * 1024 * 1024


# ---------------------------------------------------------------- export


def export_context(name: str, docker_config: StrPath | None = None) -> bytes:
    """The tar ``docker context export NAME`` writes: meta.json, tls/, tls/docker/, files.

    Modes as the docker CLI sets them (meta.json 0644, tls dirs 0700, TLS
    files 0600); owner 0 and mtime 0 so the archive says nothing about this machine.
    """
    info = read_context(name, docker_config)
    try:
        return _export(info)
    except OSError as e:  # e.g. a link the kernel will not follow (protected_symlinks)
        raise UsageError(
            f"Cannot read the files of context {name!r} ({e.strerror or e}: {e.filename})."
        ) from None


def _export(info: ContextInfo) -> bytes:
    import tarfile

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
    import tarfile

    member = tarfile.TarInfo(name)
    member.type = tarfile.DIRTYPE
    member.mode = files.PRIVATE_DIR
    tar.addfile(member)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    member = tar.tarinfo(name)  # tarfile.TarInfo
    member.size = len(data)
    member.mode = mode
    tar.addfile(member, io.BytesIO(data))


# ---------------------------------------------------------------- import


@dataclass
class ContextArchive:
    """A context read from an export tar and checked: ready to be written."""

    name: str
    meta: dict[str, Any]
    tls: dict[str, bytes]


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
    return save_context(target, meta, archive.tls, docker_config, force=force)


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
        members = _zip_members(data, source)
    else:
        members = _tar_members(data, source)
    meta_raw = members.pop("meta.json", None)
    if meta_raw is None:
        raise UsageError(f"{source} has no meta.json: it is not a docker context export.")
    meta = _check_meta(meta_raw, source)
    missing = [f for f in TLS_FILES if f not in members]
    if missing:
        # Without them the docker CLI and docker-py speak plain HTTP to a Docker API.
        raise UsageError(
            f"{source} holds a context for {meta['Endpoints'][ENDPOINT]['Host']} without "
            f"{', '.join(missing)}: docker would reach it without TLS; certkit imports only "
            "mutual-TLS contexts."
        )
    return ContextArchive(str(meta.get("Name", "")), meta, members)


def _tar_members(data: bytes, source: str) -> dict[str, bytes]:
    """``{"meta.json": ..., "ca.pem": ...}`` from a checked tar."""
    import tarfile

    padded = data + b"\0" * (-len(data) % 512) + b"\0" * 1024
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(padded), mode="r:") as tar:
            for member in tar:
                if _check_member(member, source) == "dir":
                    continue
                if member.offset_data + member.size > len(data):
                    raise UsageError(f"{source} is truncated inside {member.name!r}.")
                extracted = tar.extractfile(member)
                assert extracted is not None
                _add_member(found, member.name, extracted.read(), source)
    except tarfile.TarError as e:
        raise UsageError(f"{source} is not a docker context export (tar: {e}).") from None
    return found


def _zip_members(data: bytes, source: str) -> dict[str, bytes]:
    """The zip variant of :func:`_tar_members`: the same layout and the same refusals."""
    import stat
    import zipfile

    found: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16  # Unix mode, when a Unix zip wrote it
                if stat.S_ISLNK(mode):
                    kind = "link"
                elif info.is_dir():
                    kind = "dir"
                else:
                    kind = "file" if not stat.S_IFMT(mode) or stat.S_ISREG(mode) else "other"
                if _classify(info.filename.rstrip("/"), kind, info.file_size, source) == "dir":
                    continue
                with zf.open(info) as f:  # read at most the limit: file_size may lie
                    content = f.read(MAX_MEMBER + 1)
                if len(content) > MAX_MEMBER:
                    raise UsageError(f"{source} holds {info.filename!r} of over 4 MiB.")
                _add_member(found, info.filename, content, source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
        raise UsageError(f"{source} is not a readable zip ({e}).") from None
    except RuntimeError:  # zipfile's "File is encrypted, password required"
        raise UsageError(f"{source} is an encrypted zip; export the context again.") from None
    return found


def _add_member(found: dict[str, bytes], name: str, content: bytes, source: str) -> None:
    """Keep a checked member under its file name; a second one of that name is refused.

    Tar keeps the last of two members of one name and ``./meta.json`` is
    ``meta.json``: a duplicate means two readers could see two contexts.
    """
    key = PurePosixPath(name).name
    if key in found:
        raise UsageError(f"{source} holds {key!r} twice ({name!r}); refusing to import it.")
    found[key] = content


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
        meta = loads_json(raw)
        host = meta["Endpoints"][ENDPOINT]["Host"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{source} has a meta.json without a docker endpoint.") from None
    if not isinstance(meta, dict) or not isinstance(host, str):
        raise UsageError(f"{source} has a malformed meta.json.")
    endpoint = meta["Endpoints"][ENDPOINT]
    if endpoint.get("SkipTLSVerify"):
        raise UsageError(
            f"{source} holds a context with SkipTLSVerify: true, which trusts any server; "
            "refusing to import it (export a context that verifies the daemon)."
        )
    name = str(meta.get("Name", ""))
    metadata = meta.get("Metadata")
    description = metadata.get("Description", "") if isinstance(metadata, dict) else ""
    refuse_controls(str(description), f"The description in {source},")
    endpoint["Host"] = check_endpoint(host, name)  # canonical: what `certkit env` renders
    return meta
