"""Taking access back: revocation, roles, the CRL, and the policy the hosts enforce.

dockerd has no CRL or OCSP and no roles (moby#27778, moby#14674): what it has is
the authorization plugin API.  This module keeps the facts in the CA's
inventory (:func:`revoke` marks a certificate revoked, :func:`set_role` gives a
client or CI identity a role) and turns them into the one policy document
certkit's plugin enforces on each host (:func:`build_policy`, pushed by
:mod:`certkit.authz.install`).  :func:`crl_pem` writes the same revocations as a
standard X.509 CRL for everything else (nginx, stunnel, auditors).

Per CA, ``cas/<name>/authz-roles.json`` (written by ``certkit policy
configure``) holds the default role for identities the policy does not know
and the custom roles (``METHOD /path`` patterns, checked by the plugin's own
code when loaded).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import files
from .authz import plugin
from .errors import UsageError
from .store import CAStore, Record, list_ca_names

if TYPE_CHECKING:
    from .inventory import StatusReport

SETTINGS_NAME = "authz-roles.json"
DEFAULT_ROLES = ("full", "deny")  # what an identity unknown to the policy may get
ROLE_KINDS = ("client", "ci")  # the certificates that identify people and jobs
REVOKE_KINDS = ("client", "ci", "server")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# ---------------------------------------------------------------- revoking


@dataclass
class Revoked:
    """What ``certkit revoke`` did: the record, and whether it was revoked before."""

    ca: str
    record: Record
    already: bool

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "ca": self.ca,
            "kind": r.kind,
            "name": r.name,
            "serial": r.serial,
            "fingerprint": r.fingerprint,
            "revoked_at": r.revoked_at,
            "reason": r.revoked_reason,
            "already_revoked": self.already,
        }


def _find(store: CAStore, what: str, kind: str | None) -> str:
    """The serial ``what`` names: a serial of this CA, else the name of a certificate in use."""
    if kind is not None and kind not in REVOKE_KINDS:
        raise UsageError(f"--kind must be one of {', '.join(REVOKE_KINDS)}, got {kind!r}.")
    inv = store.require().inventory()
    serial = what.lower().replace(":", "")
    if serial in inv:
        return serial
    found = [
        r
        for (k, _), r in inv.newest_active(name=what).items()
        if k in REVOKE_KINDS and (kind is None or k == kind)
    ]
    if not found:
        raise UsageError(
            f"CA {store.name!r} has no certificate named {what!r} and no serial {what!r}; "
            "see `certkit list`."
        )
    if len(found) > 1:
        kinds = " or ".join(sorted(r.kind for r in found))
        raise UsageError(f"{what!r} names a {kinds} certificate: say which with --kind.")
    return found[0].serial


def revoke(
    store: CAStore, what: str, reason: str | None = None, kind: str | None = None
) -> Revoked:
    """Mark the certificate ``what`` (a name or a serial) revoked now, with ``reason``.

    Revoking twice keeps the first time and reason.  Nothing is pushed here:
    the caller pushes the new policy to the hosts (:mod:`certkit.authz.install`).
    """
    if reason is not None and (not reason.strip() or len(reason) > 200 or "\n" in reason):
        raise UsageError("--reason must be one line of 1 to 200 characters.")
    serial = _find(store, what, kind)
    with store.transaction() as inv:
        rec = inv.get(serial)
        assert rec is not None  # _find saw it, and records are never deleted
        if rec.kind == "ca":
            raise UsageError("A CA certificate cannot be revoked: rotate the CA instead.")
        already = rec.revoked_at is not None
        if not already:
            rec.revoked_at = _now().isoformat()
            rec.revoked_reason = reason.strip() if reason else None
    return Revoked(store.name, rec, already)


def mark_revoked(store: CAStore, serials: list[str], reason: str | None) -> list[str]:
    """Mark the inventory's certificates among ``serials`` (OpenBao's colon-separated hex)
    revoked now, those not revoked yet; the inventory serials marked.  OpenBao revoked
    them: the policy the hosts enforce must list them too."""
    wanted = {s.replace(":", "").lower().lstrip("0") or "0" for s in serials}
    marked = []
    with store.transaction() as inv:
        for serial in sorted(wanted):
            rec = inv.get(serial)
            if rec is not None and rec.kind in REVOKE_KINDS and not rec.revoked_at:
                rec.revoked_at = _now().isoformat()
                rec.revoked_reason = reason.strip() if reason else None
                marked.append(serial)
    return marked


# ---------------------------------------------------------------- the CRL


_REASONS = {
    "keycompromise": "key_compromise",
    "affiliationchanged": "affiliation_changed",
    "superseded": "superseded",
    "cessationofoperation": "cessation_of_operation",
    "privilegewithdrawn": "privilege_withdrawn",
}


def crl_pem(store: CAStore, days: int = 7) -> tuple[bytes, int]:
    """A CRL of this CA's revoked certificates, signed through the store's signer; and its size.

    Only certificates the current CA issued are listed (a CRL speaks for its
    issuer).  A reason that is one of RFC 5280's names (``keyCompromise``,
    ``superseded``, ...) is written as the entry's reason code.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from .ca import open_signer
    from .certs import fingerprint

    if days < 1:
        raise UsageError(f"--days must be at least 1, got {days}.")
    signer = open_signer(store)
    ca_fp = fingerprint(signer.cert)
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    listed = [r for r in store.inventory().revoked() if r.issuer_fingerprint == ca_fp]
    for r in listed:
        entry = x509.RevokedCertificateBuilder().serial_number(int(r.serial, 16))
        entry = entry.revocation_date(dt.datetime.fromisoformat(r.revoked_at or now.isoformat()))
        code = _REASONS.get((r.revoked_reason or "").replace("-", "").replace(" ", "").lower())
        if code:
            flag = x509.ReasonFlags[code]
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    key = signer.key
    # The hash the CA's certificates are signed with (certs.py: Ed25519 hashes itself).
    algorithm: Any = hashes.SHA256()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = None
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        algorithm = hashes.SHA384()
    crl = builder.sign(key, algorithm)
    return crl.public_bytes(serialization.Encoding.PEM), len(listed)


