"""What ``list``, ``status``, ``verify`` and ``doctor`` add for an OpenBao-backed CA.

Each entry point costs one ``stat`` per CA (and a directory listing for login contexts)
when the store has no OpenBao-backed CA: the commands' hooks call them unconditionally.
OpenBao is asked only when a CA is bound to a mount or a login context exists, with a
short wait (:data:`READ_RETRY_SECONDS`): these commands report, they must not hang on a
dead cluster.  When OpenBao cannot be read, the command says so in one line and shows
what the store knows.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from ..errors import CertkitError
from ..store import OPENBAO_FILE, CAStore, list_ca_names

if TYPE_CHECKING:
    from ..checks import Checklist
    from ..inventory import Item

#: How long a read-out keeps trying the nodes (a command that issues waits 30 s).
READ_RETRY_SECONDS = 2.0
PERSON_RENEW = "certkit login (her own laptop; certkit renew --contexts renews it there)"


def bound_cas(ca: str | None = None) -> list[str]:
    """The store's CAs (or ``ca``) bound to an OpenBao mount: one stat each."""
    names = [ca] if ca else list_ca_names()
    return [n for n in names if (CAStore(n).dir / OPENBAO_FILE).exists()]


def normal_serial(serial: str) -> str:
    """OpenBao's ``0a:1b:...`` as certkit's serial (lower-case hex, no colons, no zeros ahead)."""
    return serial.replace(":", "").replace("-", "").lower().lstrip("0") or "0"


def _item(ca: str, row: Any, now: dt.datetime) -> Item:
    from ..inventory import Item

    end = dt.datetime.fromisoformat(row.not_after)
    days = (end - now).total_seconds() / 86400
    status = "revoked" if row.revoked else "expired" if days <= 0 else "valid"
    kind = "client" if row.kind == "person" else row.kind
    renew = PERSON_RENEW if row.kind == "person" else "certkit team issue-" + kind
    return Item(ca, kind, row.name, row.subject, [], normal_serial(row.serial), row.not_after,
                days, status, renew, revoked_at=row.revoked_at)  # fmt: skip


def merge_list(items: list[Item], ca: str | None, kind: str | None) -> tuple[list[Item], list[str]]:
    """``certkit list``: the inventory's items with OpenBao's word on each bound CA.

    Items OpenBao revoked are marked ``revoked``; what the mount issued and the inventory
    never saw (people's ``certkit login`` certificates, another admin's issuance) is added.
    Returns the items and one warning per CA whose mount could not be read.
    """
    from .readback import issued

    warnings: list[str] = []
    now = dt.datetime.now(dt.UTC)
    out = list(items)
    for name in bound_cas(ca):
        try:
            rows = issued(CAStore(name), retry_seconds=READ_RETRY_SECONDS)
        except CertkitError as e:
            warnings.append(f"CA {name!r}: OpenBao not read ({e.message.rstrip('.')}).")
            continue
        mine = {i.serial: i for i in out if i.ca == name}
        for row in rows:
            serial = normal_serial(row.serial)
            if serial in mine:
                if row.revoked and mine[serial].status != "revoked":
                    mine[serial].status, mine[serial].revoked_at = "revoked", row.revoked_at
                continue
            extra = _item(name, row, now)
            if kind is None or extra.kind == kind:
                out.append(extra)
    return out, warnings


def status_lines(cas: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``certkit status``: per bound CA, what the mount issued, people's logins, revoked."""
    doc: dict[str, Any] = {}
    lines: list[str] = []
    for name in bound_cas(None):
        if cas and name not in cas:
            continue
        from .readback import issued  # cryptography: only for a bound CA (status starts fast)

        try:
            rows = issued(CAStore(name), retry_seconds=READ_RETRY_SECONDS)
        except CertkitError as e:
            doc[name] = {"error": e.message}
            lines.append(f"OpenBao (CA {name}): not read ({e.message.rstrip('.')}).")
            continue
        people = [r for r in rows if r.kind == "person" and not r.revoked]
        revoked = [r for r in rows if r.revoked]
        doc[name] = {"issued": len(rows), "people": len(people), "revoked": len(revoked),
                     "revoked_serials": [normal_serial(r.serial) for r in revoked]}  # fmt: skip
        lines.append(
            f"OpenBao (CA {name}): {len(rows)} unexpired certificate(s) issued through the "
            f"mount, {len(people)} of people's logins, {len(revoked)} revoked"
            + (f" ({', '.join(sorted({r.name for r in revoked}))})." if revoked else ".")
        )
    return ({"openbao": doc} if doc else {}), lines


def access_of(cert_pem: bytes) -> tuple[str, str] | None:
    """``verify``: OpenBao's word on a client certificate it issued (revoked or not), or
    None when no bound CA nor login context knows its issuer.  Reads the mount's
    unauthenticated ``cert/<serial>`` endpoint: no token needed."""
    from .. import certs
    from ..errors import UsageError
    from .client import Bao, Missing, settings

    try:
        cert = certs.load_cert(cert_pem)
    except UsageError:
        return None
    for addresses, mount in _places():
        bao = Bao(settings(None, recorded=addresses))
        bao.retry_seconds = READ_RETRY_SECONDS
        try:
            data = bao.read(f"{mount}/cert/{_bao_serial(cert)}")["data"]
        except Missing:
            continue
        except CertkitError as e:
            return "WARN", f"OpenBao ({mount}) could not say whether it is revoked: {e.message}"
        when = int(data.get("revocation_time") or 0)
        if when:
            day = dt.datetime.fromtimestamp(when, dt.UTC).date().isoformat()
            return "FAIL", (f"revoked in OpenBao ({mount}) on {day}: its cert login and "
                            "certkit's plugin refuse it; log in or issue again")  # fmt: skip
        return "PASS", f"issued by OpenBao ({mount}), not revoked"
    return None


def _bao_serial(cert: Any) -> str:
    """The serial as OpenBao names it: colon-separated byte pairs, no padding beyond a byte."""
    text = format(cert.serial_number, "x")
    text = ("0" + text) if len(text) % 2 else text
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def _places() -> list[tuple[list[str], str]]:
    """Every (addresses, mount) certkit knows: bound CAs, then login contexts."""
    from .binding import read_binding
    from .login import list_states

    seen: list[tuple[list[str], str]] = []
    for name in bound_cas(None):
        b = read_binding(CAStore(name))
        if b is not None and (b.addresses, b.mount) not in seen:
            seen.append((b.addresses, b.mount))
    for state in list_states():
        if (state.addresses, state.mount) not in seen:
            seen.append((state.addresses, state.mount))
    return seen


def doctor_checks(report: Checklist) -> None:
    """``doctor``: each bound CA's mount (reachable, certkit's profile intact), the admin
    token's lifetime, and each login context's certificate (due, expired)."""
    from .login import logins_dir

    cas = bound_cas(None)
    if cas:
        from .health import ca_checks, token_check

        for name in cas:
            ca_checks(report, CAStore(name))
        token_check(report)
    if logins_dir().is_dir():
        from .health import login_checks

        login_checks(report)
