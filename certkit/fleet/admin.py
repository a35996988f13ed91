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

from dataclasses import dataclass
from pathlib import Path

from .. import certs, dockercli
from ..errors import UsageError
from ..store import CAStore

CLIENT_NAME = "certkit-fleet"


@dataclass(frozen=True)
class AdminClient:
    """The three files of the fleet's client certificate."""

    dir: Path

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


def _good(store: CAStore, admin: AdminClient, renew_within: float) -> bool:
    try:
        cert = certs.load_cert(admin.cert.read_bytes())
        key = certs.load_key(admin.key.read_bytes())
        ca_pem = admin.ca.read_bytes()
    except (OSError, UsageError):
        return False
    return (
        certs.signed_by(cert, store.load_cert())
        and certs.key_matches_cert(key, cert)
        and certs.days_left(cert) > renew_within
        and ca_pem == store.trust_bundle_pem()
    )


def ensure_admin_client(store: CAStore, renew_within: float, *, check: bool = False) -> AdminClient:
    """The fleet's client certificate, issued (or replaced) only when it is not good.

    In ``check`` mode nothing is issued: the current files are returned as they are.
    """
    admin = AdminClient(admin_dir(store))
    if check or _good(store, admin, renew_within):
        return admin
    from ..client import client_files

    client_files(CLIENT_NAME, admin.dir, ca=store.name, force=True)
    return admin


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
    tls = {f: (admin.dir / f).read_bytes() for f in dockercli.TLS_FILES}
    written, refused = [], {}
    for name, address, port in hosts:
        dockercli.validate_context_name(name)
        if _context_is(name, address, port, tls, docker_config):
            continue
        why = None if force else context_not_ours(store, name, address, port, docker_config)
        if why is not None:
            refused[name] = why
            continue
        dockercli.write_context(
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
    if written:
        dockercli.ensure_config_file(docker_config)  # docker-py needs config.json
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