# ---------------------------------------------------------------- roles


@dataclass
class Settings:
    """A CA's authz settings: the role of identities the policy does not know, custom roles."""

    default_role: str = "full"
    roles: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"default_role": self.default_role, "roles": self.roles}


def parse_settings(data: Any, source: str) -> Settings:
    """Settings from a roles file's JSON; UsageError naming ``source`` when it is wrong."""
    if not isinstance(data, dict) or not set(data) <= {"default_role", "roles"}:
        raise UsageError(
            f"{source} must be a JSON object with 'roles' (name: ['METHOD /path', ...]) "
            "and optionally 'default_role'."
        )
    default = data.get("default_role", "full")
    if default not in DEFAULT_ROLES:
        raise UsageError(f"{source}: default_role must be full or deny, got {default!r}.")
    roles = data.get("roles", {})
    try:
        if not isinstance(roles, dict):
            raise plugin.PolicyError("'roles' must map role names to lists of rules")
        for name, rules in roles.items():
            plugin.compile_role(name, rules)
    except plugin.PolicyError as e:
        raise UsageError(f"{source}: {e}.") from None
    return Settings(default, {n: list(r) for n, r in roles.items()})


def settings_path(store: CAStore) -> Path:
    return store.dir / SETTINGS_NAME


def load_settings(store: CAStore) -> Settings:
    """The CA's settings (the defaults when ``certkit policy configure`` never ran)."""
    path = settings_path(store)
    text = files.read_text(path)
    if text is None:
        return Settings()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{path} is not valid JSON ({e.msg}): fix it or configure again."
        ) from None
    return parse_settings(data, str(path))


