"""Renewal and CA rotation: re-issue what is due, change CAs without locking anyone out.

Renewal (:func:`renew`) re-issues a certificate the way it was first issued:
same common name, SANs, key type, validity and options, all read from its
inventory record, with a new key unless the old one is reused.  The old
record is marked superseded by the new one, then the new files go where the
old ones were: a server's certificate into its daemon.json paths
(:mod:`certkit.daemon`), a client's into its docker context
(:mod:`certkit.context`), a CI certificate into a freshly rendered secret
(:mod:`certkit.ci`).  ``bundle_only`` keeps the certificate and re-installs
only the trust bundle (``tlscacert`` / the context's ``ca.pem``): the step a
CA rotation needs on servers before any certificate changes.

CA rotation keeps two CAs alive for as long as certificates of both are in
use::

    rotate-ca start    new CA signs from now on; the old one moves to
                       cas/<name>/previous/; bundle.pem = new + old CA
    (re-install and renew everything, see RotationReport.steps)
    rotate-ca finish   bundle.pem removed; previous/ archived under
                       cas/<name>/retired/<timestamp>-<fingerprint>/

Every helper that writes a ``ca.pem`` writes :meth:`CAStore.trust_bundle_pem`,
so during a rotation servers and clients trust both CAs.  dockerd never
reloads TLS files: every step that changes a server's files says a restart
is needed, and only ``restart=True`` restarts it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from . import certs, files, names, paths
from .errors import OperationError, UsageError
from .paths import DEFAULT_CA
from .store import CAStore, Record, get_passphrase

if TYPE_CHECKING:
    from cryptography import x509

    from .ca import LeafRequest
    from .daemon import InstallOptions
    from .remote import SSH
    from .server import InstallOutcome

RenewKind = Literal["server", "client", "ci"]
RENEW_KINDS: tuple[str, ...] = ("server", "client", "ci")

RESTART_NOTE = (
    "dockerd never reloads TLS files: restart it to load them "
    "(this stops running containers unless live-restore is on)"
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _ca_flag(store: CAStore) -> str:
    return "" if store.name == DEFAULT_CA else f" --ca {shlex.quote(store.name)}"


def renew_command(store: CAStore, kind: str, name: str, extra: str = "") -> str:
    """The exact ``certkit renew`` command line for one certificate."""
    from .inventory import renew_command as command

    return command(store.name, kind, name, extra)


# ---------------------------------------------------------------- finding records


def _newest_active(records: list[Record]) -> dict[tuple[str, str], Record]:
    """The newest not-superseded record of each (kind, name): the one in use.

    Re-running ``issue-server`` or ``client-context --force`` replaces a
    certificate without marking the old record, so only the newest counts.
    """
    newest: dict[tuple[str, str], Record] = {}
    for r in records:
        if r.superseded_by:
            continue
        cur = newest.get((r.kind, r.name))
        if cur is None or (r.created, r.not_after) > (cur.created, cur.not_after):
            newest[(r.kind, r.name)] = r
    return newest


def in_use(store: CAStore) -> list[Record]:
    """Every leaf certificate in use: the newest active one of each kind and name."""
    if not store.inventory_path.exists():
        return []
    records = store.inventory().records
    return [r for r in _newest_active(records).values() if r.kind in RENEW_KINDS]


def find_active(store: CAStore, kind: str, name: str) -> Record:
    """The record of the ``kind`` certificate ``name`` in use; a clear error if none."""
    if kind not in RENEW_KINDS:
        raise UsageError(f"Unknown kind {kind!r}; renew one of {', '.join(RENEW_KINDS)}.")
    for r in in_use(store.require()):
        if r.kind == kind and r.name == name:
            return r
    known = sorted(r.name for r in in_use(store) if r.kind == kind)
    hint = f" Known {kind} names: {', '.join(known)}." if known else ""
    raise UsageError(
        f"CA {store.name!r} has no {kind} certificate named {name!r} to renew; "
        f"see `certkit list --kind {kind}`.{hint}"
    )


def _validity_days(record: Record) -> int:
    """The validity it was issued with: ``options["days"]``, else notAfter - notBefore."""
    days = record.options.get("days")
    if isinstance(days, int) and days > 0:
        return days
    backdate_days = certs.BACKDATE.total_seconds() / 86400
    return max(1, round(record.lifetime_days - backdate_days))


def _installed_trust(record: Record) -> list[str] | None:
    """Fingerprints in the ``ca.pem`` installed with it on this machine, if one is readable."""
    for entry in record.installed:
        path = Path(entry)
        candidate = path / "ca.pem" if path.is_dir() else path
        if candidate.name != "ca.pem" or not candidate.is_file():
            continue
        try:
            return _bundle_fingerprints(candidate.read_bytes())
        except (OSError, UsageError):
            continue
    return None


def _trusted(record: Record) -> list[str]:
    """Fingerprints of the CAs it was installed to trust (its ``ca.pem``).

    Read from the installed file when it is on this machine, else what
    certkit recorded when it installed it, else just its issuer.
    """
    found = _installed_trust(record)
    if found is not None:
        return found
    trust = record.options.get("trust")
    if isinstance(trust, list) and trust:
        return [str(t) for t in trust]
    return [record.issuer_fingerprint]


def _bundle_fingerprints(bundle_pem: bytes) -> list[str]:
    return [certs.fingerprint(c) for c in certs.load_certs(bundle_pem)]


# ---------------------------------------------------------------- re-issuing


@dataclass
class Reissued:
    """A certificate re-issued from its record, before its files are put in place."""

    old: Record
    record: Record
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes  # the trust bundle to install with it


def _load_stored_key(store: CAStore, record: Record) -> certs.PrivateKey:
    path = store.issued_dir(record.serial) / "key.pem"
    try:
        return certs.load_key(path.read_bytes())
    except OSError:
        raise UsageError(
            f"The key of {record.kind} {record.name!r} (serial {record.serial}) is not in the "
            f"store ({path}); renew without --reuse-key to make a new one."
        ) from None


def _request_for(
    store: CAStore,
    record: Record,
    *,
    add_names: list[str] | None = None,
    reuse_key: bool = False,
    days: int | None = None,
) -> LeafRequest:
    """How to issue ``record``'s successor; bad input raises before anything is written."""
    from .ca import LeafRequest

    if add_names and record.kind != "server":
        raise UsageError("--san only applies to server certificates.")
    subject_names = names.parse_names([*record.sans, *(add_names or [])])
    validity = certs.check_days(days) if days is not None else _validity_days(record)
    options = {**record.options, "renewed_from": record.serial}
    if record.kind == "server" and add_names:
        options["sans"] = subject_names.all()
    return LeafRequest(
        kind=record.kind,  # type: ignore[arg-type]
        name=record.name,
        common_name=record.subject,
        names=subject_names if subject_names.all() else None,
        days=validity,
        key_type=record.key_type,
        key=_load_stored_key(store, record) if reuse_key else None,
        options=options,
    )


