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
from typing import Any

from . import defaults
from .errors import OperationError
from .origins import CAOrigin, LeafOrigin, Origin, origin_from_json, origin_to_json


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
    origin: Origin = field(default_factory=CAOrigin)
    superseded_by: str | None = None

    @property
    def not_after_dt(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.not_after)

    def days_left(self, now: dt.datetime | None = None) -> float:
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after_dt - now).total_seconds() / 86400

    @property
    def lifetime_days(self) -> float:
        """The whole validity, notBefore to notAfter, in days."""
        span = self.not_after_dt - dt.datetime.fromisoformat(self.not_before)
        return span.total_seconds() / 86400

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
        """``superseded``, ``expired``, ``expiring`` (see :meth:`due_within`) or ``valid``."""
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
        if isinstance(self.origin, CAOrigin):
            raise TypeError(f"record {self.serial} is a CA, not a leaf certificate")
        return self.origin

    def to_dict(self) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "origin"}
        data["origin"] = origin_to_json(self.origin)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record as :meth:`to_dict` wrote it, or as inventory version 1 did (``options``)."""
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
