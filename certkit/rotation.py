"""CA rotation: change CAs without locking anyone out.

Rotation keeps two CAs alive for as long as certificates of both are in use::

    rotate-ca start    new CA signs from now on; the old one moves to
                       cas/<name>/previous/; bundle.pem = new + old CA
    (re-install and renew everything, see RotationReport.steps)
    rotate-ca finish   bundle.pem removed; previous/ archived under
                       cas/<name>/retired/<timestamp>-<fingerprint>/

Every helper that writes a ``ca.pem`` writes :meth:`CAStore.trust_bundle_pem`,
so during a rotation servers and clients trust both CAs.  The CA files
themselves are written by :mod:`certkit.ca` (:func:`~certkit.ca.begin_rotation`,
:func:`~certkit.ca.retire_previous`); this module decides the order of the
steps and reports what still depends on the old CA.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509

from . import certs, constraints, defaults, keys
from .ca import begin_rotation, distinct_common_name, require_ca, retire_previous
from .certs import PrivateKey
from .errors import OperationError, UsageError
from .openbao.binding import is_openbao
from .records import Record
from .renew import (
    RENEW_KINDS,
    ca_flag,
    in_use,
    installed_trusts,
    now_utc,
    renew_command,
    rewritable,
    trusted,
)
from .store import CAStore, key_reference
from .targets import AnsibleRef


@dataclass
class CASummary:
    """One CA certificate, as the rotation commands show it."""

    subject: str
    fingerprint: str
    key_type: str
    not_after: str
    path: str
    key_uri: str | None = None  # its key is held by a backend: its URI (else a ca-key.pem)

    @classmethod
    def of(cls, cert: x509.Certificate, path: Path) -> CASummary:
        return cls(
            subject=certs.common_name(cert),
            fingerprint=certs.fingerprint(cert),
            key_type=certs.cert_key_type(cert),
            not_after=cert.not_valid_after_utc.isoformat(),
            path=str(path),
            key_uri=key_reference(path.parent),
        )


@dataclass
class Dependent:
    """A certificate in use that a rotation step still has to deal with."""

    kind: str
    name: str
    serial: str
    not_after: str
    installed: list[str]
    command: str
    why: str
    trusts_new: bool = True  # a server whose tlscacert does not list the new CA yet: False

    def line(self) -> str:
        return f"{self.kind:6} {self.name:24} {self.why}: {self.command}"


@dataclass
class RotationReport:
    """Where a CA rotation stands and what must be done next, in order."""

    ca: str
    state: Literal["none", "rotating", "finished", "started"]
    current: CASummary
    previous: CASummary | None
    bundle_path: str | None
    archived: str | None = None
    dependents: list[Dependent] = field(default_factory=list)  # still signed by the old CA
    reinstall: list[Dependent] = field(default_factory=list)  # trust files to re-install
    steps: list[str] = field(default_factory=list)
    restart_needed: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _previous_cert(store: CAStore) -> x509.Certificate | None:
    path = store.previous_dir / "ca.pem"
    if not path.exists():
        return None
    return certs.load_cert(path.read_bytes())


# "certkit CA prod 20261127" (rotations before the key id) or "... 2026-11-27 a1b2c3".
_STAMP_SUFFIX = re.compile(r" (\d{8}(T\d{6}Z)?|\d{4}-\d{2}-\d{2} [0-9a-f]{6})$")


def _next_common_name(old_cn: str, key: PrivateKey, now: dt.datetime) -> str:
    """``certkit CA prod 2026-11-27 a1b2c3``: the old name with the day and the new key's id."""
    return distinct_common_name(_STAMP_SUFFIX.sub("", old_cn)[:40], key, now)


def start_rotation(
    store: CAStore,
    *,
    key_type: str | None = None,
    common_name: str | None = None,
    days: int = defaults.CA_DAYS,
) -> RotationReport:
    """Make the next CA: it signs from now on; both CAs are trusted until :func:`finish_rotation`.

    The old CA moves to ``previous/`` (kept as is, key included); the new
    key has the old one's key type unless ``key_type``, and is encrypted
    with the same passphrase when the old one was.  ``bundle.pem`` gets the
    new CA certificate followed by the old one.
    """
    require_ca(store)
    if store.rotation_under_way():
        raise UsageError(
            f"A rotation of CA {store.name!r} is already under way; see "
            f"`certkit rotate-ca status{ca_flag(store)}` and finish it first."
        )
    if is_openbao(store):  # the next issuer is made in the PKI mount: certkit/openbao/rotate.py
        from .openbao.rotate import start_in_openbao

        start_in_openbao(store, key_type=key_type, common_name=common_name, days=days)
        return rotation_status(store, started=True)
    old_cert = store.load_cert()
    kt = certs.check_key_type(key_type or certs.cert_key_type(old_cert))
    certs.check_days(days)
    now = now_utc()
    # The old key's backend makes the next key (a key file: encrypted alike; a token: beside it).
    held = keys.held_in(store.dir)
    new = keys.backend_of(held).next_key(held, kt, now)
    cn = common_name or _next_common_name(certs.common_name(old_cert), new.key, now)
    # The new CA may sign for the same names as the old one, no more.
    new_cert = certs.make_ca(new.key, cn, days, constraints=constraints.of(old_cert))
    begin_rotation(store, new_cert, new)
    return rotation_status(store, started=True)