def configure(store: CAStore, roles_file: str | None, default_role: str | None) -> Settings:
    """Replace the custom roles with ``roles_file``'s and/or set the default role."""
    settings = load_settings(store.require())
    if roles_file is not None:
        try:
            data = json.loads(Path(roles_file).read_text())
        except OSError as e:
            raise UsageError(f"Cannot read {roles_file}: {e.strerror}.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{roles_file} is not valid JSON ({e}).") from None
        new = parse_settings(data, roles_file)
        settings.roles = new.roles
        if "default_role" in data:
            settings.default_role = new.default_role
    if default_role is not None:
        if default_role not in DEFAULT_ROLES:
            raise UsageError(f"--default must be full or deny, got {default_role!r}.")
        settings.default_role = default_role
    used = set(store.inventory().roles().values()) - set(plugin.BUILTIN_ROLES)
    missing = sorted(used - set(settings.roles))
    if missing:
        raise UsageError(
            f"Role {missing[0]!r} is given to an identity but not defined in the new roles: "
            "keep it in the file."
        )
    text = json.dumps(settings.to_json(), indent=2, sort_keys=True) + "\n"
    files.atomic_write(settings_path(store), text, files.PRIVATE_FILE)
    return settings


def check_role(store: CAStore, role: str | None) -> str | None:
    """``role`` when it is built in or defined for this CA; UsageError otherwise."""
    if role is None or role in plugin.BUILTIN_ROLES:
        return role
    known = load_settings(store).roles
    if role not in known:
        names = ", ".join([*plugin.BUILTIN_ROLES, *sorted(known)])
        raise UsageError(
            f"Unknown role {role!r}; choose one of {names} "
            "(custom roles: certkit policy configure --roles FILE)."
        )
    return role


def set_role(store: CAStore, kind: str, name: str, role: str) -> None:
    """Give the ``kind`` identity ``name`` (and its renewals) ``role``."""
    check_role(store, role)
    with store.transaction() as inv:
        inv.set_role(kind, name, role, _now().isoformat())


# ---------------------------------------------------------------- the policy


def build_policy(store: CAStore) -> dict[str, Any]:
    """The policy document the hosts of this CA enforce (the plugin's format).

    Every client and CI certificate in use gives its CN an identity with its
    role (``full`` when none was set); every revoked certificate that has not
    expired is listed by fingerprint.  ``digest`` covers everything but the time
    it was generated, so a host whose digest differs is behind.
    """
    settings = load_settings(store.require())
    with store.inventory().snapshot() as inv:
        roles = inv.roles()
        in_use = inv.newest_active()
        revoked = inv.revoked()
        ca = inv.find("ca", active=True)
    now = _now()
    identities: dict[str, str] = {}
    for (kind, name), rec in sorted(in_use.items()):
        if kind in ROLE_KINDS and not rec.revoked_at:
            identities[rec.subject] = roles.get((kind, name), "full")
    body: dict[str, Any] = {
        "format": plugin.FORMAT,
        "ca": store.name,
        "ca_fingerprint": ca[-1].fingerprint if ca else "",
        "default_role": settings.default_role,
        "identities": identities,
        "roles": settings.roles,
        "revoked": [
            {
                "fingerprint": r.fingerprint,
                "serial": r.serial,
                "identity": r.subject,
                "at": r.revoked_at,
                "reason": r.revoked_reason,
            }
            for r in revoked
            if r.days_left(now) > 0  # an expired certificate fails the handshake anyway
        ],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return {
        **body,
        "digest": hashlib.sha256(canonical).hexdigest()[:16],
        "generated": now.isoformat(),
    }


def policy_text(policy: dict[str, Any]) -> str:
    """The policy file's text (what is written to the host)."""
    return json.dumps(policy, indent=2, sort_keys=True) + "\n"


def hosts_behind(store: CAStore) -> list[str]:
    """The hosts of this CA whose pushed policy is not the inventory's current one."""
    hosts = store.inventory().authz_hosts()
    if not hosts:
        return []
    digest = build_policy(store)["digest"]
    return [h for h, (_, pushed, _) in hosts.items() if pushed != digest]


def status_lines(report: StatusReport) -> tuple[dict[str, Any], list[str]]:
    """What ``certkit status`` adds: revoked certificates and hosts whose policy is behind."""
    behind = {ca: hosts_behind(CAStore(ca)) for ca in report.cas}
    lines = []
    if report.revoked:
        n = report.revoked
        lines.append(f"{n} revoked certificate{'s' if n != 1 else ''} (certkit list shows them).")
    for ca, hosts in behind.items():
        flag = "" if ca == "default" else f" --ca {ca}"
        for host in hosts:
            lines.append(f"POLICY BEHIND {host} (CA {ca}): certkit policy push {host}{flag}")
    return {"policy_behind": {ca: h for ca, h in behind.items() if h}}, lines


def all_hosts_behind(*, skip_unreadable: bool = False) -> dict[str, list[str]]:
    """:func:`hosts_behind` for every CA in the store (doctor: ``skip_unreadable``, as its
    inventory check reports a CA whose inventory or settings cannot be read)."""
    from .errors import CertkitError

    found = {}
    for ca in list_ca_names():
        try:
            hosts = hosts_behind(CAStore(ca))
        except CertkitError:
            if not skip_unreadable:
                raise
            continue
        if hosts:
            found[ca] = hosts
    return found


# ---------------------------------------------------------------- pushing


@dataclass
class PushReport:
    """What pushing the policy did: the hosts brought up to date, and those that failed."""

    digest: str
    pushed: list[Any] = field(default_factory=list)  # authz.install.Pushed
    failed: dict[str, str] = field(default_factory=dict)  # host -> why

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "pushed": [p.to_json() for p in self.pushed],
            "failed": self.failed,
        }