def reissue_many(store: CAStore, batch: list[tuple[Record, LeafRequest]]) -> list[Reissued]:
    """Issue every successor with one CA key load (one passphrase prompt), then supersede.

    The old records are marked ``superseded_by`` their successor in one
    inventory transaction.
    """
    from .ca import issue_many

    if not batch:
        return []
    issued = issue_many(store, [req for _, req in batch])
    with store.transaction() as inv:
        for (record, _), new in zip(batch, issued, strict=True):
            old = inv.get(record.serial)
            if old is not None and old.superseded_by is None:
                old.superseded_by = new.record.serial
    return [
        Reissued(record, new.record, new.cert_pem, new.key_pem, new.ca_pem)
        for (record, _), new in zip(batch, issued, strict=True)
    ]


def reissue(
    store: CAStore,
    record: Record,
    *,
    add_names: list[str] | None = None,
    reuse_key: bool = False,
    days: int | None = None,
) -> Reissued:
    """Issue ``record``'s successor from the current CA and mark ``record`` superseded.

    Same CN, SANs (plus ``add_names``), key type, validity and options; a
    new key unless ``reuse_key`` (then the key kept in the store is used).
    Bad input raises before anything is written.
    """
    req = _request_for(store, record, add_names=add_names, reuse_key=reuse_key, days=days)
    return reissue_many(store, [(record, req)])[0]


def _record_trust(store: CAStore, serial: str, ca_pem: bytes, installed: list[str]) -> None:
    """Remember which CAs were installed as trust with ``serial``, and where it went."""
    with store.transaction() as inv:
        rec = inv.get(serial)
        if rec is not None:
            rec.options["trust"] = _bundle_fingerprints(ca_pem)
            rec.installed = sorted({*rec.installed, *installed})


