"""The Python API: what the ``certkit`` commands do, for provisioning scripts.

Every command of the CLI is a thin wrapper over one of these functions, so a
script gets the same checks, the same atomic writes and the same inventory
(here ``sandbox`` is a directory standing in for the Docker host's ``/``;
``HostRef(ssh="root@docker1")`` reaches a real host over SSH instead):

>>> from certkit import api
>>> info = api.init_ca("prod", permit=["example.com", "10.0.0.0/8"])
>>> prod = api.CA("prod")
>>> host = api.open_target(api.HostRef(sandbox=sandbox))
>>> server = api.issue_server(prod, "docker1.example.com", host, sans=["10.0.0.5"])
>>> server.names, server.restart_needed
(['docker1.example.com', '10.0.0.5'], True)
>>> client = api.client_context("docker1", "docker1.example.com", ca=prod, use=True)
>>> client.context.host if client.context else None
'tcp://docker1.example.com:2376'
>>> settings = api.export_settings(prod, "deploy", host="docker1.example.com")
>>> api.export_ci(prod, settings).bundle.context
'deploy'

One CA handle everywhere: every function here that works with a CA takes
``ca``, either a :class:`CA` (``api.CA("prod")``, the store's ``CAStore``)
or the CA's name; it comes first when the function needs one CA, as the
``ca=`` keyword when it has a default.  A CA's key may be held by any
backend of :mod:`certkit.keys` (``init_ca(key_uri=...)``).

For docker-py, :func:`docker_client` gives a ``docker.DockerClient`` for a
docker context that keeps working where ``REQUESTS_CA_BUNDLE`` is set:

>>> api.docker_client("docker1").containers.list()  # doctest: +SKIP
[]

Errors a user can cause raise :class:`UsageError` (the CLI's exit code 2);
operations that fail raise :class:`OperationError` (exit code 1).  Importing
this module loads ``cryptography`` but never the docker SDK (only calling
:func:`docker_client` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ca as _ca
from . import ci as _ci
from . import client as _client
from . import due as _due
from . import inventory as _inventory
from . import renew as _renew
from . import rotation as _rotation
from . import server as _server
from .ca import CAInfo, Issued, LeafRequest, list_cas
from .ci import bootstrap, decode_bundle
from .defaults import KEY_TYPES
from .dockercli import (
    export_context,
    import_context,
    read_context,
    render_env,
    set_current_context,
    write_context,
)
from .dockerpy import docker_client
from .doctor import doctor
from .errors import CertkitError, OperationError, UsageError
from .host.local import LocalTarget, read_host_files
from .host.options import HostRef, InstallOptions
from .host.plan import plan_install
from .host.target import Target, open_target
from .keys import register as register_key_backend
from .names import parse_names
from .paths import store_root
from .store import CAStore, Record
from .verify import verify

if TYPE_CHECKING:
    from .ci import Exported, ExportSettings
    from .client import ClientResult
    from .due import DueReport
    from .inventory import Item, StatusReport
    from .renew import Renewed
    from .rotation import RotationReport
    from .server import ServerResult

CA = CAStore
"""The CA handle: ``api.CA("prod")`` (``root=`` for a store other than ``$CERTKIT_HOME``)."""

CAHandle = CAStore | str
"""What every ``ca`` argument takes: a :class:`CA` or the name of one in the store."""


def _store(ca: CAHandle) -> CAStore:
    return ca if isinstance(ca, CAStore) else CAStore(ca)


def _name(ca: CAHandle | None) -> str | None:
    """The CA name for the functions that find the store themselves (``$CERTKIT_HOME``)."""
    if not isinstance(ca, CAStore):
        return ca
    if ca.root != store_root():
        raise UsageError(
            f"This call works on the store in $CERTKIT_HOME ({store_root()}), not {ca.root}: "
            "set CERTKIT_HOME to use that store."
        )
    return ca.name


# ---------------------------------------------------------------- one CA, first


def init_ca(ca: CAHandle = "default", *args: Any, **options: Any) -> CAInfo:
    """Create the CA ``ca`` (see :func:`certkit.ca.init_ca` for the options)."""
    store = _store(ca)
    return _ca.init_ca(store.name, *args, root=store.root, **options)


def describe_ca(ca: CAHandle) -> CAInfo:
    return _ca.describe_ca(_store(ca))


def issue(ca: CAHandle, *args: Any, **options: Any) -> Issued:
    """One leaf certificate (:func:`certkit.ca.issue`)."""
    return _ca.issue(_store(ca), *args, **options)


def issue_many(ca: CAHandle, requests: list[LeafRequest], **options: Any) -> list[Issued]:
    return _ca.issue_many(_store(ca), requests, **options)


def issue_server(ca: CAHandle, host: str, *args: Any, **options: Any) -> ServerResult:
    """A server certificate, installed through a target (:func:`certkit.server.issue_server`)."""
    return _server.issue_server(_store(ca), host, *args, **options)


def export_settings(ca: CAHandle, name: str, *args: Any, **options: Any) -> ExportSettings:
    return _ci.export_settings(_store(ca), name, *args, **options)


def export_ci(ca: CAHandle, settings: ExportSettings, *args: Any, **options: Any) -> Exported:
    return _ci.export_ci(_store(ca), settings, *args, **options)


def renew(ca: CAHandle, kind: str, name: str, **options: Any) -> Renewed:
    return _renew.renew(_store(ca), kind, name, **options)


def renew_due(ca: CAHandle, within_days: float, **options: Any) -> DueReport:
    return _due.renew_due(_store(ca), within_days, **options)


def start_rotation(ca: CAHandle, **options: Any) -> RotationReport:
    return _rotation.start_rotation(_store(ca), **options)


def rotation_status(ca: CAHandle, **options: Any) -> RotationReport:
    return _rotation.rotation_status(_store(ca), **options)


def finish_rotation(ca: CAHandle, **options: Any) -> RotationReport:
    return _rotation.finish_rotation(_store(ca), **options)


# ---------------------------------------------------------------- ca= with a default


def client_context(
    name: str | None, host: str, *args: Any, ca: CAHandle = "default", **options: Any
) -> ClientResult:
    """A client certificate as a docker context (:func:`certkit.client.client_context`)."""
    return _client.client_context(name, host, *args, ca=_name(ca) or "default", **options)


def client_files(
    name: str | None, out: str | Path, *args: Any, ca: CAHandle = "default", **options: Any
) -> ClientResult:
    return _client.client_files(name, out, *args, ca=_name(ca) or "default", **options)


def list_items(*args: Any, ca: CAHandle | None = None, **options: Any) -> list[Item]:
    """Every certificate of ``ca`` (default: every CA in the store)."""
    return _inventory.list_items(_name(ca), *args, **options)


def status(
    warn_days: float | None = None, *, ca: CAHandle | None = None, **options: Any
) -> StatusReport:
    """Which active certificates need attention (:func:`certkit.inventory.status`)."""
    if warn_days is not None:
        options["warn_days"] = warn_days
    return _inventory.status(ca=_name(ca), **options)


__all__ = [
    "CA",
    "KEY_TYPES",
    "CAHandle",
    "CAInfo",
    "CAStore",
    "CertkitError",
    "HostRef",
    "InstallOptions",
    "Issued",
    "LeafRequest",
    "LocalTarget",
    "OperationError",
    "Record",
    "Target",
    "UsageError",
    "bootstrap",
    "client_context",
    "client_files",
    "decode_bundle",
    "describe_ca",
    "docker_client",
    "doctor",
    "export_ci",
    "export_context",
    "export_settings",
    "finish_rotation",
    "import_context",
    "init_ca",
    "issue",
    "issue_many",
    "issue_server",
    "list_cas",
    "list_items",
    "open_target",
    "parse_names",
    "plan_install",
    "read_context",
    "read_host_files",
    "register_key_backend",
    "render_env",
    "renew",
    "renew_due",
    "rotation_status",
    "set_current_context",
    "start_rotation",
    "status",
    "verify",
    "write_context",
]
