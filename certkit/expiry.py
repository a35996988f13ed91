"""Which certificate expired, and the command that fixes it: said before Docker does.

An expired client certificate shows in the docker CLI only as "remote error:
tls: bad certificate" (the reason is in dockerd's log); an expired server
certificate or CA as an x509 error that does not say which side to fix.
``certkit verify`` (before it connects), ``doctor`` and ``status`` read the
dates of the three certificates locally and word each case on its own, with
the command that fixes it, found through the store's inventory when this
machine holds the CA that issued the certificate.
"""

from __future__ import annotations

import datetime as dt
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import defaults
from .checks import FAIL, PASS, WARN
from .errors import CertkitError, UsageError

Role = Literal["client", "server", "ca"]

# What each expiry does to a connection, in the words the user will meet.
CONSEQUENCE: dict[Role, str] = {
    "client": "dockerd refuses it, and the docker CLI does not say why "
    '("remote error: tls: bad certificate", or a connection reset)',
    "server": 'every client refuses the server ("x509: certificate has expired")',
    "ca": "nothing it signed is accepted any more, by the clients or by dockerd",
}


@dataclass(frozen=True)
class Dates:
    """One certificate's validity, read locally: how many days are left, and the verdict."""

    role: Role
    label: str  # "the client certificate ~/.docker/.../cert.pem"
    not_after: dt.datetime
    days_left: float
    fix: str  # the command (or commands) that fix it

    @property
    def status(self) -> str:
        if self.days_left <= 0:
            return FAIL
        return WARN if defaults.within_window(self.days_left) else PASS

    def sentence(self, date_format: str = "%Y-%m-%d %H:%M UTC") -> str:
        """The FAIL/WARN sentence: which one, since or until when, what it does, the fix."""
        date = self.not_after.strftime(date_format)
        if self.days_left <= 0:
            return f"{self.label} expired on {date}: {CONSEQUENCE[self.role]}; fix: {self.fix}"
        days = int(self.days_left)
        return f"{self.label} expires in {days} days ({date}); renew it soon: {self.fix}"


def dates(role: Role, label: str, cert: Any, fix: str, now: dt.datetime | None = None) -> Dates:
    """The :class:`Dates` of a parsed certificate."""
    now = now or dt.datetime.now(dt.UTC)
    end = cert.not_valid_after_utc
    return Dates(role, label, end, (end - now).total_seconds() / 86400, fix)


# ---------------------------------------------------------------- the fix, from the inventory


def issued_here(cert: Any) -> tuple[str, str, str] | None:
    """(CA name, kind, name) of the inventory record of ``cert``, when a CA of this
    machine's store issued it (matched by serial and fingerprint); else None."""
    from . import certs
    from .store import CAStore, list_ca_names

    serial, fingerprint = certs.serial_hex(cert), certs.fingerprint(cert)
    for ca in list_ca_names():
        try:
            inventory = CAStore(ca).inventory()
            record = inventory.get(serial)
            if record is None and certs.signed_by(cert, cert):  # a CA: by fingerprint
                record = next(
                    (r for r in inventory.find(kind="ca") if r.fingerprint == fingerprint), None
                )
        except (CertkitError, ValueError):  # an unreadable inventory: doctor says so
            continue
        if record is not None and record.fingerprint == fingerprint:
            return ca, record.kind, record.name
    return None


def _ca_flag(ca: str) -> str:
    from .paths import DEFAULT_CA

    return "" if ca == DEFAULT_CA else f" --ca {shlex.quote(ca)}"


def client_fix(cert: Any, context: str | None = None) -> str:
    """``certkit renew client NAME`` (or ``ci``), with ``--ca`` when needed."""
    found = issued_here(cert)
    if found is not None:
        ca, kind, name = found
        return f"certkit renew {kind} {shlex.quote(name)}{_ca_flag(ca)}"
    name = shlex.quote(context) if context else "NAME"
    return f"certkit renew client {name} (where its CA lives)"


def server_fix(cert: Any, host: str | None = None) -> str:
    """``certkit renew server NAME --restart``, with ``--ca`` when needed."""
    found = issued_here(cert)
    if found is not None:
        ca, _, name = found
        return f"certkit renew server {shlex.quote(name)} --restart{_ca_flag(ca)}"
    name = shlex.quote(host) if host else "HOST"
    return f"certkit renew server {name} --restart (where its CA lives)"


def ca_fix(cert: Any) -> str:
    """A new CA, then what ``rotate-ca status`` lists (everything the old one signed)."""
    found = issued_here(cert)
    flag = _ca_flag(found[0]) if found is not None else ""
    where = "" if found is not None else " (where the CA lives)"
    return (
        f"certkit rotate-ca start{flag}{where}, then renew what `certkit rotate-ca status{flag}` "
        "lists (servers with --restart)"
    )


def server_record_dates(host: str) -> Dates | None:
    """The dates of the server certificate this machine's store issued for ``host``, if any."""
    from .names import name_covered
    from .store import CAStore, list_ca_names

    target = host.strip("[]")
    for ca in list_ca_names():
        try:
            servers = CAStore(ca).inventory().newest_active(kind="server").values()
        except CertkitError:
            continue
        for r in servers:
            if name_covered(target, list(r.sans) or [r.name]):
                fix = f"certkit renew server {shlex.quote(r.name)} --restart{_ca_flag(ca)}"
                label = f"the server certificate of {target} (serial {r.serial}, in the inventory)"
                return Dates("server", label, r.not_after_dt, r.days_left(), fix)
    return None


def ca_bundle(path: Path) -> list[Any]:
    """The CA certificates in a bundle file (a UsageError when it is not one)."""
    from . import certs

    try:
        return certs.load_certs(path.read_bytes())
    except (OSError, UsageError):
        raise UsageError(f"{path} is not a readable PEM bundle.") from None


def ca_dates(path: Path, signed: Any | None = None, now: dt.datetime | None = None) -> list[Dates]:
    """The dates of each CA in the bundle at ``path`` that matters: the one that signed
    ``signed`` when given (an old CA kept for a rotation does not), else every one."""
    from . import certs

    cas = ca_bundle(path)
    if signed is not None:
        cas = [ca for ca in cas if certs.signed_by(signed, ca)] or cas
    return [
        dates("ca", f"the CA {certs.common_name(ca)!r} in {path}", ca, ca_fix(ca), now)
        for ca in cas
    ]
