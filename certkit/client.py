"""The Docker client side: a client certificate, and a docker context that uses it.

:func:`client_context` is what ``certkit client-context`` does: check the
input, issue a client certificate (EKU clientAuth) from a CA in the store,
write it with the CA's trust bundle as a docker context
(:mod:`certkit.dockercli`), optionally make that context current, and record
in the inventory where it went so renewal can rewrite it in place.
:func:`client_files` is the ``--client-only`` variant for clients that are
not the docker CLI: just ``ca.pem``, ``cert.pem`` and ``key.pem`` in a
directory.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ca as ca_ops
from . import certs, defaults, dockercli, files, names, paths
from .errors import OperationError, UsageError
from .origins import ClientOrigin
from .store import CAStore
from .untrusted import refuse_controls

StrPath = str | os.PathLike[str]


@dataclass
class ClientResult:
    """What was issued and where it was written."""

    name: str
    serial: str
    common_name: str
    key_type: str
    not_after: str
    ca: str
    host: str | None = None  # tcp://HOST:PORT, None for --client-only without a host
    context: dockercli.ContextInfo | None = None
    used: bool = False
    config_path: Path | None = None  # config.json, when --use changed it
    out_dir: Path | None = None  # --client-only
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    docker_py: list[str] = field(default_factory=list)  # advice when docker-py would fail here
    role: str | None = None  # --role, recorded in the inventory (certkit.revoke)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "serial": self.serial,
            "common_name": self.common_name,
            "key_type": self.key_type,
            "not_after": self.not_after,
            "ca": self.ca,
            "host": self.host,
            "context": self.context.to_json() if self.context else None,
            "used": self.used,
            "config_path": str(self.config_path) if self.config_path else None,
            "out_dir": str(self.out_dir) if self.out_dir else None,
            "files": self.files,
            "warnings": self.warnings,
            "docker_py": self.docker_py,
            "role": self.role,
        }


def _check_cn(cn: str | None, name: str) -> str:
    """``cn``, else the name; a name too long for a CN says so instead of naming --cn."""
    if cn is None:
        if len(name) > 64:
            raise UsageError(
                f"The name {name!r} is longer than the 64 characters a common name holds; "
                "choose a shorter name or give --cn."
            )
        return name
    cn = cn.strip()
    if not cn or len(cn) > 64:
        raise UsageError("The common name must be 1 to 64 characters (--cn).")
    return cn


def _endpoint(host: str, port: int) -> str:
    """``tcp://HOST:PORT``, checked by the parser every reader of contexts uses."""
    refuse_controls(host, "The host")  # format_host would strip a trailing newline
    endpoint = names.format_host(host, port)
    try:
        names.parse_endpoint(endpoint)  # e.g. an IPv6 zone: the docker CLI cannot parse it
    except UsageError as e:
        raise UsageError(f"{endpoint!r} is not an endpoint for a context: {e.message}") from None
    return endpoint


def client_context(
    name: str | None,
    host: str,
    port: int = names.DOCKER_TLS_PORT,
    *,
    cn: str | None = None,
    days: int = defaults.CLIENT_DAYS,
    key_type: str = defaults.DEFAULT_KEY_TYPE,
    ca: str = paths.DEFAULT_CA,
    description: str | None = None,
    docker_config: StrPath | None = None,
    use: bool = False,
    force: bool = False,
    not_after: dt.datetime | None = None,
) -> ClientResult:
    """Issue a client certificate and write it as docker context ``name`` for ``host:port``.

    ``name`` defaults to the first label of ``host``.  Nothing is issued or
    written when the input is bad or the context exists without ``force``.
    ``not_after`` (library only) overrides ``days``, e.g. to make an already
    expired certificate for tests.

    >>> r = client_context("prod", "docker1.example.com")  # doctest: +SKIP
    >>> r.context.host
    'tcp://docker1.example.com:2376'
    """
    endpoint = _endpoint(host, port)
    if name is None:
        name = dockercli.default_name_for(host)
    name = dockercli.validate_context_name(name)
    bare_host = endpoint[len("tcp://") : endpoint.rindex(":")].strip("[]")
    common_name = _check_cn(cn, name)
    kt = certs.check_key_type(key_type)
    if not_after is None:
        certs.check_days(days)
    config_dir = paths.docker_config_dir(docker_config)
    _check_context_target(name, config_dir, use, force)
    store = ca_ops.require_ca(CAStore(ca))
    text = dockercli.validate_description(
        description or f"certkit: {endpoint.removeprefix('tcp://')} (CA {ca})"
    )
    origin = ClientOrigin(
        days=days if not_after is None else None,
        context=name,
        host=bare_host,
        port=port,
        docker_config=str(config_dir),
        description=text,
    )
    # One writer of contexts at a time: two runs for the same name would each supersede
    # the other's record and leave none in use.  The loser is told, and issues nothing.
    with files.locked_dir(store.dir):
        if not force and dockercli.context_exists(name, config_dir):
            raise UsageError(
                f"A docker context named {name!r} was just created in {config_dir} by another "
                "certkit run; nothing was issued (pass --force to replace it)."
            )
        issued = ca_ops.issue(
            store, "client", name, common_name, None, days, kt, not_after=not_after, origin=origin
        )
        info = dockercli.write_context(
            name,
            bare_host,
            port,
            issued.ca_pem,
            issued.cert_pem,
            issued.key_pem,
            description=text,
            docker_config=config_dir,
            force=True,  # checked above, before issuing
        )
        _installed_replacing(store, issued.record.serial, name, str(config_dir), str(info.tls_dir))
    result = _result(issued, name, ca, endpoint)
    result.warnings += [issued.capped] if issued.capped else []
    result.context = info
    result.files = {f: str(info.tls_dir / f) for f in dockercli.TLS_FILES}
    if use:
        result.config_path = dockercli.set_current_context(name, config_dir)
        result.used = True
        for warning in (
            dockercli.docker_host_override_warning(),
            dockercli.docker_context_override_warning(name),
        ):
            if warning:
                result.warnings.append(warning)
    dockercli.ensure_config_file(config_dir)  # so docker-py finds the context, see there
    result.docker_py = dockercli.docker_py_advice(name)
    return result