def rotation_status(store: CAStore, *, started: bool = False) -> RotationReport:
    """What still depends on the previous CA, and the next steps in order."""
    require_ca(store)
    current = store.load_cert()
    prev = _previous_cert(store)
    report = RotationReport(
        ca=store.name,
        state="none",
        current=CASummary.of(current, store.cert_path),
        previous=CASummary.of(prev, store.previous_dir / "ca.pem") if prev else None,
        bundle_path=str(store.bundle_path) if store.bundle_path.exists() else None,
    )
    if prev is None:
        report.reinstall = _stale_trust(store, certs.fingerprint(current))
        _after_finish_steps(store, report)
        return report
    report.state = "started" if started else "rotating"
    old_fp, new_fp = certs.fingerprint(prev), certs.fingerprint(current)
    report.dependents = _old_ca_dependents(store, old_fp, new_fp)
    _rotation_steps(store, report, new_fp)
    return report


def _old_ca_dependents(store: CAStore, old_fp: str, new_fp: str) -> list[Dependent]:
    """Certificates in use, not expired, that the previous CA signed: each needs renewing."""
    now = now_utc()
    out = []
    for r in sorted(in_use(store), key=lambda r: (RENEW_KINDS.index(r.kind), r.name)):
        if r.issuer_fingerprint != old_fp or r.days_left(now) <= 0:
            continue
        trusts_new = new_fp in trusted(r)
        why = "signed by the old CA"
        if r.kind == "server" and not trusts_new:
            why += ", does not trust the new CA yet"
        out.append(
            Dependent(
                r.kind,
                r.name,
                r.serial,
                r.not_after,
                list(r.installed),
                command_for(store, r),
                why,
                trusts_new=trusts_new,
            )
        )
    return out + _stale_fleet_contexts(store, old_fp)


def _stale_trust(store: CAStore, current_fp: str) -> list[Dependent]:
    """Servers, contexts and CI secrets whose ``ca.pem`` still lists another CA."""
    why = {
        "server": "tlscacert still trusts the old CA",
        "client": "ca.pem still trusts the old CA",
        "ci": "the CI secret's CA still includes the old CA",
    }
    extra = {
        "server": " --bundle-only",
        "client": " --bundle-only",
        "ci": " --bundle-only --format bundle",
    }
    out = []
    for r in sorted(in_use(store), key=lambda r: (RENEW_KINDS.index(r.kind), r.name)):
        if all(fps == [current_fp] for fps in copies_trust(r)):
            continue
        if r.kind == "client" and not rewritable(r):
            continue  # nothing certkit could rewrite
        cmd = command_for(store, r, extra[r.kind])
        out.append(
            Dependent(r.kind, r.name, r.serial, r.not_after, list(r.installed), cmd, why[r.kind])
        )
    return out


def _rotation_steps(store: CAStore, report: RotationReport, new_fp: str) -> None:
    """The order that never locks anyone out, as commands for what is left."""
    servers = [d for d in report.dependents if d.kind == "server"]
    untrusting = [d for d in servers if not d.trusts_new]
    clients = [d for d in report.dependents if d.kind != "server"]
    fleet = fleet_servers(store)
    steps = [
        *_section(
            "1. Make every server trust both CAs (keeps its certificate; dockerd must restart):",
            [_server_cmd(store, d.name, " --bundle-only", fleet) for d in untrusting],
        ),
        *_section(
            "2. Renew clients and CI under the new CA (their ca.pem trusts both CAs):",
            [d.command for d in clients],
        ),
        *_section(
            "3. Renew servers under the new CA (dockerd must restart):",
            [_server_cmd(store, d.name, "", fleet) for d in servers],
        ),
    ]
    steps.append(
        ("4. " if report.dependents else "Nothing depends on the old CA any more. Next: ")
        + f"certkit rotate-ca finish{ca_flag(store)}"
    )
    report.steps = steps
    report.restart_needed = bool(servers)


