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
from typing import TYPE_CHECKING

from .errors import CertkitError
from .install_options import InstallOptions
from .origins import ServerOrigin, with_trust
from .records import INSTALLING, NOT_INSTALLED
from .store import CAStore, Inventory

if TYPE_CHECKING:
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


def failed(store: CAStore, serial: str, error: BaseException | None = None) -> None:
    """The install of ``serial`` failed or was rolled back: issued, not installed.

    An ``error`` that leaves the host's state unknown (its script died midway) keeps the
    record *installing*: :func:`settle` decides from the host on the next run.
    """
    if getattr(error, "host_state_unknown", False):
        return
    with store.transaction() as inv:
        rec = inv.get(serial)
        if rec is not None and rec.superseded_by in (None, INSTALLING):
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


def settle(store: CAStore, name: str | None = None) -> list[str]:
    """Finish or undo the installs a killed run left *installing* (of server ``name``, or
    all); the serials settled.  A host that cannot be reached now is left for later."""
    if not store.exists():
        return []
    pending = [r for r in store.inventory().find("server", name) if r.superseded_by == INSTALLING]
    done = []
    for rec in pending:
        try:
            has_it, placed = _host_has(store, rec)
        except CertkitError:
            continue
        if has_it:
            origin = rec.leaf_origin
            installed(store, rec.serial, placed, replaces=origin.renewed_from)
        else:
            failed(store, rec.serial)
        done.append(rec.serial)
    return done


def _host_has(store: CAStore, rec: Record) -> tuple[bool, list[str]]:
    """Whether the host ``rec`` was being installed on holds its certificate, and where."""
    from .targets import open_target

    origin = rec.leaf_origin
    assert isinstance(origin, ServerOrigin)
    if origin.install is None:
        return False, []
    target = open_target(origin.target, origin.install.cert_dir)
    paths = {k: str(v) for k, v in target.system.cert_files.items()}
    on_host = target.read_files().cert_files.get(paths["cert"])
    pair = store.issued_pair(rec.serial)
    if pair is None:
        return False, []
    return on_host == pair[0], [target.where(p) for p in paths.values()]