# ---------------------------------------------------------------- renewing


@dataclass
class Renewed:
    """The outcome of one renewal (or bundle-only re-install)."""

    kind: str
    name: str
    old_serial: str
    serial: str
    not_after: str
    bundle_only: bool
    reused_key: bool
    installed: list[str] = field(default_factory=list)  # where its files are
    written: list[str] = field(default_factory=list)  # the files that changed
    restart_needed: bool = False
    restarted: bool = False
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)
    secret: str | None = None  # a CI secret (holds the key): printed only when asked
    trust: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "secret"}
        return data


@dataclass
class ServerInstall:
    """Where and how to re-install a server certificate (``renew server`` options)."""

    install: bool | None = None  # None: re-install when the record says it was installed
    root: str | None = None
    cert_dir: str | None = None
    restart: bool = False
    dry_run: bool = False
    ssh: str | None = None  # [USER@]HOST[:PORT]; default: the one it was installed with
    identity: str | None = None
    ssh_options: tuple[str, ...] = ()


def renew(
    store: CAStore,
    kind: str,
    name: str,
    *,
    add_names: list[str] | None = None,
    reuse_key: bool = False,
    days: int | None = None,
    bundle_only: bool = False,
    server: ServerInstall | None = None,
    ci_format: str = "bundle",
) -> Renewed:
    """Renew the ``kind`` certificate ``name`` and put the new files where the old ones were.

    ``bundle_only`` issues nothing: the certificate in use is re-installed
    with the current trust bundle (during a CA rotation).  For servers,
    ``server`` says whether and where to install and whether to restart.
    """
    store.require()
    record = find_active(store, kind, name)
    if bundle_only and (add_names or reuse_key or days is not None):
        raise UsageError("--bundle-only keeps the certificate: drop --san, --reuse-key and --days.")
    srv = server or ServerInstall()
    if kind == "server" and srv.dry_run:
        return _server_dry_run(store, record, srv, bundle_only, add_names)
    if kind == "ci":
        from .ci import check_format

        check_format(ci_format)
    setup = _check_server_install(store, record, srv) if kind == "server" else None
    if bundle_only:
        cert_pem, key_pem = _stored_pair(store, record)
        fresh = Reissued(record, record, cert_pem, key_pem, store.trust_bundle_pem())
    else:
        fresh = reissue(store, record, add_names=add_names, reuse_key=reuse_key, days=days)
    result = _put(store, fresh, setup, srv.restart, ci_format, bundle_only, reuse_key)
    if kind == "server" and not bundle_only and rotation_under_way(store):
        result.notes += _lockout_warning(store)
    return result


def _lockout_warning(store: CAStore) -> list[str]:
    """A warning when clients that trust only the old CA will refuse a new-CA server."""
    new_fp = certs.fingerprint(store.load_cert())
    now = _now()
    stuck = [
        r
        for r in in_use(store)
        if r.kind in ("client", "ci")
        and r.days_left(now) > 0
        and (r.kind == "ci" or r.options.get("host") or _out_dir(r))
        and new_fp not in _trusted(r)
    ]
    if not stuck:
        return []
    names = ", ".join(f"{r.kind} {r.name}" for r in stuck)
    commands = "; ".join(renew_command(store, r.kind, r.name) for r in stuck)
    verb = "trusts" if len(stuck) == 1 else "trust"
    return [
        f"Warning: {names} still {verb} only the old CA and will refuse this server once "
        f"dockerd loads the new certificate; renew before the restart: {commands}"
    ]


def _put(
    store: CAStore,
    fresh: Reissued,
    setup: InstallSetup | None,
    restart: bool,
    ci_format: str,
    bundle_only: bool,
    reused_key: bool,
) -> Renewed:
    """Put ``fresh`` where its predecessor was, by kind; the outcome to report."""
    result = Renewed(
        kind=fresh.record.kind,
        name=fresh.record.name,
        old_serial=fresh.old.serial,
        serial=fresh.record.serial,
        not_after=fresh.record.not_after,
        bundle_only=bundle_only,
        reused_key=reused_key,
        trust=_bundle_fingerprints(fresh.ca_pem),
    )
    if setup is not None:
        _put_server(store, fresh, setup, restart, result)
    elif result.kind == "client":
        _put_client(store, fresh, result)
    else:
        _put_ci(store, fresh, ci_format, result)
    return result


