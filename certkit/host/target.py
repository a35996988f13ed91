"""One way to install on any Docker host: the :class:`Target` protocol and :func:`install`.

A target is how certkit reaches a host: :class:`~certkit.host.local.LocalTarget`
(this machine, or a sandbox root), :class:`~certkit.host.remote.SSHTarget`
(a host over SSH) and :class:`~certkit.fleet.target.AnsibleTarget`, each a
kind in the registry (:mod:`certkit.targets`) that records and reopens it.
Each reads the host's files and writes a plan; everything between (what to
change, the diff, the backup) is the pure :func:`~certkit.host.plan.plan_install`,
so every target installs the same way.  A new way of reaching hosts implements
these few members and registers its kind; nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .. import targets
from ..install_options import InstallOptions
from ..paths import SystemPaths
from .hostfiles import HostFiles
from .plan import InstallPlan, live_restore_on, plan_install


class Target(Protocol):
    """A Docker host that certkit can install on."""

    @property
    def system(self) -> SystemPaths:
        """Where daemon.json, the docker unit and the certificate files are on the host."""
        ...

    @property
    def ref(self) -> Any:
        """What to record so renewal reaches this host again: a reference of its kind
        (:mod:`certkit.targets`), reopened by :func:`certkit.targets.open_target`."""
        ...

    def check(self, *, restart: bool) -> None:
        """Raise UsageError for what this target cannot do, before anything is issued."""
        ...

    def read_files(self) -> HostFiles:
        """The host's daemon.json, docker units, drop-ins and certificate files."""
        ...

    def read_for_dry_run(self) -> HostFiles:
        """:meth:`read_files` for a dry run: what the user cannot read is listed in
        ``unreadable``, not fatal."""
        ...

    def apply(self, plan: InstallPlan, *, restart: bool) -> bool:
        """Write the plan; restart dockerd when ``restart`` (rolling back if it fails).

        Returns True when dockerd was restarted.
        """
        ...

    def where(self, path: str) -> str:
        """How a path on the host is recorded in the inventory."""
        ...

    def run_script(self, script: str) -> list[str]:
        """Run ``script`` with sh on the host (as root); its output lines (OperationError with
        the script's own ``CERTKIT-ERROR`` sentence when it fails)."""
        ...


@dataclass
class InstallOutcome:
    """What an install did (or, in a dry run, would do)."""

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


def install(
    target: Target,
    host_files: HostFiles,
    options: InstallOptions,
    pems: tuple[bytes, bytes, bytes],
    *,
    dry_run: bool = False,
    restart: bool = False,
) -> InstallOutcome:
    """Plan the install of ``pems`` (ca, cert, key) against ``host_files``; unless
    ``dry_run``, write it on ``target`` (and restart dockerd when asked and needed)."""
    plan = plan_install(host_files, target.system, options, *pems)
    outcome = InstallOutcome(plan, live_restore_on(host_files), dry_run)
    if not dry_run:
        outcome.restarted = target.apply(plan, restart=restart and plan.restart_needed)
    return outcome


def open_target(
    ref: Any,
    cert_dir: str | None = None,
    *,
    identity: str | None = None,
    ssh_options: Sequence[str] = (),
) -> Target:
    """The target ``ref`` names, through the registry (:func:`certkit.targets.open_target`);
    ``identity`` and ``ssh_options`` add to an SSH reference."""
    if isinstance(ref, targets.SSHRef) and (identity or ssh_options):
        ref = replace(ref, identity=identity or ref.identity,
                      ssh_options=tuple(ssh_options) or ref.ssh_options)  # fmt: skip
    target: Target = targets.open_target(ref, cert_dir)
    return target
