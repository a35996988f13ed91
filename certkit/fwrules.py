"""``certkit firewall``: the rules certkit added to an installed server's host firewall.

The host is reached the way renewal reaches it (the record's target, reopened
through :mod:`certkit.targets`: this machine, a ``--root`` sandbox, SSH,
Ansible), its firewall read with the install's own probe
(:mod:`certkit.host.firewall`).  certkit's rules are ufw's commented
``certkit`` and firewalld's rich rules for the sources the record says
certkit added; nothing else is shown as certkit's or ever removed.
:func:`remove_rules_of` removes them and records that the server no longer
asks for any source, so a later renewal does not add them back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import placement, targets
from .errors import UsageError
from .host.firewall import (
    FirewallPlan,
    FirewallState,
    certkit_rules,
    remove_rules,
)
from .origins import ServerOrigin
from .renew import ServerInstall, find_active, server_setup
from .store import CAStore, Record

if TYPE_CHECKING:
    from .host.target import Target


@dataclass
class FirewallReport:
    """certkit's rules for one server: what the host's firewall holds, what was removed."""

    name: str
    host: str  # where the firewall was read ("this machine" or the SSH target)
    manager: str | None  # None: not checked (a --root sandbox, or not root there)
    zone: str | None
    port: int
    recorded: list[str]  # the sources the record asks for (--allow-from)
    rules: list[str]  # the sources certkit's rules on the host allow
    commands: list[str] = field(default_factory=list)  # how to remove them (or what removed them)
    removed: bool = False
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, **self.__dict__}


@dataclass
class _Found:
    record: Record
    report: FirewallReport
    target: Target
    plan: FirewallPlan  # removes certkit's rules


def _read(store: CAStore, name: str, srv: ServerInstall, doing: str = "show") -> _Found:
    """The server's record and its report, read from the host (and what removes the rules);
    ``doing`` names the command for its errors (``show``, ``remove``)."""
    record = find_active(store, "server", name)
    origin = record.leaf_origin
    assert isinstance(origin, ServerOrigin)
    reach = srv.reach
    if origin.install is None and reach.ssh is None and reach.root is None:
        raise UsageError(
            f"{name} was not installed by certkit, so it has no firewall rules of certkit's; "
            "give --ssh [USER@]HOST to read a host anyway."
        )
    ref = targets.from_reach(reach, origin.target)
    here = ref == targets.LocalRef()  # this machine itself, not a sandbox
    if here and hasattr(os, "geteuid") and os.geteuid() != 0:
        # Before the install's own check (server_setup), whose sentence is about --install.
        raise UsageError(
            f"{'changing' if doing == 'remove' else 'reading'} this machine's firewall needs "
            f"root: run certkit firewall {doing} as root (with sudo)."
        )
    setup = server_setup(record, replace(srv, install=True))
    assert setup.target is not None
    state = setup.target.read_files().firewall
    options = setup.options
    where = targets.describe(setup.target.ref)
    rules = certkit_rules(state, options.port, options.firewall_added) if state else []
    plan = FirewallPlan(state.manager if state else "none", options.port)
    plan.drop = rules
    report = FirewallReport(
        name=record.name,
        host=where,
        manager=state.manager if state else None,
        zone=state.zone if isinstance(state, FirewallState) else None,
        port=options.port,
        recorded=list(options.allow_from),
        rules=[r.source for r in rules],
        commands=plan.commands(),
    )
    return _Found(record, report, setup.target, plan)


def show_rules(store: CAStore, name: str, srv: ServerInstall | None = None) -> FirewallReport:
    """certkit's rules for server ``name`` on its host, with the commands that remove them."""
    return _read(store, name, srv or ServerInstall()).report


def remove_rules_of(
    store: CAStore, name: str, srv: ServerInstall | None = None, *, dry_run: bool = False
) -> FirewallReport:
    """Remove certkit's rules for server ``name`` from its host's firewall, and record that it
    asks for no source any more (renewal then leaves the firewall alone)."""
    found = _read(store, name, srv or ServerInstall(), "remove")
    report, plan = found.report, found.plan
    report.dry_run = dry_run
    if dry_run:
        return report
    if plan.drop:
        remove_rules(plan.manager, plan.port, plan.drop, found.target.run_script)
    placement.record_firewall(store, found.record.serial, (), ())
    report.removed = bool(plan.drop)
    return report
