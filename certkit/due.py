"""``renew --expiring-within DAYS`` / ``--due``: renew everything in use that is due.

Two rules select what is due: ``--expiring-within`` the one ``certkit status``
uses (:meth:`Record.due_within`), ``--due`` the automatic-renewal one, 2/3 of
the lifetime by default (:meth:`Record.due`).  Each certificate is renewed
through :mod:`certkit.renew` the way it was issued, all of them checked first
and issued with one CA key load.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import certs, placement
from .ca import LeafRequest, require_ca
from .defaults import RENEW_AT_FRACTION
from .errors import OperationError, UsageError
from .renew import (
    Renewed,
    ServerInstall,
    ServerSetup,
    ca_flag,
    check_destination,
    check_server_setup,
    in_use,
    now_utc,
    put,
    reissue_many,
    renew_command,
    request_for,
)
from .store import CAStore, Record
from .targets import Reach, SSHRef


@dataclass
class DueReport:
    """What ``renew --expiring-within DAYS`` found and did."""

    within_days: float
    due: list[dict[str, Any]]
    renewed: list[Renewed]
    failed: list[dict[str, str]]
    ca_due: list[dict[str, Any]]
    dry_run: bool
    renew_at: float | None = None  # --due: the fraction of the lifetime (None: --expiring-within)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "within_days": self.within_days,
            "renew_at": self.renew_at,
            "dry_run": self.dry_run,
            "due": self.due,
            "renewed": [r.to_json() for r in self.renewed],
            "failed": self.failed,
            "ca_due": self.ca_due,
        }


def due(store: CAStore, within_days: float, now: dt.datetime | None = None) -> list[Record]:
    """Certificates in use that are expired or expire within ``within_days``, soonest first.

    Short-lived CI certificates are due once a third of their validity is
    left (:meth:`Record.due_within`, the rule ``certkit status`` uses too).
    """
    if within_days < 0:
        raise UsageError(f"--expiring-within must not be negative, got {within_days:g}.")
    now = now or now_utc()
    return sorted(
        (
            r
            for r in in_use(store, now + dt.timedelta(days=within_days))
            if r.due_within(within_days, now)
        ),
        key=lambda r: r.days_left(now),
    )


def due_by_age(store: CAStore, fraction: float, now: dt.datetime | None = None) -> list[Record]:
    """Certificates in use past ``fraction`` of their lifetime (:meth:`Record.due`), soonest
    ending first: what ``renew --due`` (and the schedule's timer) renews."""
    now = now or now_utc()
    return sorted(
        (r for r in in_use(store) if r.due(now, fraction)), key=lambda r: r.days_left(now)
    )


def _due_listing(
    store: CAStore, records: list[Record], now: dt.datetime, fraction: float
) -> list[dict[str, Any]]:
    return [
        {
            "kind": r.kind,
            "name": r.name,
            "serial": r.serial,
            "not_after": r.not_after,
            "days_left": round(r.days_left(now), 1),
            "renew_after": r.renew_after(fraction).isoformat(),
            "command": renew_command(store, r.kind, r.name),
        }
        for r in records
    ]


def _ca_due(
    store: CAStore, within_days: float, now: dt.datetime, fraction: float | None
) -> list[dict[str, Any]]:
    from .records import is_due

    ca_cert = store.load_cert()
    if fraction is not None:
        start, end = ca_cert.not_valid_before_utc, ca_cert.not_valid_after_utc
        if not is_due(start, end, now, fraction):
            return []
    elif certs.days_left(ca_cert, now) > within_days:
        return []
    return [
        {
            "ca": store.name,
            "not_after": ca_cert.not_valid_after_utc.isoformat(),
            "command": f"certkit rotate-ca start{ca_flag(store)}",
        }
    ]


def renew_due(
    store: CAStore,
    within_days: float,
    *,
    restart: bool = False,
    dry_run: bool = False,
    progress: Callable[[Renewed], None] | None = None,
    ssh: Reach | None = None,
    renew_at: float | None = None,
    keep_containers: bool = False,
) -> DueReport:
    """Renew every certificate in use expiring within ``within_days`` the way it was issued;
    with ``renew_at``, every one past that fraction of its lifetime instead (``--due``).

    Servers are re-installed where they were installed (restarted only with
    ``restart``); contexts are rewritten; CI secrets are re-issued and listed
    (their bundles are not printed: run ``certkit renew ci NAME`` for each).
    One failure does not stop the others; it is reported.  Each server is
    reached as recorded (its target kind, key file, ssh options); ``ssh``'s
    ``--identity`` and ``--ssh-option`` replace those of servers installed over SSH.
    ``keep_containers`` (with ``restart``) turns live-restore on before each server's
    restart and is recorded on it; a server recorded so keeps it without the flag.
    """
    require_ca(store)
    if not dry_run:
        placement.settle(store)  # what a killed run left half-recorded, first
    now = now_utc()
    records = due(store, within_days, now) if renew_at is None else due_by_age(store, renew_at, now)
    listing = _due_listing(store, records, now, renew_at or RENEW_AT_FRACTION)
    ca_due = _ca_due(store, within_days, now, renew_at)
    report = DueReport(within_days, listing, [], [], ca_due, dry_run, renew_at)
    if dry_run:
        return report
    batch: list[tuple[Record, LeafRequest]] = []
    setups: dict[str, ServerSetup | None] = {}
    for r in records:  # everything checked first: a refused install issues nothing
        try:
            setups[r.serial] = (
                check_server_setup(store, r, _server_install(r, restart, ssh, keep_containers))
                if r.kind == "server"
                else None
            )
            check_destination(r)
            batch.append((r, request_for(store, r)))
        except (UsageError, OperationError) as e:
            report.failed.append({"kind": r.kind, "name": r.name, "error": e.message})
    pending = frozenset(s for s, setup in setups.items() if setup and setup.target)
    for fresh in reissue_many(store, batch, pending):
        try:
            done = put(store, fresh, setups[fresh.old.serial], restart, "bundle", False, False)
        except (UsageError, OperationError) as e:
            report.failed.append(
                {
                    "kind": fresh.old.kind,
                    "name": fresh.old.name,
                    "error": f"issued serial {fresh.record.serial} but could not install it: "
                    f"{e.message}",
                }
            )
            continue
        done.secret = None  # never print CI keys in a bulk run
        report.renewed.append(done)
        if progress is not None:
            progress(done)
    return report


def _server_install(
    record: Record, restart: bool, ssh: Reach | None, keep_containers: bool = False
) -> ServerInstall:
    """How bulk renewal re-installs ``record``: as recorded, with ``ssh``'s key file and
    options for a server installed over SSH (and live-restore first when asked now or
    recorded: :func:`certkit.renew.server_setup` adds the recorded choice)."""
    over_ssh = isinstance(getattr(record.leaf_origin, "target", None), SSHRef)
    reach = Reach(identity=ssh.identity, ssh_options=ssh.ssh_options) if ssh else Reach()
    return ServerInstall(
        restart=restart, reach=reach if over_ssh else Reach(), keep_containers=keep_containers
    )