def _section(title: str, commands: list[str]) -> list[str]:
    """A numbered step and its commands (each once), indented; nothing when none is left."""
    return [title, *(f"     {c}" for c in dict.fromkeys(commands))] if commands else []


def _server_cmd(store: CAStore, name: str, extra: str, fleet: dict[str, str] | None = None) -> str:
    """``renew server NAME EXTRA --restart``; for a fleet's server, ``fleet apply``."""
    inventory = (fleet if fleet is not None else fleet_servers(store)).get(name)
    if inventory is not None:  # the fleet installs the bundle first by itself (certkit.fleet)
        return _fleet_cmd(store, inventory)
    return renew_command(store, "server", name, f"{extra} --restart")


def _after_finish_steps(store: CAStore, report: RotationReport) -> None:
    servers = [d for d in report.reinstall if d.kind == "server"]
    contexts = [d for d in report.reinstall if d.kind == "client"]
    secrets = [d for d in report.reinstall if d.kind == "ci"]
    fleet = fleet_servers(store)
    steps = [
        *_section(
            "Re-install tlscacert on servers (dockerd must restart to drop the old CA):",
            [_server_cmd(store, d.name, " --bundle-only", fleet) for d in servers],
        ),
        *_section(
            "Re-write the contexts' ca.pem (no restart needed):", [d.command for d in contexts]
        ),
        *_section(
            "Update the CI secrets (their bundle still trusts the old CA):",
            [f"{d.command} | gh secret set CERTKIT_BUNDLE" for d in secrets],
        ),
    ]
    report.steps = steps
    report.restart_needed = bool(servers)


def finish_rotation(store: CAStore, *, force: bool = False) -> RotationReport:
    """Drop the previous CA from the trust bundle and archive it (never delete it).

    Refused (exit 1, with the list) while a certificate in use still depends
    on the previous CA, unless ``force``.  Afterwards servers and contexts
    still hold the two-CA ``ca.pem`` until re-installed: the report lists them.
    """
    require_ca(store)
    prev = _previous_cert(store)
    if prev is None:
        raise UsageError(
            f"No rotation of CA {store.name!r} is under way; start one with "
            f"`certkit rotate-ca start{ca_flag(store)}`."
        )
    status = rotation_status(store)
    if status.dependents and not force:
        lines = "; ".join(f"{d.kind} {d.name} ({d.command})" for d in status.dependents)
        raise OperationError(
            f"{len(status.dependents)} certificate(s) in use still depend on the old CA of "
            f"{store.name!r}: {lines}. Renew them first, or pass --force to cut them off."
        )
    if is_openbao(store):  # the mount's default issuer switches before the store archives
        from .openbao.rotate import finish_in_openbao

        finish_in_openbao(store)
    archive = retire_previous(store)
    report = rotation_status(store)
    report.state = "finished"
    report.previous = CASummary.of(prev, archive / "ca.pem")
    report.archived = str(archive)
    report.dependents = status.dependents  # cut off by --force
    return report


# ---------------------------------------------------------------- rotation-order hazards


def rotation_hazards(store: CAStore, kind: str, bundle_only: bool) -> list[str]:
    """What renewing a ``kind`` certificate now would lock out, during a CA rotation.

    A server with a new-CA certificate is refused by clients trusting only the
    old CA; a client with a new-CA certificate is refused by servers trusting
    only the old CA.  A bundle-only re-install changes no certificate.
    """
    if bundle_only or not store.rotation_under_way():
        return []
    if kind == "server":
        return lockout_warning(store)
    stuck = servers_untrusting(store)
    if not stuck:
        return []
    names = ", ".join(r.name for r in stuck)
    fleet = fleet_servers(store)
    commands = "; ".join(
        dict.fromkeys(_server_cmd(store, r.name, " --bundle-only", fleet) for r in stuck)
    )
    verb = "trusts" if len(stuck) == 1 else "trust"
    return [
        f"Warning: server {names} still {verb} only the old CA and will refuse this {kind}'s "
        f"new certificate; re-install the trust bundle there first: {commands}"
    ]