def _ref_json(ref: Any, plugin: str) -> dict[str, Any]:
    from . import targets

    return {**targets.ref_to_json(ref), "plugin": plugin}


def push_policy(
    store: CAStore,
    hosts: dict[str, tuple[Any, str]] | None = None,
    *,
    identity: str | None = None,
    ssh_options: tuple[str, ...] = (),
) -> PushReport:
    """Push the current policy to ``hosts`` (name -> (HostRef, plugin name)); by default to
    every host recorded for this CA.  Each host that took it is recorded with the digest.
    """
    from . import targets
    from .authz import install
    from .errors import CertkitError

    if hosts is None:
        hosts = {
            h: (
                targets.ref_from_json({k: v for k, v in ref.items() if k != "plugin"}),
                ref["plugin"],
            )
            for h, (ref, _, _) in store.inventory().authz_hosts().items()
        }
    policy = build_policy(store)
    text = policy_text(policy)
    report = PushReport(policy["digest"])

    def one(host: str) -> Any:
        ref, plugin_name = hosts[host]
        target = install.reach(ref, identity=identity, ssh_options=ssh_options)
        return install.push(target, host, text, plugin=plugin_name)

    # Hosts are independent and mostly wait on SSH: pushed side by side.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(hosts)))) as pool:
        futures = {host: pool.submit(one, host) for host in hosts}
    for host, future in futures.items():
        try:
            pushed = future.result()
        except CertkitError as e:
            report.failed[host] = e.message
            continue
        ref, plugin_name = hosts[host]
        with store.transaction() as inv:
            inv.set_authz_host(host, _ref_json(ref, plugin_name), pushed.digest, _now().isoformat())
        report.pushed.append(pushed)
    return report


def access_of(cert_pem: bytes) -> tuple[str, str] | None:
    """What the inventory says about a client certificate's access (``verify``): (status,
    message) when it is revoked or has a role other than ``full``; else None."""
    from .certs import load_cert, serial_hex

    try:
        serial = serial_hex(load_cert(cert_pem))
    except UsageError:
        return None
    for ca in list_ca_names():
        store = CAStore(ca)
        inv = store.inventory()
        rec = inv.get(serial)
        if rec is None or rec.kind not in REVOKE_KINDS:
            continue
        if rec.revoked_at:
            return "FAIL", (
                f"certificate revoked on {rec.revoked_at[:10]} (CA {ca}): hosts running "
                "certkit's plugin deny it; issue a new one"
            )
        role = inv.roles().get((rec.kind, rec.name), "full")
        if role == "full":
            return None
        return "PASS", f"role {role} where certkit's plugin runs (certkit policy show)"
    return None
