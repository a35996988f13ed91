"""Server certificates: issue one for a Docker host, hand it out or install it on the host.

:func:`issue_server` is the one pipeline behind ``certkit issue-server`` (on
this machine or over SSH), renewal and the fleet: it validates every input
and reads (and checks) the host's configuration through its
:class:`~certkit.host.target.Target` *before* issuing, so a refused install
leaves neither files nor an inventory record behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import certs, defaults, files, paths, placement
from .ca import LeafRequest, issue_many, require_ca
from .errors import CertkitError
from .install_options import InstallOptions
from .nameclaims import check_names_free
from .names import DOCKER_TLS_PORT, SubjectNames, common_name_for, parse_names
from .origins import ServerOrigin
from .records import INSTALLING
from .store import CAStore
from .targets import LocalRef

if TYPE_CHECKING:  # the install machinery is imported only when there is a target
    from .host.hostfiles import HostFiles
    from .host.plan import InstallPlan
    from .host.target import InstallOutcome, Target


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
    notes: list[str] = field(default_factory=list)

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
            "notes": self.notes,
        }


def server_names(host: str, sans: list[str]) -> tuple[str, SubjectNames]:
    """The primary name (HOST normalized) and every SAN: HOST first, then each ``--san``.

    Nothing is added silently: ``localhost`` or ``127.0.0.1`` only when asked.
    """
    primary = parse_names([host]).all()[0]
    return primary, parse_names([host, *sans])


def check_out_dir(out: str, *, force: bool = False) -> Path:
    """The ``--out`` directory, absolute, checked (see :func:`files.check_output_dir`)."""
    return files.check_output_dir(out, paths.SERVER_FILES, force=force)


def write_out(
    out: Path, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, *, force: bool = False
) -> dict[str, str]:
    """Write the three files for copying to a host; the dir is private (it holds the key)."""
    items = files.tls_items(paths.SERVER_FILES, ca_pem, cert_pem, key_pem)
    written = files.write_output_dir(out, items, force=force)
    return dict(zip(("ca", "cert", "key"), map(str, written), strict=True))


def issue_server(
    store: CAStore,
    host: str,
    target: Target | None = None,
    *,
    sans: list[str] | None = None,
    days: int = defaults.SERVER_DAYS,
    key_type: str = defaults.DEFAULT_KEY_TYPE,
    out: str | None = None,
    options: InstallOptions | None = None,
    restart: bool = False,
    dry_run: bool = False,
    force: bool = False,
    names_moved: bool = False,
) -> ServerResult:
    """Issue a server certificate (EKU serverAuth) for ``host`` and every ``sans`` entry.

    The files always go to the store; with ``out`` also to that directory
    (``ca.pem``, ``server-cert.pem``, ``server-key.pem``); with a ``target``
    they are installed on that host (``/etc/docker/certkit`` and daemon.json),
    and dockerd is restarted when ``restart``.  Files in ``out`` are replaced
    only with ``force``.  A name held by another host's active server certificate is
    refused unless ``names_moved`` (:mod:`certkit.nameclaims`).  ``dry_run`` issues nothing and
    writes nothing: the result carries the plan and its diff.

    >>> from certkit.host.local import LocalTarget
    >>> from certkit.paths import system_paths
    >>> sandbox = LocalTarget(system_paths("/tmp/sb"))
    >>> r = issue_server(CAStore(), "docker1.example.com", sandbox)  # doctest: +SKIP
    >>> r.install.plan.written  # doctest: +SKIP
    ['/tmp/sb/etc/docker/certkit/ca.pem', ...]
    """
    opts = options or InstallOptions()
    primary, names = server_names(host, list(sans or []))
    certs.check_days(days)
    kt = certs.check_key_type(key_type)
    if target is not None:
        _check_target(target, restart, dry_run)
    out_dir = check_out_dir(out, force=force) if out else None
    require_ca(store)
    check_names_free(store, primary, names.all(), moved=names_moved)
    if target is not None and not dry_run:  # what a killed run left half-recorded, first
        placement.settle(store, primary, target)
    result = ServerResult(primary, names.all(), opts.port, dry_run)
    host_files = None
    if target is not None:
        opts, host_files = _trial_install(store, primary, target, opts, result, dry_run)
    if dry_run:
        return result

    origin = ServerOrigin(
        sans=tuple(names.all()),
        days=days,
        out=str(out_dir) if out_dir else None,
        install=installed_options(opts, result.install.plan) if result.install else None,
        target=target.ref if target is not None else LocalRef(),
    )
    # A certificate to install is not in use until the host has it (certkit.placement).
    pending = INSTALLING if target is not None else None
    req = LeafRequest("server", primary, common_name_for(primary), names, days, kt,
                      origin=origin, superseded_by=pending)  # fmt: skip
    issued = issue_many(store, [req])[0]
    result.serial = issued.record.serial
    result.not_after = issued.record.not_after
    result.fingerprint = issued.record.fingerprint
    result.notes += [issued.capped] if issued.capped else []
    result.store_files = {"cert": str(issued.cert_path), "key": str(issued.key_path)}
    placed: list[str] = []
    if out_dir is not None:
        result.out_files = write_out(
            out_dir, issued.ca_pem, issued.cert_pem, issued.key_pem, force=force
        )
        placed += result.out_files.values()
    if target is None or host_files is None:
        if placed:
            placement.installed(store, issued.record.serial, placed)
        return result
    pems = (issued.ca_pem, issued.cert_pem, issued.key_pem)
    _install_and_record(store, issued.record.serial, target, host_files, opts, pems, placed,
                        restart, result)  # fmt: skip
    return result


def _check_target(target: Target, restart: bool, dry_run: bool) -> None:
    """What ``target`` refuses before anything is issued; a dry run on this machine goes on
    as any user (it writes nothing)."""
    from .host.local import LocalTarget

    if isinstance(target, LocalTarget):  # only this machine refuses a user who is not root
        target.check(restart=restart, dry_run=dry_run)
    else:
        target.check(restart=restart)


def _install_and_record(
    store: CAStore,
    serial: str,
    target: Target,
    host_files: HostFiles,
    opts: InstallOptions,
    pems: tuple[bytes, bytes, bytes],
    placed: list[str],
    restart: bool,
    result: ServerResult,
) -> None:
    """Install ``serial`` on ``target``, then record the outcome in one transaction: in use
    where it was placed, or (the host left as it was) not installed."""
    from .host.target import install

    try:
        result.install = install(target, host_files, opts, pems, restart=restart)
    except CertkitError as e:
        placement.failed(store, serial, e, target, restart=restart)
        raise
    placed = [*placed, *(target.where(p) for p in result.install.plan.cert_paths.values())]
    # A dropped source whose rule would not go stays recorded (see FirewallPlan.recorded).
    how = installed_options(opts, result.install.plan)
    placement.installed(store, serial, placed, options=how)


def _trial_install(
    store: CAStore,
    primary: str,
    target: Target,
    opts: InstallOptions,
    result: ServerResult,
    dry_run: bool = False,
) -> tuple[InstallOptions, HostFiles]:
    """Check the host can take the install before a certificate exists.

    The plan is made with the real trust bundle and placeholders for the
    certificate and key still to be made; it becomes ``result.install``.  A
    ``dry_run`` plans from what its user can read, and says what it could not.
    """
    from .host.target import install

    opts = with_recorded_rules(store, primary, target, opts)
    host_files = target.read_for_dry_run() if dry_run else target.read_files()
    if host_files.unreadable:
        result.notes.append(
            f"this user could not read {', '.join(host_files.unreadable)}: the plan below "
            "counts them as absent; the install itself "
            "(as root) plans from what root reads"
        )
    pems = (store.trust_bundle_pem(), b"", b"")
    result.install = install(target, host_files, opts, pems, dry_run=True)
    return opts, host_files


def with_recorded_rules(
    store: CAStore, name: str, target: Target, opts: InstallOptions
) -> InstallOptions:
    """``opts`` knowing the firewall rules certkit added for the server ``name`` installed
    on the same host before (so that a shorter ``--allow-from`` removes the dropped ones)."""
    if not opts.allow_from or opts.firewall_added:
        return opts
    found = store.inventory().newest_active("server", name).get(("server", name))
    origin = found.leaf_origin if found is not None else None
    if not isinstance(origin, ServerOrigin) or origin.install is None:
        return opts
    if origin.target != target.ref:
        return opts
    return replace(opts, firewall_added=origin.install.firewall_added)


def installed_options(opts: InstallOptions, plan: InstallPlan) -> InstallOptions:
    """``opts`` as recorded after installing ``plan``: with the sources whose firewall rule
    certkit added (kept as they were when the firewall was left alone)."""
    fw = plan.firewall
    return opts if fw is None else replace(opts, firewall_added=fw.recorded())