def _stored_pair(store: CAStore, record: Record) -> tuple[bytes, bytes]:
    d = store.issued_dir(record.serial)
    try:
        return (d / "cert.pem").read_bytes(), (d / "key.pem").read_bytes()
    except OSError:
        raise UsageError(
            f"The files of {record.kind} {record.name!r} (serial {record.serial}) are not in "
            f"the store ({d}); renew it without --bundle-only."
        ) from None


# ---- files handed out (--out dirs) and clients


def _out_dir(record: Record) -> str | None:
    """The directory ``--out`` wrote the files to (issue-server, client --client-only, bulk)."""
    out = record.options.get("out") or record.options.get("out_dir")
    return str(out) if out else None


def _rewrite_out_dir(out: str, names: tuple[str, str, str], fresh: Reissued) -> list[str]:
    """Replace the three files in a handed-out directory; the key stays 0600."""
    d = files.ensure_dir(Path(out), files.PRIVATE_DIR) if not Path(out).exists() else Path(out)
    written = files.atomic_write_many(
        files.tls_files(d, names, fresh.ca_pem, fresh.cert_pem, fresh.key_pem)
    )
    return [str(w) for w in written]


def _put_client(store: CAStore, fresh: Reissued, result: Renewed) -> None:
    """Rewrite the client's docker context (or its ``--out`` files) in place."""
    from .context import write_context

    opts = fresh.old.options
    host, port = opts.get("host"), opts.get("port")
    out = _out_dir(fresh.old)
    if host and port:
        context = str(opts.get("context") or fresh.record.name)
        info = write_context(
            context,
            str(host),
            int(port),
            fresh.ca_pem,
            fresh.cert_pem,
            fresh.key_pem,
            description=str(opts.get("description") or ""),
            docker_config=opts.get("docker_config"),
            force=True,
        )
        result.installed = [str(info.tls_dir)]
        result.written = [str(info.tls_dir / f) for f in paths.CLIENT_FILES]
        result.notes.append(f"docker context {context!r} updated in place; no restart needed")
    elif out:
        result.installed = result.written = _rewrite_out_dir(out, paths.CLIENT_FILES, fresh)
        result.notes.append("files replaced in place; no restart needed")
    else:
        d = store.issued_dir(fresh.record.serial)
        result.notes.append(f"no context or directory recorded: the new files are in {d}")
    _record_trust(store, fresh.record.serial, fresh.ca_pem, result.installed)


# ---- CI


def _put_ci(store: CAStore, fresh: Reissued, fmt: str, result: Renewed) -> None:
    """Render the new CI secret (the caller prints or writes it only when asked)."""
    from .ci import Bundle, check_format, render

    opts = fresh.old.options
    bundle = Bundle(
        host=str(opts.get("host", "")),
        port=int(opts.get("port", 2376)),
        context=str(opts.get("context", fresh.record.name)),
        ca=fresh.ca_pem.decode(),
        cert=fresh.cert_pem.decode(),
        key=fresh.key_pem.decode(),
        not_after=fresh.record.not_after,
    )
    result.secret = render(bundle, check_format(fmt))
    _record_trust(store, fresh.record.serial, fresh.ca_pem, [])
    result.notes.append(
        "replace the CI secret with the new bundle (the old one works until it expires)"
    )


# ---- servers


@dataclass
class InstallSetup:
    """Whether and where a server certificate is re-installed: this host, or over SSH."""

    install: bool
    system: paths.SystemPaths
    options: InstallOptions
    ssh: SSH | None = None

    def install_files(
        self,
        ca_pem: bytes,
        cert_pem: bytes,
        key_pem: bytes,
        *,
        dry_run: bool = False,
        restart: bool = False,
    ) -> InstallOutcome:
        """Plan (and unless ``dry_run`` write) the install, locally or over SSH."""
        from .server import install_local

        if self.ssh is None:
            return install_local(
                self.system, self.options, ca_pem, cert_pem, key_pem,
                dry_run=dry_run, restart=restart,
            )  # fmt: skip
        from .remote import install_remote

        return install_remote(
            self.ssh, self.system, self.options, ca_pem, cert_pem, key_pem,
            dry_run=dry_run, restart=restart,
        )  # fmt: skip

    def where(self, path: str) -> str:
        """How an installed path is recorded: ``TARGET:PATH`` over SSH, as issue-server does."""
        return f"{self.ssh.target}:{path}" if self.ssh else path


