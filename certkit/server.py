"""Server certificates: issue one for a Docker host, hand it out or install it locally.

:func:`issue_server` is what ``certkit issue-server`` runs: it validates
every input and reads (and checks) the host's configuration *before*
issuing, so a refused install leaves neither files nor an inventory record
behind.  :func:`install_local` is the install step alone, for callers that
already hold the PEMs (renewal).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import certs, files, paths
from .daemon import (
    InstallOptions,
    InstallPlan,
    PortWaiter,
    Runner,
    apply_plan_locally,
    live_restore_on,
    plan_install,
    read_host_files,
    restart_docker,
)
from .errors import OperationError, UsageError
from .names import DOCKER_TLS_PORT, SubjectNames, common_name_for, parse_names
from .store import CAStore

if TYPE_CHECKING:
    from .ca import Issued

DEFAULT_DAYS = 825


@dataclass
class InstallOutcome:
    """What a local install did (or, in a dry run, would do)."""

    plan: InstallPlan
    live_restore: bool
    dry_run: bool
    restarted: bool = False

    def to_json(self) -> dict[str, Any]:
        data = self.plan.to_json()
        data.update(live_restore=self.live_restore, restarted=self.restarted)
        if self.dry_run:
            data["diff"] = self.plan.diff()
        return data


@dataclass
class ServerResult:
    """What ``issue-server`` did: the certificate, where its files went, what comes next."""

    host: str
    names: list[str]
    port: int
    dry_run: bool
    serial: str | None = None
    not_after: str | None = None
    fingerprint: str | None = None
    store_files: dict[str, str] = field(default_factory=dict)
    out_files: dict[str, str] = field(default_factory=dict)
    install: InstallOutcome | None = None

    @property
    def restart_needed(self) -> bool:
        return bool(
            self.install and self.install.plan.restart_needed and not self.install.restarted
        )

    @property
    def next_step(self) -> str:
        port = "" if self.port == DOCKER_TLS_PORT else f" --port {self.port}"
        return f"certkit client-context --host {self.host}{port}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "host": self.host,
            "names": self.names,
            "dry_run": self.dry_run,
            "serial": self.serial,
            "not_after": self.not_after,
            "fingerprint": self.fingerprint,
            "store_files": self.store_files,
            "out_files": self.out_files,
            "install": self.install.to_json() if self.install else None,
            "restart_needed": self.restart_needed,
            "port": self.port,
            "next": self.next_step,
        }


def server_names(host: str, sans: list[str]) -> tuple[str, SubjectNames]:
    """The primary name (HOST normalized) and every SAN: HOST first, then each ``--san``.

    Nothing is added silently: ``localhost`` or ``127.0.0.1`` only when asked.
    """
    primary = parse_names([host]).all()[0]
    return primary, parse_names([host, *sans])


def issue_into(
    result: ServerResult,
    store: CAStore,
    names: SubjectNames,
    days: int,
    key_type: certs.KeyType,
    recorded: dict[str, Any],
) -> Issued:
    """Issue the server certificate for ``result.host`` and note it in ``result``.

    The common name is the host (cut to its first label past 64 characters,
    the CN's limit; clients match the SAN, never the CN).
    """
    from .ca import issue

    primary = result.host
    cn = common_name_for(primary)
    issued = issue(store, "server", primary, cn, names, days, key_type, options=recorded)
    result.serial = issued.record.serial
    result.not_after = issued.record.not_after
    result.fingerprint = issued.record.fingerprint
    result.store_files = {"cert": str(issued.cert_path), "key": str(issued.key_path)}
    return issued


def install_local(
    system: paths.SystemPaths,
    options: InstallOptions,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    dry_run: bool = False,
    restart: bool = False,
    run: Runner | None = None,
    wait_port: PortWaiter | None = None,
) -> InstallOutcome:
    """Install the PEMs on this host (or under ``system.root``); restart dockerd when asked.

    Raises UsageError before writing anything when the host's configuration
    cannot take the install; OperationError (after rolling back) when Docker
    does not come back from ``restart``.
    """
    host_files = read_host_files(system)
    plan = plan_install(host_files, system, options, ca_pem, cert_pem, key_pem)
    outcome = InstallOutcome(plan, live_restore_on(host_files), dry_run)
    if dry_run:
        return outcome
    try:
        apply_plan_locally(plan)
    except PermissionError as e:
        raise OperationError(
            f"permission denied writing {e.filename}: run as root (sudo), or use --root DIR."
        ) from None
    if restart and plan.restart_needed:
        kwargs: dict[str, Any] = {}
        if run is not None:
            kwargs["run"] = run
        if wait_port is not None:
            kwargs["wait_port"] = wait_port
        restart_docker(plan, options.listen, options.port, **kwargs)
        outcome.restarted = True
    return outcome


def _check_install_args(install: bool, root: str | None, restart: bool) -> None:
    if restart and not install:
        raise UsageError("--restart restarts dockerd after --install: add --install.")
    if restart and root:
        raise UsageError("--restart restarts the real dockerd, so it cannot go with --root.")
    if install and not root and hasattr(os, "geteuid") and os.geteuid() != 0:
        raise UsageError(
            "--install writes /etc/docker and the docker unit: run as root (sudo), "
            "or use --root DIR to install under a sandbox directory."
        )


def _write_out(out: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> dict[str, str]:
    """Write the three files for copying to a host; the dir is private (it holds the key)."""
    try:
        d = files.ensure_dir(Path(out).expanduser().absolute(), files.PRIVATE_DIR)
    except OSError as e:
        raise UsageError(
            f"--out {out}: cannot use {e.filename} as a directory ({e.strerror}); "
            "choose another directory."
        ) from None
    written = files.atomic_write_many(
        files.tls_files(d, paths.SERVER_FILES, ca_pem, cert_pem, key_pem)
    )
    return dict(zip(("ca", "cert", "key"), map(str, written), strict=True))


def issue_server(
    store: CAStore,
    host: str,
    *,
    sans: list[str] | None = None,
    days: int = DEFAULT_DAYS,
    key_type: str = certs.DEFAULT_KEY_TYPE,
    out: str | None = None,
    install: bool = False,
    root: str | None = None,
    options: InstallOptions | None = None,
    restart: bool = False,
    dry_run: bool = False,
    run: Runner | None = None,
    wait_port: PortWaiter | None = None,
) -> ServerResult:
    """Issue a server certificate (EKU serverAuth) for ``host`` and every ``sans`` entry.

    The files always go to the store; with ``out`` also to that directory
    (``ca.pem``, ``server-cert.pem``, ``server-key.pem``); with ``install``
    into ``/etc/docker/certkit`` and daemon.json (under ``root`` when given).
    ``dry_run`` issues nothing and writes nothing: the result carries the
    plan and its diff.

    >>> r = issue_server(CAStore(), "docker1.example.com", install=True, root="/tmp/sb")
    >>> r.install.plan.written  # doctest: +SKIP
    ['/tmp/sb/etc/docker/certkit/ca.pem', ...]
    """
    opts = options or InstallOptions()
    primary, names = server_names(host, list(sans or []))
    certs.check_days(days)
    kt = certs.check_key_type(key_type)
    _check_install_args(install, root, restart)
    if out and Path(out).expanduser().exists() and not Path(out).expanduser().is_dir():
        raise UsageError(f"--out {out} is a file, not a directory: choose a directory.")
    store.require()
    system = paths.system_paths(root, opts.cert_dir)
    result = ServerResult(primary, names.all(), opts.port, dry_run)

    if install:
        # Check the host can take the install before a certificate exists: the real
        # trust bundle, placeholders for the certificate and key still to be made.
        trust = store.trust_bundle_pem()
        result.install = install_local(system, opts, trust, b"", b"", dry_run=True)
    if dry_run:
        return result

    recorded = {
        "sans": names.all(),
        "install": install,
        "root": str(system.root) if system.sandboxed else None,
        "out": str(Path(out).expanduser().absolute()) if out else None,
        **opts.to_json(),
    }
    if result.install is not None:
        recorded["method"] = result.install.plan.method
    from .ca import mark_installed

    issued = issue_into(result, store, names, days, kt, recorded)
    if out:
        result.out_files = _write_out(out, issued.ca_pem, issued.cert_pem, issued.key_pem)
    if install:
        result.install = install_local(
            system,
            opts,
            issued.ca_pem,
            issued.cert_pem,
            issued.key_pem,
            restart=restart,
            run=run,
            wait_port=wait_port,
        )
        mark_installed(store, issued.record.serial, list(result.install.plan.cert_paths.values()))
    if out:
        mark_installed(store, issued.record.serial, list(result.out_files.values()))
    return result
