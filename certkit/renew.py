"""Renewal: re-issue a certificate the way it was first issued, and put it where the old one was.

:func:`renew` reads everything from the record's typed origin
(:mod:`certkit.origins`): same common name, SANs, key type and validity, with
a new key unless the old one is reused.  The old record is marked superseded
by the new one, then the new files go where the old ones were: a server's
into its daemon.json paths through the same
:class:`~certkit.host.target.Target` that installed it (this machine or SSH),
a client's into its docker context or ``--out`` directory, a CI certificate
into a freshly rendered secret.  ``bundle_only`` keeps the certificate and
re-installs only the trust bundle (``tlscacert`` / the context's ``ca.pem``):
the step a CA rotation needs on servers before any certificate changes.

dockerd never reloads TLS files: every step that changes a server's files
says a restart is needed, and only ``restart=True`` restarts it.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from . import certs, files, inventory, paths, placement, targets
from .ca import LeafRequest, issue_many, require_ca
from .errors import CertkitError, UsageError
from .host.target import InstallOutcome, Target, install
from .install_options import InstallOptions
from .names import parse_names
from .origins import CIOrigin, ClientOrigin, LeafOrigin, ServerOrigin, with_trust
from .paths import DEFAULT_CA
from .records import INSTALLING
from .server import installed_options
from .store import CAStore, Record
from .targets import Reach

RenewKind = Literal["server", "client", "ci"]
RENEW_KINDS: tuple[str, ...] = ("server", "client", "ci")

RESTART_NOTE = (
    "dockerd never reloads TLS files: restart it to load them "
    "(this stops running containers unless live-restore is on)"
)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ca_flag(store: CAStore) -> str:
    """`` --ca NAME`` for a CA other than the default one, else nothing."""
    return "" if store.name == DEFAULT_CA else f" --ca {shlex.quote(store.name)}"


def renew_command(store: CAStore, kind: str, name: str, extra: str = "") -> str:
    """The exact ``certkit renew`` command line for one certificate."""
    return inventory.renew_command(store.name, kind, name, extra)


# ---------------------------------------------------------------- finding records


def in_use(store: CAStore, ending_by: dt.datetime | None = None) -> list[Record]:
    """Every leaf certificate in use: the newest active one of each kind and name.

    ``ending_by`` keeps those that expire by then (found through the expiry index).
    """
    newest = store.inventory().newest_active(ending_by=ending_by)
    return [r for r in newest.values() if r.kind in RENEW_KINDS and not r.revoked_at]


def find_active(store: CAStore, kind: str, name: str) -> Record:
    """The record of the ``kind`` certificate ``name`` in use; a clear error if none."""
    if kind not in RENEW_KINDS:
        raise UsageError(f"Unknown kind {kind!r}; renew one of {', '.join(RENEW_KINDS)}.")
    found = require_ca(store).inventory().newest_active(kind, name).get((kind, name))
    if found is not None and found.revoked_at:  # never brought back by renewal
        raise UsageError(
            f"The {kind} certificate {name!r} (serial {found.serial}) was revoked on "
            f"{found.revoked_at[:10]}: renewal never re-issues it; issue a new one instead."
        )
    if found is not None:
        return found
    known = sorted(r.name for r in in_use(store) if r.kind == kind)
    hint = f" Known {kind} names: {', '.join(known)}." if known else ""
    raise UsageError(
        f"CA {store.name!r} has no {kind} certificate named {name!r} to renew; "
        f"see `certkit list --kind {kind}`.{hint}"
    )


def validity_days(record: Record) -> int:
    """The validity it was issued with: its origin's ``days``, else notAfter - notBefore."""
    days = record.leaf_origin.days
    if days is not None and days > 0:
        return days
    backdate_days = certs.BACKDATE.total_seconds() / 86400
    return max(1, round(record.lifetime_days - backdate_days))


def out_dir(record: Record) -> str | None:
    """The directory ``--out`` wrote the files to (issue-server, client --client-only, bulk)."""
    origin = record.leaf_origin
    return None if isinstance(origin, CIOrigin) else origin.out


def rewritable(record: Record) -> bool:
    """True when certkit can put a renewed certificate where this one is."""
    origin = record.leaf_origin
    return isinstance(origin, CIOrigin) or (isinstance(origin, ClientOrigin) and origin.rewritable)