def _check_context_target(name: str, config_dir: Path, use: bool, force: bool) -> None:
    """Everything about where the context goes, checked before a certificate is issued."""
    dockercli.check_writable(config_dir)
    dockercli.check_config_dir(config_dir)
    if dockercli.context_exists(name, config_dir) and not force:
        raise UsageError(
            f"A docker context named {name!r} already exists in {config_dir}; "
            "pass --force to replace it (a new certificate is issued), or choose another name."
        )
    if use:  # an unreadable or invalid config.json must cost no certificate
        dockercli.check_current_context(name, config_dir)
        config = config_dir / "config.json"
        if config.is_symlink() and not config.exists():
            raise UsageError(f"{config} is a symbolic link to a missing file: fix or remove it.")


def client_files(
    name: str | None,
    out: StrPath,
    host: str | None = None,
    port: int = names.DOCKER_TLS_PORT,
    *,
    cn: str | None = None,
    days: int = defaults.CLIENT_DAYS,
    key_type: str = defaults.DEFAULT_KEY_TYPE,
    ca: str = paths.DEFAULT_CA,
    force: bool = False,
    not_after: dt.datetime | None = None,
) -> ClientResult:
    """Issue a client certificate into ``out`` as ``ca.pem``, ``cert.pem``, ``key.pem`` only.

    For clients that are not the docker CLI (curl, docker-py with explicit
    paths, ``DOCKER_CERT_PATH``).  ``out`` is created 0700, ``key.pem`` is
    0600; existing files there are replaced only with ``force``.
    """
    if name is None and not host:
        raise UsageError("Give a NAME or --host for the client certificate.")
    endpoint = _endpoint(host, port) if host is not None else None
    if name is None:
        name = dockercli.default_name_for(str(host))
    name = dockercli.validate_context_name(name)
    common_name = _check_cn(cn, name)
    kt = certs.check_key_type(key_type)
    if not_after is None:
        certs.check_days(days)
    out_dir = files.check_output_dir(out, paths.CLIENT_FILES, force=force)
    store = ca_ops.require_ca(CAStore(ca))
    origin = ClientOrigin(
        days=days if not_after is None else None, out=str(out_dir), endpoint=endpoint
    )
    req = ca_ops.LeafRequest(
        "client", name, common_name, None, days, kt, not_after=not_after, origin=origin,
        installed=[str(out_dir)],
    )  # fmt: skip
    try:  # files first: the --out files and the store's copies, then the record
        (issued,) = ca_ops.issue_many(store, [req], outputs=_out_files(out_dir))
    except OSError as e:
        raise OperationError(
            f"Writing {e.filename or 'the certificate files'} failed ({e.strerror}), so no "
            "certificate was recorded: fix that and run the command again with --force."
        ) from None
    result = _result(issued, name, ca, endpoint)
    result.warnings += [issued.capped] if issued.capped else []
    result.out_dir = out_dir
    result.files = {f: str(out_dir / f) for f in dockercli.TLS_FILES}
    return result


def _out_files(out_dir: Path) -> ca_ops.Outputs:
    """The ``--client-only --out`` files, for :func:`certkit.ca.issue_many` to write in one
    durable batch with the store's copies, before the record commits."""

    def outputs(issued: list[ca_ops.Issued]) -> list[tuple[StrPath, bytes | str, int]]:
        # Made (0700) or checked as write_output_dir does; temp files a killed run left go.
        files.make_output_subdirs(out_dir, [""], paths.CLIENT_FILES)
        files.ensure_dir(out_dir)  # an existing --out is tightened to 0700, as before
        (one,) = issued
        return files.tls_files(out_dir, paths.CLIENT_FILES, one.ca_pem, one.cert_pem, one.key_pem)

    return outputs


def _installed_replacing(
    store: CAStore, serial: str, name: str, config_dir: str, tls_dir: str
) -> None:
    """Record where ``serial`` went; the certificate it replaced there is superseded."""
    with store.transaction() as inv:
        for rec in inv.find("client", name, active=True):
            origin = rec.leaf_origin
            same_store = isinstance(origin, ClientOrigin) and origin.docker_config == config_dir
            if rec.serial != serial and same_store:
                rec.superseded_by = serial
        new = inv.get(serial)
        if new is not None:
            new.installed = sorted({*new.installed, tls_dir})


def _result(issued: ca_ops.Issued, name: str, ca: str, endpoint: str | None) -> ClientResult:
    rec = issued.record
    return ClientResult(
        name=name,
        serial=rec.serial,
        common_name=rec.subject,
        key_type=rec.key_type,
        not_after=rec.not_after,
        ca=ca,
        host=endpoint,
    )
