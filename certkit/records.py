"""One certificate in a CA's inventory: what ``list``, ``status`` and ``renew`` read.

The inventory itself (where records are kept and how they are queried) is
:mod:`certkit.inventorydb`; this module is the record, its rules, and the
``inventory.json`` file certkit kept them in before (read once, to migrate it).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import defaults
from .errors import OperationError, UsageError

if TYPE_CHECKING:
    from .origins import LeafOrigin, Origin


def _ca_origin() -> Origin:
    # certkit.origins (and the host targets it names) loads only when an origin is
    # used: `status` and `list` read thousands of records and none of their origins.
    from .origins import CAOrigin

    return CAOrigin()


# What ``superseded_by`` holds for a server certificate that is not (yet) in use although
# nothing replaced it (certkit.placement keeps the rule): its install is under way (a run
# killed here is settled by the next one), or it failed / was rolled back.
INSTALLING = "(installing)"
NOT_INSTALLED = "(not installed)"


def check_renew_at(fraction: float) -> float:
    """``fraction`` if it is a usable renew-at fraction (above 0, at most 1), else a UsageError."""
    if not 0 < fraction <= 1:
        raise UsageError(
            f"--renew-at is a fraction of the lifetime above 0 and at most 1 "
            f"(default {defaults.RENEW_AT_FRACTION:.3g}), got {fraction:g}."
        )
    return fraction


def renew_after(
    not_before: dt.datetime, not_after: dt.datetime, fraction: float = defaults.RENEW_AT_FRACTION
) -> dt.datetime:
    """The moment a certificate valid from ``not_before`` to ``not_after`` is due for renewal.

    The one automatic-renewal rule (``renew --due``, ``status``, the schedule, the
    metrics and the fleet): due once ``fraction`` of its lifetime has passed
    (2/3 by default, as step-ca and cert-manager).  Works on a record's dates or
    on a parsed certificate's ``not_valid_before_utc``/``not_valid_after_utc``.
    """
    lifetime = (not_after - not_before).total_seconds() / 86400
    return not_before + dt.timedelta(days=defaults.renew_after_days(lifetime, fraction))


def is_due(
    not_before: dt.datetime,
    not_after: dt.datetime,
    now: dt.datetime,
    fraction: float = defaults.RENEW_AT_FRACTION,
) -> bool:
    """True from :func:`renew_after` on (``>=``: at that very moment it is due)."""
    return now >= renew_after(not_before, not_after, fraction)


@dataclass
class Record:
    """One certificate in the inventory.

    ``name`` is what the user calls it: the host of a server certificate, the
    context name of a client, the CI name.  ``installed`` lists every path the
    certificate (or its bundle) was written to.  ``origin`` keeps what is
    needed to issue it again the same way (see :mod:`certkit.origins`).
    """

    serial: str
    kind: str
    name: str
    subject: str
    sans: list[str]
    not_before: str
    not_after: str
    fingerprint: str
    key_type: str
    issuer_fingerprint: str
    created: str
    installed: list[str] = field(default_factory=list)
    origin: Origin = field(default_factory=_ca_origin)
    superseded_by: str | None = None
    revoked_at: str | None = None  # `certkit revoke`: when, and why
    revoked_reason: str | None = None

    @property
    def not_after_dt(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.not_after)

    def days_left(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after_dt - now).total_seconds() / 86400

    @property
    def lifetime_days(self) -> float:
        """The whole validity, notBefore to notAfter, in days."""
        span = self.not_after_dt - self.not_before_dt
        return span.total_seconds() / 86400

    @property
    def not_before_dt(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.not_before)

    def renew_after(self, fraction: float = defaults.RENEW_AT_FRACTION) -> dt.datetime:
        """When this certificate is due for automatic renewal (:func:`renew_after`)."""
        return renew_after(self.not_before_dt, self.not_after_dt, fraction)

    def due(
        self, now: dt.datetime | None = None, fraction: float = defaults.RENEW_AT_FRACTION
    ) -> bool:
        """True once ``fraction`` of its lifetime has passed (expired ones too): ``renew --due``."""
        return is_due(
            self.not_before_dt, self.not_after_dt, now or dt.datetime.now(dt.UTC), fraction
        )

    def due_within(self, days: float, now: dt.datetime | None = None) -> bool:
        """True when it expires within ``days`` (``status`` and ``renew`` share this rule).

        CI certificates are short-lived by design (30 days by default): against
        a window as long as their whole life they would always be due, and
        renewed on every run, so they are due once a third of their validity
        is left, when that comes later than the window.
        """
        window = min(days, self.lifetime_days / 3) if self.kind == "ci" else days
        return defaults.within_window(self.days_left(now), window)

    def status(
        self, warn_days: float = defaults.RENEW_WINDOW_DAYS, now: dt.datetime | None = None
    ) -> str:
        """``revoked``, ``superseded``, ``expired``, ``expiring`` (see :meth:`due_within`)
        or ``valid``; ``installing`` or ``not installed`` for a server certificate not in use."""
        if self.revoked_at:
            return "revoked"
        if self.superseded_by in (INSTALLING, NOT_INSTALLED):
            return self.superseded_by.strip("()")
        if self.superseded_by:
            return "superseded"
        if self.days_left(now) <= 0:
            return "expired"
        if self.due_within(warn_days, now):
            return "expiring"
        return "valid"

    @property
    def leaf_origin(self) -> LeafOrigin:
        """The origin of a leaf certificate (server, client or CI)."""
        from .origins import CAOrigin

        if isinstance(self.origin, CAOrigin):
            raise TypeError(f"record {self.serial} is a CA, not a leaf certificate")
        return self.origin

    def to_dict(self) -> dict[str, Any]:
        from .origins import origin_to_json

        data = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "origin"}
        data["origin"] = origin_to_json(self.origin)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record as :meth:`to_dict` wrote it, or as inventory version 1 did (``options``)."""
        from .origins import origin_from_json

        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        kind = str(data["kind"])
        if isinstance(data.get("origin"), dict):
            known["origin"] = origin_from_json(kind, data["origin"])
        else:
            known["origin"] = origin_from_json(kind, data.get("options") or {}, legacy=True)
        return cls(**known)


def read_json_inventory(path: Path) -> tuple[str, list[Record]]:
    """The SHA-256 of an ``inventory.json`` and its records (version 1 or 2)."""
    import hashlib  # only for a store still holding inventory.json (not in list/status)

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise OperationError(f"Cannot read the inventory {path}: {e.strerror}.") from None
    try:
        data = json.loads(raw.decode("utf-8"))
        records = [Record.from_dict(r) for r in data["records"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise OperationError(
            f"The inventory {path} is not valid JSON: restore it from a backup, "
            "or move it aside to start an empty inventory."
        ) from None
    return hashlib.sha256(raw).hexdigest(), records