def installed_trusts(record: Record) -> Iterator[list[str]]:
    """Fingerprints in each readable ``ca.pem`` installed with it on this machine (the
    fleet's client has one per docker context), read one at a time."""
    for entry in record.installed:
        path = Path(entry)
        candidate = path / "ca.pem" if path.is_dir() else path
        if candidate.name != "ca.pem" or not candidate.is_file():
            continue
        try:
            yield bundle_fingerprints(candidate.read_bytes())
        except (OSError, UsageError):
            continue


def trusted(record: Record) -> list[str]:
    """Fingerprints of the CAs it was installed to trust (its ``ca.pem``).

    Read from the installed file when it is on this machine, else what
    certkit recorded when it installed it, else just its issuer.
    """
    found = next(installed_trusts(record), None)
    if found is not None:
        return found
    return list(record.leaf_origin.trust) or [record.issuer_fingerprint]


def bundle_fingerprints(bundle_pem: bytes) -> list[str]:
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
    capped: str | None = None  # set when the validity was cut to the CA's end


def _load_stored_key(store: CAStore, record: Record) -> certs.PrivateKey:
    path = store.issued_dir(record.serial) / "key.pem"
    try:
        return certs.load_key(path.read_bytes())
    except OSError:
        raise UsageError(
            f"The key of {record.kind} {record.name!r} (serial {record.serial}) is not in the "
            f"store ({path}); renew without --reuse-key to make a new one."
        ) from None


def request_for(
    store: CAStore,
    record: Record,
    *,
    add_names: list[str] | None = None,
    reuse_key: bool = False,
    days: int | None = None,
) -> LeafRequest:
    """How to issue ``record``'s successor; bad input raises before anything is written."""
    if add_names and record.kind != "server":
        raise UsageError("--san only applies to server certificates.")
    subject_names = parse_names([*record.sans, *(add_names or [])])
    validity = certs.check_days(days) if days is not None else validity_days(record)
    origin: LeafOrigin = replace(record.leaf_origin, renewed_from=record.serial)
    if isinstance(origin, ServerOrigin) and add_names:
        origin = replace(origin, sans=tuple(subject_names.all()))
    return LeafRequest(
        kind=record.kind,  # type: ignore[arg-type]
        name=record.name,
        common_name=record.subject,
        names=subject_names if subject_names.all() else None,
        days=validity,
        key_type=record.key_type,
        key=_load_stored_key(store, record) if reuse_key else None,
        origin=origin,
    )


def reissue_many(
    store: CAStore,
    batch: list[tuple[Record, LeafRequest]],
    installing: frozenset[str] = frozenset(),
) -> list[Reissued]:
    """Issue every successor with one CA key load (one passphrase prompt), then supersede.

    The old records are marked ``superseded_by`` their successor in one
    inventory transaction, except those whose serial is in ``installing``
    (servers to re-install on their host): their successor is issued
    *installing* (in the issuance's transaction), and replaces them only once
    the host has it (:mod:`certkit.placement`).
    """
    if not batch:
        return []
    reqs = [
        replace(req, superseded_by=INSTALLING) if record.serial in installing else req
        for record, req in batch
    ]
    issued = issue_many(store, reqs)
    with store.transaction() as inv:
        for (record, _), new in zip(batch, issued, strict=True):
            if record.serial in installing:
                continue  # replaced once the host has its successor (certkit.placement)
            old = inv.get(record.serial)
            if old is not None and old.superseded_by is None:
                old.superseded_by = new.record.serial
    return [
        Reissued(record, new.record, new.cert_pem, new.key_pem, new.ca_pem, new.capped)
        for (record, _), new in zip(batch, issued, strict=True)
    ]


def record_trust(store: CAStore, serial: str, ca_pem: bytes, installed: list[str]) -> None:
    """Remember which CAs were installed as trust with client or CI certificate ``serial``,
    and where it went (a server's install is recorded by :mod:`certkit.placement`)."""
    with store.transaction() as inv:
        rec = inv.get(serial)
        if rec is not None:
            rec.origin = with_trust(rec.leaf_origin, bundle_fingerprints(ca_pem))
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
    warnings: list[str] = field(default_factory=list)  # rotation-order hazards, said first
    secret: str | None = None  # a CI secret (holds the key): printed only when asked
    trust: list[str] = field(default_factory=list)
    firewall: dict[str, Any] | None = None  # the firewall step (--allow-from), when it ran

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "secret"}


