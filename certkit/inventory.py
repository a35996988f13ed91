"""Everything the store's CAs issued, what state it is in, and how to renew it.

This is what ``certkit list`` and ``certkit status`` show.  It reads only the
inventories (``cas/<name>/inventory.sqlite3``, through read-only
connections): no certificate is parsed, so neither ``cryptography`` nor the
docker SDK is imported and a monitoring check stays fast.

An item's status is ``valid``, ``expiring`` (within the warning window),
``expired``, ``superseded`` or ``revoked`` (``certkit revoke``).  A record
counts as superseded when renewal marked it so, and also when a newer
certificate of the same kind and name was issued by the same CA (re-running
``issue-server`` or ``client-context --force`` replaces the old one in
practice): only the newest one can need renewing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from . import defaults
from .errors import UsageError
from .paths import DEFAULT_CA, store_root
from .store import CAStore, Record, list_ca_names

KINDS = ("ca", "server", "client", "ci")
DEFAULT_WARN_DAYS = defaults.RENEW_WINDOW_DAYS


def renew_command(ca: str, kind: str, name: str, extra: str = "") -> str:
    """The exact command that renews this item (rotates the CA for ``kind="ca"``).

    ``extra`` is inserted before ``--ca`` (e.g. ``" --bundle-only"``).
    """
    flag = "" if ca == DEFAULT_CA else f" --ca {shlex.quote(ca)}"
    if kind == "ca":
        return f"certkit rotate-ca start{flag}"
    return f"certkit renew {kind} {shlex.quote(name)}{extra}{flag}"


@dataclass
class Item:
    """One certificate of one CA, as ``certkit list`` shows it."""

    ca: str
    kind: str
    name: str
    subject: str
    sans: list[str]
    serial: str
    not_after: str
    days_left: float
    status: str
    renew: str
    installed: list[str] = field(default_factory=list)
    superseded_by: str | None = None
    revoked_at: str | None = None
    renew_after: str = ""  # when `renew --due` renews it: 2/3 of its lifetime (Record.due)

    @property
    def expiry_date(self) -> str:
        return self.not_after[:10]

    @property
    def active(self) -> bool:
        return self.status != "superseded"

    def describe_expiry(self) -> str:
        """``expired on DATE`` or ``expires on DATE, in N days``."""
        if self.days_left <= 0:
            return f"expired on {self.expiry_date}"
        days = int(self.days_left)
        return f"expires on {self.expiry_date}, in {days} day{'' if days == 1 else 's'}"

    def describe_renewal(self, now: dt.datetime | None = None) -> str:
        """``renew --due renews it in N days`` (or ``now``).

        In whole days from now, not as a date: 2/3 of a lifetime moves the time of day,
        so the date alone would depend on the hour a certificate was issued.
        """
        now = now or dt.datetime.now(dt.UTC)
        days = (dt.datetime.fromisoformat(self.renew_after) - now).total_seconds() / 86400
        if days <= 0:
            return "renew --due renews it now"
        n = int(days)
        return f"renew --due renews it in {n} day{'' if n == 1 else 's'}"

    def to_json(self) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in _ITEM_FIELDS}  # asdict(), without its deep copies
        data["sans"], data["installed"] = list(self.sans), list(self.installed)
        data["days_left"] = round(self.days_left, 1)
        return data


_ITEM_FIELDS = tuple(f.name for f in fields(Item))


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while tens of thousands of objects are made.

    They make no cycles, but their number alone sets off collections that cost
    `list` about a fifth of its time at 20,000 records.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _items_of(ca: str, kind: str | None, warn_days: float, now: dt.datetime) -> list[Item]:
    with _no_gc(), CAStore(ca).inventory().snapshot() as inv:
        newest = inv.newest_serials(kind)
        records = inv.find(kind)
        items = []
        for r in records:
            replaced_by = r.superseded_by
            if replaced_by is None and newest[(r.kind, r.name)] != r.serial:
                replaced_by = newest[(r.kind, r.name)]
            items.append(_item(ca, r, replaced_by, warn_days, now))
    return items


def _item(ca: str, r: Record, replaced_by: str | None, warn_days: float, now: dt.datetime) -> Item:
    return Item(
        ca=ca,
        kind=r.kind,
        name=r.name,
        subject=r.subject,
        sans=list(r.sans),
        serial=r.serial,
        not_after=r.not_after,
        days_left=r.days_left(now),
        status="superseded" if replaced_by and not r.revoked_at else r.status(warn_days, now),
        renew=renew_command(ca, r.kind, r.name),
        installed=list(r.installed),
        superseded_by=replaced_by,
        revoked_at=r.revoked_at,
        renew_after=r.renew_after().isoformat(),
    )


def _sort_key(item: Item) -> tuple[str, int, str, str]:
    return (item.ca, KINDS.index(item.kind) if item.kind in KINDS else 9, item.name, item.not_after)


def list_items(
    ca: str | None = None,
    kind: str | None = None,
    warn_days: float = DEFAULT_WARN_DAYS,
    now: dt.datetime | None = None,
) -> list[Item]:
    """Every certificate in the inventory of ``ca`` (default: every CA), sorted.

    ``kind`` keeps only ``ca``, ``server``, ``client`` or ``ci`` items;
    ``warn_days`` decides when a valid certificate becomes ``expiring``.
    """
    if kind is not None and kind not in KINDS:
        raise UsageError(f"Unknown kind {kind!r}; choose one of {', '.join(KINDS)}.")
    if warn_days < 0:
        raise UsageError(f"--warn-days must not be negative, got {warn_days:g}.")
    names = [CAStore(ca).require().name] if ca else list_ca_names()
    now = now or dt.datetime.now(dt.UTC)
    items: list[Item] = []
    for name in names:
        items += _items_of(name, kind, warn_days, now)
    return sorted(items, key=_sort_key)


def iter_items(
    ca: str | None = None,
    kind: str | None = None,
    warn_days: float = DEFAULT_WARN_DAYS,
    now: dt.datetime | None = None,
) -> Iterator[Item]:
    """:func:`list_items`, one item at a time as the inventories are read (same items,
    same order): ``certkit list --json`` prints the first before the last is read, and
    its memory does not grow with the store.  Bad arguments raise here, not when iterated."""
    if kind is not None and kind not in KINDS:
        raise UsageError(f"Unknown kind {kind!r}; choose one of {', '.join(KINDS)}.")
    if warn_days < 0:
        raise UsageError(f"--warn-days must not be negative, got {warn_days:g}.")
    names = [CAStore(ca).require().name] if ca else list_ca_names()
    return _stream(names, kind, warn_days, now or dt.datetime.now(dt.UTC))


def _stream(
    names: list[str], kind: str | None, warn_days: float, now: dt.datetime
) -> Iterator[Item]:
    for name in names:
        with CAStore(name).inventory().snapshot() as inv:
            for r, newest in inv.in_list_order(kind):
                replaced_by = r.superseded_by
                if replaced_by is None and newest != r.serial:
                    replaced_by = newest
                yield _item(name, r, replaced_by, warn_days, now)


@dataclass
class StatusReport:
    """What ``certkit status`` reports: how many are in use, and those needing attention."""

    warn_days: float
    cas: list[str]
    checked: int  # the certificates in use (not superseded)
    attention: list[Item]
    next_expiry: Item | None  # the certificate in use that expires first
    revoked: int = 0  # certificates in use that `certkit revoke` revoked
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC), repr=False)

    @property
    def ok(self) -> bool:
        return not self.attention

    @property
    def active(self) -> list[Item]:
        """Every certificate in use, sorted: read when asked (metrics need it, status does not)."""
        return [
            i for ca in self.cas for i in list_items(ca, None, self.warn_days, self.now) if i.active
        ]

    def to_json(self) -> dict[str, Any]:
        nxt = self.next_expiry
        return {
            "ok": self.ok,
            "warn_days": self.warn_days,
            "cas": self.cas,
            "checked": self.checked,
            "attention": [i.to_json() for i in self.attention],
            "next_expiry": nxt.to_json() if nxt else None,
            "revoked": self.revoked,
        }


def status(
    warn_days: float = DEFAULT_WARN_DAYS, ca: str | None = None, now: dt.datetime | None = None
) -> StatusReport:
    """Which active certificates are expired or expire within ``warn_days``.

    Superseded certificates are ignored: renewing them again would be noise.
    Attention items come soonest-expiring first, each with its renew command.
    An empty store is an error, not an OK: a cron job reading the wrong
    ``$HOME`` must not report that all is well.  Only the certificates that
    end within the window are read (the inventory's expiry index), so a
    monitoring check stays fast in a store of any size.
    """
    if ca is None and not list_ca_names():
        raise UsageError(
            f"No CA in {store_root()}, so nothing to check; point CERTKIT_HOME at the store "
            "(cron runs with its own HOME) or create a CA with `certkit init-ca`."
        )
    if warn_days < 0:
        raise UsageError(f"--warn-days must not be negative, got {warn_days:g}.")
    cas = [CAStore(ca).require().name] if ca else list_ca_names()
    now = now or dt.datetime.now(dt.UTC)
    checked, attention, firsts, revoked = 0, [], [], 0
    for name in cas:
        with CAStore(name).inventory().snapshot() as inv:
            checked += inv.count_in_use()
            revoked += sum(1 for r in inv.revoked() if r.days_left(now) > 0)
            ending = inv.newest_active(ending_by=now + dt.timedelta(days=warn_days))
            first = inv.first_to_expire()
        due = (_item(name, r, None, warn_days, now) for r in ending.values())
        attention += [i for i in due if i.status in ("expired", "expiring")]
        firsts += [_item(name, first, None, warn_days, now)] if first else []
    attention = sorted(sorted(attention, key=_sort_key), key=lambda i: i.days_left)
    nxt = min(firsts, key=lambda i: i.days_left, default=None)
    return StatusReport(warn_days, cas, checked, attention, nxt, revoked, now)
