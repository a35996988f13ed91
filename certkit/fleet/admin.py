"""The fleet's administrator client certificate, and one docker context per host.

``certkit fleet apply`` keeps one client certificate of the CA in the store
(``<store>/cas/NAME/fleet-client/``: ``ca.pem``, ``cert.pem``, ``key.pem``,
the directory 0700, the key 0600).  It is the controller's credential for
checking that each host serves mutual TLS, for ``fleet verify``, and what
``--contexts`` writes into each host's docker context.  Like any other
certificate it is in the inventory, and it is replaced when it is due, no
longer from the current CA, or its ``ca.pem`` is not the trust bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .. import certs, defaults, dockercli, files, paths
from ..errors import UsageError
from ..records import Record
from ..store import CAStore

CLIENT_NAME = "certkit-fleet"


@dataclass(frozen=True)
class AdminClient:
    """The three files of the fleet's client certificate (and what ensuring it did)."""

    dir: Path
    issued: str | None = None  # the serial of a certificate issued by this run
    rewritten: tuple[str, ...] = ()  # the fleet contexts' directories rewritten with it

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.dir / "cert.pem"

    @property
    def key(self) -> Path:
        return self.dir / "key.pem"


def admin_dir(store: CAStore) -> Path:
    return store.dir / "fleet-client"


def admin_record(store: CAStore) -> Record | None:
    """The inventory's record of the fleet's client certificate in use (None: none yet)."""
    found = store.inventory().newest_active("client", CLIENT_NAME).get(("client", CLIENT_NAME))
    return None if found is None or found.revoked_at else found


def check_renew_within(renew_within: float) -> None:
    """Refuse a window as long as the fleet client's lifetime: every run would issue a new
    certificate and rewrite every context."""
    days = defaults.CLIENT_DAYS
    if renew_within >= days:
        raise UsageError(
            f"--renew-within {renew_within:g} is not below the {days}-day lifetime of the "
            "fleet's client certificate: every run would issue a new one and rewrite every "
            f"fleet context; give fewer days ({days // 3} renews it at 2/3 of its lifetime)."
        )


def _state(store: CAStore, admin: AdminClient, renew_within: float) -> str:
    """``good``, ``bundle`` (only its ca.pem is not the trust bundle) or ``issue``.

    During a CA rotation a certificate of the old CA is kept (``good``/``bundle``) while a
    fleet server still trusts only the old CA: a new one would be refused there."""
    from .. import rotation

    try:
        cert = certs.load_cert(admin.cert.read_bytes())
        key = certs.load_key(admin.key.read_bytes())
        ca_pem = admin.ca.read_bytes()
    except (OSError, UsageError):
        return "issue"
    if not certs.key_matches_cert(key, cert) or certs.days_left(cert) <= renew_within:
        return "issue"
    if not certs.signed_by(cert, store.load_cert()):
        prev = store.previous_dir / "ca.pem"
        old = store.rotation_under_way() and certs.signed_by(
            cert, certs.load_cert(prev.read_bytes())
        )
        if not old or not rotation.servers_untrusting(store):
            return "issue"
    return "good" if ca_pem == store.trust_bundle_pem() else "bundle"


def ensure_admin_client(store: CAStore, renew_within: float, *, check: bool = False) -> AdminClient:
    """The fleet's client certificate, issued (or replaced) only when it is not good, and
    written again into every fleet context recorded with it (the rotation relies on it).

    In ``check`` mode nothing is issued: the current files are returned as they are.
    """
    from ..renew import record_trust
    from ..rotation import fleet_copies

    check_renew_within(renew_within)
    admin = AdminClient(admin_dir(store))
    if check:
        return admin
    state = _state(store, admin, renew_within)
    record = admin_record(store)
    contexts = [d for d in fleet_copies(record) if d != admin.dir] if record else []
    bundle = store.trust_bundle_pem()
    if state == "issue" or record is None:
        serial = _issue(store, admin, record)
        done = _rewrite(store, contexts, _pems(admin))
        record_trust(store, serial, bundle, [str(admin.dir), *done])
        return AdminClient(admin.dir, issued=serial, rewritten=tuple(done))
    if state == "bundle":
        admin_ca = [(admin.ca, bundle, files.PUBLIC_FILE)]
        files.atomic_write_many(admin_ca)
        record_trust(store, record.serial, bundle, [])
    # Every recorded context holds the same files (one left behind is rewritten).
    pems = _pems(admin)
    behind = [d for d in contexts if _pems_of(d) != pems]
    return replace(admin, rewritten=tuple(_rewrite(store, behind, pems)))


def _issue(store: CAStore, admin: AdminClient, record: Record | None) -> str:
    """A new fleet client certificate in ``admin.dir``; its serial.

    During a CA rotation it keeps its key: the docker CLI reads a context's ``cert.pem``
    and ``key.pem`` one after the other, and a command started while they are replaced
    must not read a new certificate with the old key (measured: it happens under load).
    """
    if record is not None and store.rotation_under_way():
        from ..errors import CertkitError
        from ..renew import renew

        try:
            return renew(store, "client", CLIENT_NAME, reuse_key=True).serial
        except CertkitError:
            pass  # its key is not in the store, or its directory moved: a new one
    from ..client import client_files

    return client_files(CLIENT_NAME, admin.dir, ca=store.name, force=True).serial