@dataclass
class ServerInstall:
    """Where and how to re-install a server certificate (``renew server`` options)."""

    install: bool | None = None  # None: re-install when the record says it was installed
    reach: Reach = field(default_factory=Reach)  # flags not given: the recorded host's
    cert_dir: str | None = None
    restart: bool = False
    dry_run: bool = False
    allow_from: tuple[str, ...] | None = None  # None: the recorded sources
    keep_containers: bool = False  # live-restore on (daemon.json + SIGHUP) before the restart
    # What an install's messages ask for, given at renewal as at the first install:
    keep_insecure: bool = False  # a new plain TCP listener appeared since: keep it
    remove_insecure: bool = False  # ... or remove it
    replace_ca: bool = False  # the host now trusts another CA: switch it (never recorded)


@dataclass
class ServerSetup:
    """A server's re-install, checked: the host (None: not installed) and the options."""

    target: Target | None
    options: InstallOptions

    def install(
        self, pems: tuple[bytes, bytes, bytes], *, dry_run: bool = False, restart: bool = False
    ) -> InstallOutcome:
        assert self.target is not None
        host_files = self.target.read_files()
        return install(
            self.target, host_files, self.options, pems, dry_run=dry_run, restart=restart
        )


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
    require_ca(store)
    if kind == "server" and not (server and server.dry_run):
        placement.settle(store, name)  # what a killed run left half-recorded, first
    record = find_active(store, kind, name)
    if bundle_only and (add_names or reuse_key or days is not None):
        raise UsageError("--bundle-only keeps the certificate: drop --san, --reuse-key and --days.")
    srv = server or ServerInstall()
    if kind == "server" and srv.dry_run:
        return _server_dry_run(store, record, srv, bundle_only, add_names)
    if kind == "ci":
        from .ci import check_format

        check_format(ci_format)
    setup = check_server_setup(store, record, srv) if kind == "server" else None
    check_destination(record)
    if bundle_only:
        cert_pem, key_pem = _stored_pair(store, record)
        fresh = Reissued(record, record, cert_pem, key_pem, store.trust_bundle_pem())
    else:
        req = request_for(store, record, add_names=add_names, reuse_key=reuse_key, days=days)
        pending = frozenset([record.serial] if setup and setup.target else [])
        fresh = reissue_many(store, [(record, req)], pending)[0]
    return put(store, fresh, setup, srv.restart, ci_format, bundle_only, reuse_key)


def put(
    store: CAStore,
    fresh: Reissued,
    setup: ServerSetup | None,
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
        trust=bundle_fingerprints(fresh.ca_pem),
    )
    if fresh.capped:
        result.notes.append(fresh.capped)
    if setup is not None:
        _put_server(store, fresh, setup, restart, result)
    elif result.kind == "client":
        _put_client(store, fresh, result)
    else:
        _put_ci(store, fresh, ci_format, result)
    return result


def _stored_pair(store: CAStore, record: Record) -> tuple[bytes, bytes]:
    pair = store.issued_pair(record.serial)
    if pair is None:
        d = store.issued_dir(record.serial)
        raise UsageError(
            f"The files of {record.kind} {record.name!r} (serial {record.serial}) are not in "
            f"the store ({d}); renew it without --bundle-only."
        )
    return pair


# ---- files handed out (--out dirs) and clients


def _out_files(record: Record) -> tuple[str, tuple[str, str, str]] | None:
    """The handed-out directory of ``record`` and its file names, if it has one."""
    origin = record.leaf_origin
    if isinstance(origin, ClientOrigin) and not (origin.host and origin.port) and origin.out:
        return origin.out, paths.CLIENT_FILES
    if isinstance(origin, ServerOrigin) and origin.out:
        return origin.out, paths.SERVER_FILES
    return None


def check_destination(record: Record) -> None:
    """Refuse, before anything is issued, a recorded ``--out`` dir certkit must not write into
    (now a link, owned by someone else, writable by others)."""
    found = _out_files(record)
    if found is not None:
        files.check_output_dir(found[0], found[1], force=True, flag="the recorded --out")