def lockout_warning(store: CAStore) -> list[str]:
    """A warning when clients that trust only the old CA will refuse a new-CA server."""
    stuck = server_reissue_hazards(store)
    if not stuck:
        return []
    names = ", ".join(f"{r.kind} {r.name}" for r in stuck)
    commands = "; ".join(dict.fromkeys(command_for(store, r) for r in stuck))
    verb = "trusts" if len(stuck) == 1 else "trust"
    return [
        f"Warning: {names} still {verb} only the old CA and will refuse this server once "
        f"dockerd loads the new certificate; renew before the restart: {commands}"
    ]


# ---------------------------------------------------------------- the fleet's part

# certkit.fleet.admin.CLIENT_NAME (not imported: the fleet imports this module).
FLEET_CLIENT = "certkit-fleet"


def copies_trust(record: Record) -> list[list[str]]:
    """The CA fingerprints of every ``ca.pem`` installed with ``record`` on this machine (the
    fleet's client has one per docker context); what it was recorded to trust when none is."""
    return list(installed_trusts(record)) or [trusted(record)]


def fleet_copies(record: Record) -> list[Path]:
    """The directories (its own and one per docker context) the fleet's client certificate
    was written to, that still exist."""
    return [Path(e) for e in record.installed if Path(e).is_dir()]


def _stale_fleet_contexts(store: CAStore, old_fp: str) -> list[Dependent]:
    """Fleet contexts still holding a client certificate of the old CA (a context written
    before the fleet's client was renewed, and not rewritten since)."""
    prev = _previous_cert(store)
    current = in_use(store)
    fleet = [r for r in current if (r.kind, r.name) == ("client", FLEET_CLIENT)]
    if prev is None or not fleet or fleet[0].issuer_fingerprint == old_fp:
        return []  # the record itself is listed (or there is no fleet client)
    rec, stale = fleet[0], []
    for d in fleet_copies(rec):
        try:
            cert = certs.load_cert((d / "cert.pem").read_bytes())
        except (OSError, UsageError):
            continue
        if certs.signed_by(cert, prev) and certs.days_left(cert) > 0:
            stale.append(str(d))
    if not stale:
        return []
    why = f"{len(stale)} docker context(s) still hold its client certificate of the old CA"
    return [Dependent("client", FLEET_CLIENT, rec.serial, rec.not_after, stale,
                      command_for(store, rec), why)]  # fmt: skip


def fleet_servers(store: CAStore) -> dict[str, str]:
    """Server name -> the Ansible inventory it was installed through (``fleet apply``)."""
    return {
        r.name: _ansible_inventory(r) for r in in_use(store)
        if r.kind == "server" and _ansible_inventory(r)
    }  # fmt: skip


def _ansible_inventory(record: Record) -> str:
    target = getattr(record.leaf_origin, "target", None)
    if not isinstance(target, AnsibleRef):
        return ""
    return target.inventory or "INVENTORY"


def _fleet_cmd(store: CAStore, inventory: str) -> str:
    import shlex

    return f"certkit fleet apply {shlex.quote(inventory)}{ca_flag(store)} --restart"


def command_for(store: CAStore, record: Record, extra: str = "") -> str:
    """The command that renews (or re-installs) ``record`` where it is used: ``fleet apply``
    for the fleet's client (it rewrites every fleet context) and the fleet's servers."""
    if (record.kind, record.name) == ("client", FLEET_CLIENT):
        return _fleet_cmd(store, next(iter(fleet_servers(store).values()), "INVENTORY"))
    if record.kind == "server" and _ansible_inventory(record):
        return _fleet_cmd(store, _ansible_inventory(record))
    return renew_command(store, record.kind, record.name, extra)


def server_reissue_hazards(store: CAStore) -> list[Record]:
    """Clients and CI certificates in use that trust only the old CA somewhere they are
    installed: a server re-issued under the new CA now would be refused by them."""
    if not store.rotation_under_way():
        return []
    new_fp = certs.fingerprint(store.load_cert())
    now = now_utc()
    return [
        r for r in in_use(store)
        if r.kind in ("client", "ci") and r.days_left(now) > 0 and rewritable(r)
        and not all(new_fp in fps for fps in copies_trust(r))
    ]  # fmt: skip


def servers_untrusting(store: CAStore) -> list[Record]:
    """Installed servers in use whose dockerd does not trust the new CA yet (during a
    rotation): a client certificate of the new CA would be refused there."""
    if not store.rotation_under_way():
        return []
    new_fp = certs.fingerprint(store.load_cert())
    now = now_utc()
    return [
        r for r in in_use(store)
        if r.kind == "server" and r.days_left(now) > 0 and r.installed
        and new_fp not in trusted(r)
    ]  # fmt: skip