def _install_setup(record: Record, srv: ServerInstall) -> InstallSetup:
    """Whether to install, where, and how: the recorded install, overridden by ``srv``."""
    from .daemon import InstallOptions
    from .server import _check_install_args

    opts = record.options
    install = bool(opts.get("install")) if srv.install is None else srv.install
    root = srv.root if srv.root is not None else opts.get("root")
    cert_dir = srv.cert_dir if srv.cert_dir is not None else opts.get("cert_dir")
    if srv.restart and root and srv.root is None:
        raise UsageError(
            f"{record.name} was installed under the sandbox root {root}: --restart only "
            "restarts the real dockerd; restart the sandbox's dockerd yourself."
        )
    ssh = _ssh_for(record, srv) if install else None
    if ssh is None:
        _check_install_args(install, root, srv.restart)
    elif srv.restart and root:
        raise UsageError("--restart restarts the real dockerd, so it cannot go with --root.")
    options = InstallOptions(
        listen=str(opts.get("listen", InstallOptions.listen)),
        port=int(opts.get("port", InstallOptions.port)),
        cert_dir=cert_dir,
        # The method the first install chose: a renewal never switches methods.
        method=str(opts.get("method") or "auto"),
        keep_insecure=bool(opts.get("keep_insecure", False)),
        remove_insecure=bool(opts.get("remove_insecure", False)),
    )
    if ssh is not None:
        from .remote import remote_paths

        return InstallSetup(install, remote_paths(root, cert_dir), options, ssh)
    return InstallSetup(install, paths.system_paths(root, cert_dir), options)


def _ssh_for(record: Record, srv: ServerInstall) -> SSH | None:
    """The SSH connection of a server installed with ``--ssh`` (or given now), else None."""
    target = srv.ssh or record.options.get("ssh")
    if not target:
        if srv.identity or srv.ssh_options:
            raise UsageError(
                "--identity and --ssh-option only apply to servers installed over SSH."
            )
        return None
    from .remote import SSH

    return SSH.build(
        str(target),
        identity=srv.identity,
        options=list(srv.ssh_options),
        sudo=bool(record.options.get("sudo", False)),
    )


def _check_server_install(store: CAStore, record: Record, srv: ServerInstall) -> InstallSetup:
    """The install setup, checked against the host before anything is issued."""
    setup = _install_setup(record, srv)
    if setup.install:  # a daemon.json the install cannot take fails now (placeholder PEMs)
        setup.install_files(store.trust_bundle_pem(), b"", b"", dry_run=True)
    return setup


def _put_server(
    store: CAStore, fresh: Reissued, setup: InstallSetup, restart: bool, result: Renewed
) -> None:
    """Install the new files where the old ones were (daemon.json paths, ``--out`` dir)."""
    written: list[str] = []
    out = _out_dir(fresh.old)
    if out:
        written += _rewrite_out_dir(out, paths.SERVER_FILES, fresh)
    if setup.install:
        outcome = setup.install_files(fresh.ca_pem, fresh.cert_pem, fresh.key_pem, restart=restart)
        result.written = [setup.where(p) for p in outcome.plan.written]
        written += [setup.where(p) for p in outcome.plan.cert_paths.values()]
        result.restarted = outcome.restarted
        result.restart_needed = outcome.plan.restart_needed and not outcome.restarted
        if outcome.plan.restart_needed and not outcome.restarted and outcome.live_restore:
            result.notes.append("live-restore is on: containers keep running across the restart")
    result.installed = sorted(set(written))
    result.written = sorted({*result.written, *(written if out else [])})
    _record_trust(store, fresh.record.serial, fresh.ca_pem, result.installed)
    if not written:
        d = store.issued_dir(fresh.record.serial)
        result.notes.append(
            f"not installed anywhere: copy {d}/cert.pem and key.pem to the host "
            "(or renew with --install on the host)"
        )