def _rewrite_out_dir(out: str, names: tuple[str, str, str], fresh: Reissued) -> list[str]:
    """Replace the three files in a handed-out directory; the key stays 0600."""
    items = files.tls_items(names, fresh.ca_pem, fresh.cert_pem, fresh.key_pem)
    written = files.write_output_dir(out, items, force=True, flag="the recorded --out")
    return [str(w) for w in written]


def _put_client(store: CAStore, fresh: Reissued, result: Renewed) -> None:
    """Rewrite the client's docker context (or its ``--out`` files) in place."""
    from .dockercli import write_context

    origin = fresh.old.leaf_origin
    assert isinstance(origin, ClientOrigin)
    if origin.host and origin.port:
        context = origin.context or fresh.record.name
        info = write_context(
            context,
            origin.host,
            origin.port,
            fresh.ca_pem,
            fresh.cert_pem,
            fresh.key_pem,
            description=origin.description or "",
            docker_config=origin.docker_config,
            force=True,
        )
        result.installed = [str(info.tls_dir)]
        result.written = [str(info.tls_dir / f) for f in paths.CLIENT_FILES]
        result.notes.append(f"docker context {context!r} updated in place; no restart needed")
    elif origin.out:
        result.installed = result.written = _rewrite_out_dir(origin.out, paths.CLIENT_FILES, fresh)
        result.notes.append("files replaced in place; no restart needed")
    else:
        d = store.issued_dir(fresh.record.serial)
        result.notes.append(f"no context or directory recorded: the new files are in {d}")
    record_trust(store, fresh.record.serial, fresh.ca_pem, result.installed)


# ---- CI


def _put_ci(store: CAStore, fresh: Reissued, fmt: str, result: Renewed) -> None:
    """Render the new CI secret (the caller prints or writes it only when asked)."""
    from .ci import Bundle, check_format, render

    origin = fresh.old.leaf_origin
    assert isinstance(origin, CIOrigin)
    bundle = Bundle(
        host=origin.host,
        port=origin.port,
        context=origin.context or fresh.record.name,
        ca=fresh.ca_pem.decode(),
        cert=fresh.cert_pem.decode(),
        key=fresh.key_pem.decode(),
        not_after=fresh.record.not_after,
    )
    result.secret = render(bundle, check_format(fmt))
    record_trust(store, fresh.record.serial, fresh.ca_pem, [])
    result.notes.append(
        "replace the CI secret with the new bundle (the old one works until it expires)"
    )


# ---- servers


def server_setup(record: Record, srv: ServerInstall) -> ServerSetup:
    """Whether to install, where, and how: the recorded install and host (reopened through
    the target registry), overridden by the flags ``srv`` carries."""
    origin = record.leaf_origin
    assert isinstance(origin, ServerOrigin)
    install_now = origin.install is not None if srv.install is None else srv.install
    reach = srv.reach
    ref = targets.from_reach(reach, origin.target)
    sandbox = getattr(ref, "sandbox", None)
    if srv.restart and sandbox and reach.root is None:
        raise UsageError(
            f"{record.name} was installed under the sandbox root {sandbox}: --restart only "
            "restarts the real dockerd; restart the sandbox's dockerd yourself."
        )
    # The method the first install chose: a renewal never switches methods.
    options = origin.install or InstallOptions()
    cert_dir = srv.cert_dir if srv.cert_dir is not None else options.cert_dir
    options = replace(
        options,
        cert_dir=cert_dir,
        keep_containers=srv.keep_containers or options.keep_containers,  # given now or recorded
        # A flag given now replaces the recorded choice (the two exclude each other).
        keep_insecure=srv.keep_insecure or (options.keep_insecure and not srv.remove_insecure),
        remove_insecure=srv.remove_insecure or (options.remove_insecure and not srv.keep_insecure),
        replace_ca=srv.replace_ca,
    )
    if srv.allow_from is not None:
        if not install_now:
            raise UsageError("--allow-from only applies when the server is (re-)installed.")
        options = replace(options, allow_from=srv.allow_from)
    if not install_now:
        if srv.restart:
            raise UsageError("--restart restarts dockerd after --install: add --install.")
        return ServerSetup(None, options)
    if reach.over_ssh_only and not isinstance(ref, targets.SSHRef):
        raise UsageError(
            "--sudo, --identity and --ssh-option only apply to servers installed over SSH."
        )
    target = targets.open_target(ref, cert_dir)
    target.check(restart=srv.restart)
    return ServerSetup(target, options)