def _pems(admin: AdminClient) -> tuple[bytes, bytes, bytes]:
    return admin.ca.read_bytes(), admin.cert.read_bytes(), admin.key.read_bytes()


def _pems_of(d: Path) -> tuple[bytes, ...] | None:
    try:
        return tuple((d / f).read_bytes() for f in paths.CLIENT_FILES)
    except OSError:
        return None


def _rewrite(store: CAStore, dirs: list[Path], pems: tuple[bytes, bytes, bytes]) -> list[str]:
    """Write the fleet client's files into each directory that still holds a fleet client
    certificate of this CA (a context someone else took over since is left alone)."""
    done = []
    for d in dirs:
        try:
            serial = certs.serial_hex(certs.load_cert((d / "cert.pem").read_bytes()))
        except (OSError, UsageError):
            continue
        held = store.inventory().get(serial)
        if held is None or (held.kind, held.name) != ("client", CLIENT_NAME):
            continue
        files.atomic_write_many(
            [(d / n, data, mode) for n, data, mode in files.tls_items(paths.CLIENT_FILES, *pems)]
        )
        done.append(str(d))
    return done


def existing_admin_client(store: CAStore) -> AdminClient:
    """The fleet's client certificate; UsageError when ``fleet apply`` never made one."""
    admin = AdminClient(admin_dir(store))
    if not admin.key.exists():
        hint = "" if store.name == "default" else f" --ca {store.name}"
        raise UsageError(
            f"No fleet client certificate for CA {store.name!r} yet: run "
            f"`certkit fleet apply INVENTORY{hint}` first."
        )
    return admin


def write_contexts(
    store: CAStore,
    admin: AdminClient,
    hosts: list[tuple[str, str, int]],
    docker_config: str | None = None,
    *,
    force: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """A docker context per ``(name, address, port)`` with the admin's client certificate;
    a context that already says exactly that is left alone, and one that is not the fleet's
    for that host (:func:`context_not_ours`) is left alone too unless ``force``.  The
    names written, and the names refused with why."""
    from ..renew import record_trust

    tls = {f: (admin.dir / f).read_bytes() for f in dockercli.TLS_FILES}
    written, refused, held = [], {}, []
    for name, address, port in hosts:
        dockercli.validate_context_name(name)
        if _context_is(name, address, port, tls, docker_config):
            held.append(str(dockercli.read_context(name, docker_config).tls_dir))
            continue
        why = None if force else context_not_ours(store, name, address, port, docker_config)
        if why is not None:
            refused[name] = why
            continue
        info = dockercli.write_context(
            name,
            address,
            port,
            tls["ca.pem"],
            tls["cert.pem"],
            tls["key.pem"],
            description=f"certkit fleet: {address}:{port}",
            docker_config=docker_config,
            force=True,
        )
        written.append(name)
        held.append(str(info.tls_dir))
    if written:
        dockercli.ensure_config_file(docker_config)  # docker-py needs config.json
    if held:  # in the inventory: the rotation counts and rewrites every fleet context
        serial = certs.serial_hex(certs.load_cert(tls["cert.pem"]))
        record_trust(store, serial, tls["ca.pem"], held)
    return written, refused


def context_not_ours(
    store: CAStore, name: str, address: str, port: int, docker_config: str | None
) -> str | None:
    """Why the existing context ``name`` is not the fleet's context for this host (None: it
    is, or there is none): it must point at the host's endpoint and hold a client
    certificate the fleet issued from this CA (as setup asks of its contexts)."""
    from ..names import format_host

    if not dockercli.context_exists(name, docker_config):
        return None
    info = dockercli.read_context(name, docker_config)
    endpoint = format_host(address, port)
    if info.host != endpoint:
        return (
            f"the docker context {name!r} already exists and points at {info.host}, not "
            f"{endpoint}: left alone (rename the host in the inventory, remove the context "
            "or pass --force)"
        )
    try:
        serial = certs.serial_hex(certs.load_cert((info.tls_dir / "cert.pem").read_bytes()))
    except (OSError, UsageError):
        serial = None
    record = store.inventory().get(serial) if serial else None
    if record is None or (record.kind, record.name) != ("client", CLIENT_NAME):
        return (
            f"the docker context {name!r} for {endpoint} was not written by certkit fleet "
            f"with CA {store.name!r}: left alone (remove it or pass --force)"
        )
    return None


def _context_is(
    name: str, address: str, port: int, tls: dict[str, bytes], docker_config: str | None
) -> bool:
    from ..names import format_host

    if not dockercli.context_exists(name, docker_config):
        return False
    info = dockercli.read_context(name, docker_config)
    if info.host != format_host(address, port):
        return False
    try:
        return all((info.tls_dir / f).read_bytes() == data for f, data in tls.items())
    except OSError:
        return False