def _server_dry_run(
    store: CAStore,
    record: Record,
    srv: ServerInstall,
    bundle_only: bool,
    add_names: list[str] | None,
) -> Renewed:
    """What renewing would change on the host; nothing is issued or written."""
    if add_names:
        names.parse_names([*record.sans, *add_names])  # bad names fail now, not later
    setup = _install_setup(record, srv)
    result = Renewed(
        kind="server",
        name=record.name,
        old_serial=record.serial,
        serial=record.serial if bundle_only else "(new)",
        not_after=record.not_after,
        bundle_only=bundle_only,
        reused_key=False,
        dry_run=True,
        trust=_bundle_fingerprints(store.trust_bundle_pem()),
    )
    if not setup.install:
        result.notes.append("not installed: only the store (and --out dir) would get new files")
        return result
    if bundle_only:
        cert_pem, key_pem = _stored_pair(store, record)
    else:  # placeholders: a new certificate and key always change those two files
        cert_pem, key_pem = b"", b""
    outcome = setup.install_files(store.trust_bundle_pem(), cert_pem, key_pem, dry_run=True)
    result.installed = [setup.where(p) for p in outcome.plan.cert_paths.values()]
    result.written = [setup.where(p) for p in outcome.plan.written]
    result.restart_needed = outcome.plan.restart_needed
    diff = outcome.plan.diff()
    result.notes.append(diff.rstrip("\n") if diff else "daemon.json and the drop-in unchanged")
    return result


# ---------------------------------------------------------------- renew --expiring-within


@dataclass
class DueReport:
    """What ``renew --expiring-within DAYS`` found and did."""

    within_days: float
    due: list[dict[str, Any]]
    renewed: list[Renewed]
    failed: list[dict[str, str]]
    ca_due: list[dict[str, Any]]
    dry_run: bool

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "within_days": self.within_days,
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
    now = now or _now()
    return sorted(
        (r for r in in_use(store) if r.due_within(within_days, now)),
        key=lambda r: r.days_left(now),
    )


def renew_due(
    store: CAStore,
    within_days: float,
    *,
    restart: bool = False,
    dry_run: bool = False,
    progress: Callable[[Renewed], None] | None = None,
) -> DueReport:
    """Renew every certificate in use expiring within ``within_days`` the way it was issued.

    Servers are re-installed where they were installed (restarted only with
    ``restart``); contexts are rewritten; CI secrets are re-issued and listed
    (their bundles are not printed: run ``certkit renew ci NAME`` for each).
    One failure does not stop the others; it is reported.
    """
    store.require()
    now = _now()
    records = due(store, within_days, now)
    ca_due = []
    ca_cert = store.load_cert()
    if certs.days_left(ca_cert, now) <= within_days:
        ca_due.append(
            {
                "ca": store.name,
                "not_after": ca_cert.not_valid_after_utc.isoformat(),
                "command": f"certkit rotate-ca start{_ca_flag(store)}",
            }
        )
    listing = [
        {
            "kind": r.kind,
            "name": r.name,
            "serial": r.serial,
            "not_after": r.not_after,
            "days_left": round(r.days_left(now), 1),
            "command": renew_command(store, r.kind, r.name),
        }
        for r in records
    ]
    report = DueReport(within_days, listing, [], [], ca_due, dry_run)
    if dry_run:
        return report
    batch: list[tuple[Record, LeafRequest]] = []
    setups: dict[str, InstallSetup | None] = {}
    for r in records:  # everything checked first: a refused install issues nothing
        try:
            setups[r.serial] = (
                _check_server_install(store, r, ServerInstall(restart=restart))
                if r.kind == "server"
                else None
            )
            batch.append((r, _request_for(store, r)))
        except (UsageError, OperationError) as e:
            report.failed.append({"kind": r.kind, "name": r.name, "error": e.message})
    for fresh in reissue_many(store, batch):
        try:
            done = _put(store, fresh, setups[fresh.old.serial], restart, "bundle", False, False)
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


# ---------------------------------------------------------------- CA rotation


