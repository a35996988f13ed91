"""No host speaks for another: a server name belongs to one host's active certificate.

A server certificate lets whoever is root on its host answer for every name in
it.  So before a server certificate is issued, each of its names is looked up
in the active server certificates of *other* hosts (the newest, unexpired
record of each host); a name held there is refused, unless the caller says the
name moved (``--force``), e.g. a DNS name now pointing at a new machine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .errors import UsageError
from .store import CAStore


def held_elsewhere(store: CAStore, host: str, names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Each of ``names`` that another host's active server certificate holds:
    name -> (that host, its serial)."""
    if not store.exists():
        return {}
    now = dt.datetime.now(dt.UTC)
    held: dict[str, tuple[str, str]] = {}
    for (_, other), record in sorted(store.inventory().newest_active(kind="server").items()):
        if other == host or record.not_after_dt <= now:
            continue
        for san in record.sans:
            held.setdefault(san, (other, record.serial))
    return {n: held[n] for n in names if n in held}


def check_names_free(
    store: CAStore, host: str, names: Sequence[str], *, moved: bool, option: str = "--force"
) -> None:
    """UsageError when a name of ``host``'s certificate-to-be is another host's, unless
    ``moved`` (the user said so with ``option``)."""
    if moved:
        return
    clash = held_elsewhere(store, host, names)
    if clash:
        name, (other, serial) = next(iter(clash.items()))
        more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
        raise UsageError(
            f"{name!r}{more} is already in the active server certificate of {other!r} "
            f"(serial {serial}): a certificate for {host!r} with it would let {host!r} answer "
            f"for {other!r}; if the name moved to {host!r}, run again with {option}."
        )
