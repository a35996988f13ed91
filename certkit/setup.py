"""``certkit setup``: the whole job for one Docker host, in one idempotent step.

What a new user otherwise does in three commands (``init-ca``,
``issue-server --install``, ``client-context --use``), each step skipped when
its result is already there:

1. the CA, created when the store has none;
2. the server certificate, issued and installed (:func:`certkit.server.issue_server`)
   unless the host already runs a current certificate of this CA that covers
   every name, with exactly the files and configuration an install would write;
3. the client context, written and selected (:func:`certkit.client.client_context`)
   unless it already holds a current certificate of this CA for that endpoint;
4. ``verify`` when dockerd was restarted (or ``--restart`` found nothing to change).

Every input is checked, and the host's configuration read, before the CA is
created: a refused host leaves nothing behind.  A second run changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import dockercli, paths
from .ca import init_ca, one_signer
from .client import ClientResult, client_context
from .errors import UsageError
from .files import StrPath
from .host.target import Target, install
from .install_options import InstallOptions
from .inventory import Item, list_items
from .nameclaims import check_names_free
from .names import format_host
from .server import ServerResult, issue_server, server_names
from .sqlitefiles import kept_open
from .store import CAStore

if TYPE_CHECKING:
    from .host.hostfiles import HostFiles
    from .verify import Report


@dataclass
class SetupResult:
    """What ``setup`` found, and what it changed (``None``: that step had nothing to do)."""

    host: str
    names: list[str]
    endpoint: str  # tcp://HOST:PORT
    ca: str
    context: str
    ca_created: bool = False
    server: ServerResult | None = None
    server_current: Item | None = None
    client: ClientResult | None = None
    client_current: Item | None = None
    selected: bool = False  # the context was made current by this run
    verify: Report | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.ca_created or self.server or self.client or self.selected)

    @property
    def restarted(self) -> bool:
        return bool(self.server and self.server.install and self.server.install.restarted)

    @property
    def restart_needed(self) -> bool:
        return bool(self.server and self.server.restart_needed)

    @property
    def ok(self) -> bool:
        return self.verify is None or self.verify.ok

    def to_json(self) -> dict[str, Any]:
        srv, cli = self.server_current, self.client_current
        return {
            "ok": self.ok,
            "changed": self.changed,
            "host": self.host,
            "names": self.names,
            "endpoint": self.endpoint,
            "ca": {"name": self.ca, "created": self.ca_created},
            "server": self.server.to_json() if self.server else None,
            "server_unchanged": srv.to_json() if srv else None,
            "context": {
                "name": self.context,
                "written": self.client is not None,
                "selected_now": self.selected,
                "client": self.client.to_json() if self.client else None,
                "unchanged": cli.to_json() if cli else None,
            },
            "restarted": self.restarted,
            "restart_needed": self.restart_needed,
            "verify": self.verify.to_json() if self.verify else None,
            "warnings": self.warnings,
        }


def setup(
    host: str,
    target: Target,
    *,
    context: str | None = None,
    sans: list[str] | None = None,
    options: InstallOptions | None = None,
    ca: str = paths.DEFAULT_CA,
    restart: bool = False,
    docker_config: StrPath | None = None,
    names_moved: bool = False,
) -> SetupResult:
    """Make ``host`` reachable over mutual TLS through docker context ``context``.

    ``target`` is where dockerd runs (:func:`certkit.targets.open_target`);
    ``context`` defaults to the first label of ``host``.  Steps whose result
    is already in place are skipped, so running it again changes nothing.

    >>> from certkit.targets import SSHRef, open_target
    >>> r = setup("docker1.example.com", open_target(SSHRef("root@docker1")))  # doctest: +SKIP
    >>> r.changed, r.context  # doctest: +SKIP
    (True, 'docker1')
    """
    opts = options or InstallOptions()
    primary, names = server_names(host, list(sans or []))
    name = dockercli.validate_context_name(context) if context else None
    name = name or dockercli.default_name_for(primary)
    endpoint = format_host(primary, opts.port)
    config_dir = paths.docker_config_dir(docker_config)
    dockercli.check_writable(config_dir)
    target.check(restart=restart)
    if restart:  # the endpoint is verified at the end: a name nobody can reach fails there
        _check_resolves(primary, opts.port)
    store = CAStore(ca)
    _check_context_is_ours(store, name, endpoint, config_dir)
    check_names_free(store, primary, names.all(), moved=names_moved)
    host_files = target.read_files()
    # Refuse a host certkit will not touch before the CA exists (placeholders for the PEMs).
    install(target, host_files, opts, (b"", b"", b""), dry_run=True)

    result = SetupResult(primary, names.all(), endpoint, ca, name)
    # One inventory connection and one opening of the CA key for every step.
    with kept_open(), one_signer():
        if not store.exists():
            init_ca(ca)
            result.ca_created = True
        result.server_current = _current_server(
            store, primary, names.all(), target, host_files, opts
        )
        if result.server_current is None:
            result.server = issue_server(
                store, host, target, sans=list(sans or []), options=opts, restart=restart,
                names_moved=names_moved,
            )  # fmt: skip
            if result.server.install is not None:
                result.warnings += result.server.install.plan.warnings
        result.client_current = _current_client(store, name, endpoint, config_dir)
        if result.client_current is None:
            result.client = client_context(
                name, primary, opts.port, ca=ca, docker_config=config_dir, use=True, force=True
            )
            result.warnings += result.client.warnings
        elif dockercli.current_context(config_dir) != name:
            dockercli.set_current_context(name, config_dir)
            result.selected = True
    if result.restarted or (restart and result.server is None):
        from .verify import context_credentials, verify

        result.verify = verify(primary, opts.port, context_credentials(name, str(config_dir))[1])
    return result


def _check_resolves(name: str, port: int) -> None:
    """Refuse, before anything is issued, a host name this machine cannot resolve: the
    context would point at nothing, and the docker CLI would fail with a DNS error."""
    import ipaddress
    import socket

    try:
        ipaddress.ip_address(name.strip("[]"))
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise UsageError(
            f"{name} does not resolve from this machine ({e}), so its docker context could "
            "not reach it: fix its DNS or /etc/hosts entry, or give the name or address "
            "clients use; nothing was issued."
        ) from None


def _check_context_is_ours(store: CAStore, name: str, endpoint: str, config_dir: StrPath) -> None:
    """Refuse to replace a context that points elsewhere or that this CA did not write."""
    if not dockercli.context_exists(name, config_dir):
        return
    info = dockercli.read_context(name, config_dir)
    if info.host != endpoint:
        raise UsageError(
            f"The docker context {name!r} already exists and points at {info.host}, not "
            f"{endpoint}: choose another name with --context, or remove it "
            f"(docker context rm {name})."
        )
    written = str(info.tls_dir)
    ours = store.exists() and any(
        written in i.installed for i in list_items(store.name, "client") if i.name == name
    )
    if not ours:
        raise UsageError(
            f"The docker context {name!r} for {endpoint} was not written by CA {store.name!r}: "
            f"choose another name with --context, or remove it (docker context rm {name})."
        )


def _current_server(
    store: CAStore,
    primary: str,
    names: list[str],
    target: Target,
    host_files: HostFiles,
    options: InstallOptions,
) -> Item | None:
    """The valid server certificate of ``primary`` covering ``names`` that the host already
    runs with exactly what an install would write, or None."""
    if not store.exists():
        return None
    for item in reversed(list_items(store.name, "server")):  # newest first
        if item.name != primary or item.status != "valid" or not set(names) <= set(item.sans):
            continue
        pems = store.issued_pair(item.serial)
        if pems is None:
            continue
        planned = install(
            target, host_files, options, (store.trust_bundle_pem(), *pems), dry_run=True
        )
        if not planned.plan.changed:
            return item
    return None


def _current_client(store: CAStore, name: str, endpoint: str, config_dir: StrPath) -> Item | None:
    """The valid client certificate of this CA that context ``name`` holds, or None."""
    if not dockercli.context_exists(name, config_dir):
        return None
    info = dockercli.read_context(name, config_dir)
    try:
        ca_pem, cert_pem = (info.tls_file(f).read_bytes() for f in ("ca.pem", "cert.pem"))
    except OSError:
        return None
    if info.host != endpoint or ca_pem != store.trust_bundle_pem():
        return None
    for item in list_items(store.name, "client"):
        if item.name == name and item.status == "valid" and str(info.tls_dir) in item.installed:
            pems = store.issued_pair(item.serial)
            if pems is not None and pems[0] == cert_pem:
                return item
    return None