@dataclass
class CASummary:
    """One CA certificate, as the rotation commands show it."""

    subject: str
    fingerprint: str
    key_type: str
    not_after: str
    path: str

    @classmethod
    def of(cls, cert: x509.Certificate, path: Path) -> CASummary:
        return cls(
            subject=certs.common_name(cert),
            fingerprint=certs.fingerprint(cert),
            key_type=_key_type(cert),
            not_after=cert.not_valid_after_utc.isoformat(),
            path=str(path),
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
        from dataclasses import asdict

        return asdict(self)


def rotation_under_way(store: CAStore) -> bool:
    return (store.previous_dir / "ca.pem").exists()


def _key_type(cert: x509.Certificate) -> str:
    return certs.key_type_of(cast(certs.PublicKey, cert.public_key()))


def _previous_cert(store: CAStore) -> x509.Certificate | None:
    path = store.previous_dir / "ca.pem"
    if not path.exists():
        return None
    return certs.load_cert(path.read_bytes())


_STAMP_SUFFIX = re.compile(r" \d{8}(T\d{6}Z)?$")


def _next_common_name(old_cn: str, now: dt.datetime) -> str:
    """``certkit CA prod 20261127``: the old name with a date, so the two CAs differ by name."""
    base = _STAMP_SUFFIX.sub("", old_cn)[:40]
    cn = f"{base} {now:%Y%m%d}"
    return cn if cn != old_cn else f"{base} {now:%Y%m%dT%H%M%SZ}"


def start_rotation(
    store: CAStore,
    *,
    key_type: str | None = None,
    common_name: str | None = None,
    days: int = 3650,
) -> RotationReport:
    """Make the next CA: it signs from now on; both CAs are trusted until :func:`finish_rotation`.

    The old CA moves to ``previous/`` (kept as is, key included); the new
    key has the old one's key type unless ``key_type``, and is encrypted
    with the same passphrase when the old one was.  ``bundle.pem`` gets the
    new CA certificate followed by the old one.
    """
    store.require()
    if rotation_under_way(store):
        raise UsageError(
            f"A rotation of CA {store.name!r} is already under way; see "
            f"`certkit rotate-ca status{_ca_flag(store)}` and finish it first."
        )
    old_cert = store.load_cert()
    kt = certs.check_key_type(key_type or _key_type(old_cert))
    certs.check_days(days)
    old_key_pem = store.key_path.read_bytes()
    passphrase: bytes | None = None
    if certs.is_encrypted_pem(old_key_pem):
        passphrase = get_passphrase()
        certs.load_key(old_key_pem, passphrase)  # a wrong passphrase stops here
    now = _now()
    key = certs.generate_key(kt)
    cn = common_name or _next_common_name(certs.common_name(old_cert), now)
    new_cert = certs.make_ca(key, cn, days)
    old_pem = certs.cert_pem(old_cert)
    new_pem = certs.cert_pem(new_cert)
    with store.lock():
        if rotation_under_way(store):
            raise UsageError(f"A rotation of CA {store.name!r} started meanwhile; see its status.")
        files.ensure_dir(store.previous_dir)
        # The old CA is safe in previous/ before anything else changes.
        files.atomic_write_many(
            [
                (store.previous_dir / "ca-key.pem", old_key_pem, files.PRIVATE_FILE),
                (store.previous_dir / "ca.pem", old_pem, files.PUBLIC_FILE),
            ]
        )
        files.atomic_write_many(
            [
                (store.bundle_path, new_pem + old_pem, files.PUBLIC_FILE),
                (store.key_path, certs.key_pem(key, passphrase), files.PRIVATE_FILE),
                (store.cert_path, new_pem, files.PUBLIC_FILE),
            ]
        )
    _record_new_ca(store, new_cert, old_cert)
    return rotation_status(store, started=True)


def _record_new_ca(store: CAStore, new_cert: x509.Certificate, old_cert: x509.Certificate) -> None:
    from .ca import _record

    new = _record(new_cert, "ca", store.name, _key_type(new_cert), new_cert)
    new.options = {"rotated_from": certs.fingerprint(old_cert)}
    old_fp = certs.fingerprint(old_cert)
    with store.transaction() as inv:
        for r in inv.records:
            if r.kind == "ca" and r.fingerprint == old_fp and r.superseded_by is None:
                r.superseded_by = new.serial
        inv.add(new)


def rotation_status(store: CAStore, *, started: bool = False) -> RotationReport:
    """What still depends on the previous CA, and the next steps in order."""
    store.require()
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
    now = _now()
    out = []
    for r in sorted(in_use(store), key=lambda r: (RENEW_KINDS.index(r.kind), r.name)):
        if r.issuer_fingerprint != old_fp or r.days_left(now) <= 0:
            continue
        trusts_new = new_fp in _trusted(r)
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
                renew_command(store, r.kind, r.name),
                why,
            )
        )
    return out


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
        if _trusted(r) == [current_fp]:
            continue
        if r.kind == "client" and not (r.options.get("host") or _out_dir(r)):
            continue  # nothing certkit could rewrite
        cmd = renew_command(store, r.kind, r.name, extra[r.kind])
        out.append(
            Dependent(r.kind, r.name, r.serial, r.not_after, list(r.installed), cmd, why[r.kind])
        )
    return out