def check_server_setup(store: CAStore, record: Record, srv: ServerInstall) -> ServerSetup:
    """The install setup, checked against the host before anything is issued."""
    setup = server_setup(record, srv)
    if setup.target is not None:  # a daemon.json the install cannot take fails now
        setup.install((store.trust_bundle_pem(), b"", b""), dry_run=True)
    return setup


def _put_server(
    store: CAStore, fresh: Reissued, setup: ServerSetup, restart: bool, result: Renewed
) -> None:
    """Install the new files where the old ones were (daemon.json paths, ``--out`` dir);
    recorded in use, replacing the old one, only once the host has them."""
    written: list[str] = []
    out = out_dir(fresh.old)
    if out:
        written += _rewrite_out_dir(out, paths.SERVER_FILES, fresh)
    target = setup.target
    options = None
    if target is not None:
        try:
            outcome = setup.install((fresh.ca_pem, fresh.cert_pem, fresh.key_pem), restart=restart)
        except CertkitError as e:
            placement.failed(store, fresh.record.serial, e, target, restart=restart)
            raise
        options = installed_options(setup.options, outcome.plan)
        _firewall_notes(result, outcome, setup.options.allow_from, dry_run=False)
        result.written = [target.where(p) for p in outcome.plan.written]
        written += [target.where(p) for p in outcome.plan.cert_paths.values()]
        result.restarted = outcome.restarted
        result.notes += outcome.plan.container_notes
        result.restart_needed = outcome.plan.restart_needed and not outcome.restarted
        if outcome.plan.restart_needed and not outcome.restarted and outcome.live_restore:
            result.notes.append("live-restore is on: containers keep running across the restart")
    result.installed = sorted(set(written))
    result.written = sorted({*result.written, *(written if out else [])})
    replaces = fresh.old.serial if fresh.old.serial != fresh.record.serial else None
    placement.installed(
        store,
        fresh.record.serial,
        result.installed,
        options=options,
        trust=bundle_fingerprints(fresh.ca_pem),
        replaces=replaces,
    )
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
        parse_names([*record.sans, *add_names])  # bad names fail now, not later
    setup = server_setup(record, srv)
    result = Renewed(
        kind="server",
        name=record.name,
        old_serial=record.serial,
        serial=record.serial if bundle_only else "(new)",
        not_after=record.not_after,
        bundle_only=bundle_only,
        reused_key=False,
        dry_run=True,
        trust=bundle_fingerprints(store.trust_bundle_pem()),
    )
    if setup.target is None:
        result.notes.append("not installed: only the store (and --out dir) would get new files")
        return result
    if bundle_only:
        cert_pem, key_pem = _stored_pair(store, record)
    else:  # placeholders: a new certificate and key always change those two files
        cert_pem, key_pem = b"", b""
    outcome = setup.install((store.trust_bundle_pem(), cert_pem, key_pem), dry_run=True)
    result.installed = [setup.target.where(p) for p in outcome.plan.cert_paths.values()]
    result.written = [setup.target.where(p) for p in outcome.plan.written]
    result.restart_needed = outcome.plan.restart_needed
    diff = outcome.plan.diff()
    result.notes.append(diff.rstrip("\n") if diff else "daemon.json and the drop-in unchanged")
    _firewall_notes(result, outcome, setup.options.allow_from, dry_run=True)
    return result


def _firewall_notes(
    result: Renewed, outcome: InstallOutcome, asked: tuple[str, ...], *, dry_run: bool
) -> None:
    """The firewall step's changes as notes (with its warnings when sources were ``asked``
    for), its plan as ``firewall``."""
    from .host.firewall import describe

    fw = outcome.plan.firewall
    if asked:
        result.notes += outcome.plan.firewall_warnings
    if fw is not None:
        result.firewall = fw.to_json()
        result.notes += describe(fw, dry_run)
