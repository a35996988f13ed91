"""The one writer of what the inventory says about a server certificate's install.

The rule (what ``status``, the metrics, renewal and rotation rely on): a
record says a certificate is installed, and supersedes the one before it at
that place, only once the host has it: dockerd serves it (with a restart), or
its files are in place (without).  Until then the new record is *installing*;
an attempt that fails or is rolled back leaves the inventory as it was, with
the new certificate recorded as *issued, not installed*: never in use, never
watched, never superseding and never renewed.  Both are kept in
``superseded_by`` (:data:`~certkit.records.INSTALLING`,
:data:`~certkit.records.NOT_INSTALLED`), which already takes a record out of
use everywhere.

Each outcome is one transaction: the certificate is issued *installing*
(:class:`~certkit.ca.LeafRequest`'s ``superseded_by``, in the issuance's own
transaction), then :func:`installed` or :func:`failed`.  A run killed in
between leaves an *installing* record, which
the next run that installs settles (:func:`settle`): the host holds its
certificate, so the install finished (recorded now), or it does not (not
installed).  The firewall's part of the record changes through
:func:`record_firewall` alone.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from .errors import CertkitError
from .install_options import InstallOptions
from .origins import ServerOrigin, with_trust
from .records import INSTALLING, NOT_INSTALLED
from .store import CAStore, Inventory

if TYPE_CHECKING:
    from .host.target import Target
    from .records import Record


def installed(
    store: CAStore,
    serial: str,
    placed: list[str],
    *,
    options: InstallOptions | None = None,
    trust: list[str] | None = None,
    replaces: str | None = None,
) -> None:
    """The host has certificate ``serial`` at ``placed``: record it (and, when given, how
    it was installed and the CAs installed beside it), in use now.

    Every other server certificate recorded at one of those paths is superseded
    (one certificate lives there), and so is ``replaces`` (the one it renews).
    """
    with store.transaction() as inv:
        rec = inv.get(serial)
        if rec is None:
            return
        if rec.superseded_by in (INSTALLING, NOT_INSTALLED):
            rec.superseded_by = None
        rec.installed = sorted({*rec.installed, *placed})
        origin = rec.leaf_origin
        if trust is not None:
            origin = with_trust(origin, trust)
        if options is not None and isinstance(origin, ServerOrigin):
            origin = replace(origin, install=options)
        rec.origin = origin
        _supersede(inv, serial, placed, replaces)


def adopted(store: CAStore, serial: str, placed: list[str]) -> None:
    """The host was seen serving ``serial`` (a fleet run that found its certificate good):
    a record a killed or failed run left out of use (installing, not installed) is in use."""
    rec = store.inventory().get(serial)
    if (
        rec is not None
        and rec.kind == "server"
        and rec.superseded_by in (INSTALLING, NOT_INSTALLED)
    ):
        installed(store, serial, placed)


def failed(
    store: CAStore,
    serial: str,
    error: BaseException | None = None,
    via: Target | None = None,
    *,
    restart: bool = False,
) -> None:
    """The install of ``serial`` failed or was rolled back: issued, not installed.

    An ``error`` that leaves the host's state unknown (its script died midway, or could not
    put every file back) is settled from what the host holds now (:func:`settle`, read
    through ``via`` when it is that host; with ``restart``, installed only if dockerd serves
    it, where certkit reaches its port); a host that cannot be read now keeps the record
    *installing* for the next run.
    """
    if getattr(error, "host_state_unknown", False):
        rec = store.inventory().get(serial)
        if rec is not None and rec.superseded_by == INSTALLING:
            _settle_one(store, rec, via, restart)
        return
    with store.transaction() as inv:  # a record in use (a --bundle-only re-install) stays so
        rec = inv.get(serial)
        if rec is not None and rec.superseded_by == INSTALLING:
            rec.superseded_by = NOT_INSTALLED


def _supersede(inv: Inventory, serial: str, placed: list[str], replaces: str | None) -> None:
    for path in sorted(set(placed)):  # the inventory's index by install path
        for rec in inv.installed_at(path):
            if rec.kind == "server" and rec.serial != serial and not rec.superseded_by:
                rec.superseded_by = serial
    old = inv.get(replaces) if replaces else None
    if old is not None and old.superseded_by is None:
        old.superseded_by = serial


def record_firewall(
    store: CAStore, serial: str, allow_from: tuple[str, ...], added: tuple[str, ...]
) -> None:
    """Record on ``serial`` the sources asked for and those whose rule certkit added."""
    with store.transaction() as inv:
        rec = inv.get(serial)
        origin = rec.leaf_origin if rec is not None else None
        if rec is None or not isinstance(origin, ServerOrigin) or origin.install is None:
            return
        now = replace(origin.install, allow_from=allow_from, firewall_added=added)
        rec.origin = replace(origin, install=now)


def settle(store: CAStore, name: str | None = None, via: Target | None = None) -> list[str]:
    """Finish or undo the installs a killed run left *installing* (of server ``name``, or
    all); the serials settled.  A host that cannot be reached now is left for later.  A
    record of the host ``via`` reaches is read through it (no second connection)."""
    if not store.exists():
        return []
    pending = [r for r in store.inventory().find("server", name) if r.superseded_by == INSTALLING]
    return [rec.serial for rec in pending if _settle_one(store, rec, via)]


def _settle_one(
    store: CAStore, rec: Record, via: Target | None = None, restart: bool = False
) -> bool:
    """Record ``rec`` installed or not installed from what its host holds; False when the
    host cannot be read now (it stays *installing*)."""
    try:
        has_it, placed = _host_has(store, rec, via)
        if has_it and restart:
            has_it = _serves(store, via or open_target_of(rec), rec)
    except CertkitError:
        return False
    if has_it:
        installed(store, rec.serial, placed, replaces=rec.leaf_origin.renewed_from)
    else:
        failed(store, rec.serial)
    return True


def _host_has(store: CAStore, rec: Record, via: Target | None = None) -> tuple[bool, list[str]]:
    """Whether the host ``rec`` was being installed on holds its certificate, and where.

    It does when the certificate its daemon.json names (what dockerd serves once it
    starts) is ``rec``'s: certkit's certificate file, or its transitional ``next-`` name
    (a pair swap stopped between its two daemon.json switches).  New files that
    daemon.json does not name yet are not installed.
    """
    from .host.daemonjson import config_or_empty
    from .host.plan import NEXT_PREFIX
    from .targets import open_target

    origin = rec.leaf_origin
    assert isinstance(origin, ServerOrigin)
    pair = store.issued_pair(rec.serial)
    if origin.install is None or pair is None:
        return False, []
    target = via
    if via is None or via.ref != origin.target or not _same_dir(via, origin.install.cert_dir):
        target = open_target(origin.target, origin.install.cert_dir)
    assert target is not None
    paths = {k: str(v) for k, v in target.system.cert_files.items()}
    found = target.read_files()
    named = config_or_empty(found.daemon_json).get("tlscert")
    cert = PurePosixPath(paths["cert"])
    if named == str(cert):
        on_host = found.cert_files.get(str(cert))
    elif named == str(cert.with_name(NEXT_PREFIX + cert.name)):
        on_host = _read_one(target, PurePosixPath(named))
    else:
        return False, []
    return on_host == pair[0], [target.where(p) for p in paths.values()]


def open_target_of(rec: Record) -> Target:
    """The target ``rec`` was installed on, reopened from its record."""
    from .targets import open_target

    origin = rec.leaf_origin
    assert isinstance(origin, ServerOrigin) and origin.install is not None
    target: Target = open_target(origin.target, origin.install.cert_dir)
    return target


def _serves(store: CAStore, target: Target, rec: Record) -> bool:
    """Whether dockerd serves ``rec`` now, where certkit reaches its TLS port; True when it
    cannot tell (no TCP path, or no TLS session: dockerd down), the files then decide."""
    from .host import engine

    origin = rec.leaf_origin
    assert isinstance(origin, ServerOrigin) and origin.install is not None
    how = origin.install
    address = engine.probe_address(how.listen, getattr(target, "probe_host", lambda: None)())
    if address is None or not engine.tcp_reaches(address, how.port, 2.0):
        return True
    served, _ = engine.served_serial(address, how.port, store.trust_bundle_pem(), None, 2.0)
    return served is None or served == rec.serial


def _same_dir(target: Target, cert_dir: str | None) -> bool:
    """``target`` installs into ``cert_dir`` (None: the default one)."""
    return target.system.cert_dir_override == (PurePosixPath(cert_dir) if cert_dir else None)


def _read_one(target: Target, path: PurePosixPath) -> bytes | None:
    """One file's bytes on ``target`` (None: absent), with the engine's read script."""
    from .host.scripts import parse_dump, read_script

    found = parse_dump(target.run_script(read_script([path], [])))
    return found[path].data if path in found else None