def _rotation_steps(store: CAStore, report: RotationReport, new_fp: str) -> None:
    """The order that never locks anyone out, as commands for what is left."""
    servers = [d for d in report.dependents if d.kind == "server"]
    untrusting = [d for d in servers if "does not trust" in d.why]
    clients = [d for d in report.dependents if d.kind != "server"]
    steps: list[str] = []
    if untrusting:
        steps.append(
            "1. Make every server trust both CAs (keeps its certificate; dockerd must restart):"
        )
        steps += [f"     {_server_cmd(store, d.name, ' --bundle-only')}" for d in untrusting]
    if clients:
        steps.append("2. Renew clients and CI under the new CA (their ca.pem trusts both CAs):")
        steps += [f"     {d.command}" for d in clients]
    if servers:
        steps.append("3. Renew servers under the new CA (dockerd must restart):")
        steps += [f"     {_server_cmd(store, d.name, '')}" for d in servers]
    steps.append(
        ("4. " if report.dependents else "Nothing depends on the old CA any more. Next: ")
        + f"certkit rotate-ca finish{_ca_flag(store)}"
    )
    report.steps = steps
    report.restart_needed = bool(servers)


def _server_cmd(store: CAStore, name: str, extra: str) -> str:
    return renew_command(store, "server", name, f"{extra} --restart")


def _after_finish_steps(store: CAStore, report: RotationReport) -> None:
    servers = [d for d in report.reinstall if d.kind == "server"]
    contexts = [d for d in report.reinstall if d.kind == "client"]
    secrets = [d for d in report.reinstall if d.kind == "ci"]
    steps: list[str] = []
    if servers:
        steps.append("Re-install tlscacert on servers (dockerd must restart to drop the old CA):")
        steps += [f"     {_server_cmd(store, d.name, ' --bundle-only')}" for d in servers]
    if contexts:
        steps.append("Re-write the contexts' ca.pem (no restart needed):")
        steps += [f"     {d.command}" for d in contexts]
    if secrets:
        steps.append("Update the CI secrets (their bundle still trusts the old CA):")
        steps += [f"     {d.command} | gh secret set CERTKIT_BUNDLE" for d in secrets]
    report.steps = steps
    report.restart_needed = bool(servers)


def finish_rotation(store: CAStore, *, force: bool = False) -> RotationReport:
    """Drop the previous CA from the trust bundle and archive it (never delete it).

    Refused (exit 1, with the list) while a certificate in use still depends
    on the previous CA, unless ``force``.  Afterwards servers and contexts
    still hold the two-CA ``ca.pem`` until re-installed: the report lists them.
    """
    store.require()
    prev = _previous_cert(store)
    if prev is None:
        raise UsageError(
            f"No rotation of CA {store.name!r} is under way; start one with "
            f"`certkit rotate-ca start{_ca_flag(store)}`."
        )
    status = rotation_status(store)
    if status.dependents and not force:
        lines = "; ".join(f"{d.kind} {d.name} ({d.command})" for d in status.dependents)
        raise OperationError(
            f"{len(status.dependents)} certificate(s) in use still depend on the old CA of "
            f"{store.name!r}: {lines}. Renew them first, or pass --force to cut them off."
        )
    stamp = _now().strftime("%Y%m%dT%H%M%SZ")
    fp = certs.fingerprint(prev).replace(":", "")[:16].lower()
    with store.lock():
        files.ensure_dir(store.retired_dir)
        archive = store.retired_dir / f"{stamp}-{fp}"
        # bundle.pem first: once it is gone, every ca.pem written is the new CA alone.
        store.bundle_path.unlink(missing_ok=True)
        os.rename(store.previous_dir, archive)
        files.ensure_dir(archive)  # tighten to 0700 if it ever was not
    report = rotation_status(store)
    report.state = "finished"
    report.previous = CASummary.of(prev, archive / "ca.pem")
    report.archived = str(archive)
    report.dependents = status.dependents  # cut off by --force
    return report
