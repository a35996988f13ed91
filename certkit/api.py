"""The Python API: what the ``certkit`` commands do, for provisioning scripts.

Every command of the CLI is a thin wrapper over one of these functions, so a
script gets the same checks, the same atomic writes and the same inventory
(here ``sandbox`` is a directory standing in for the Docker host's ``/``;
``HostRef(ssh="root@docker1")`` reaches a real host over SSH instead):

>>> from certkit import api
>>> info = api.init_ca("prod")
>>> store = api.CAStore("prod")
>>> host = api.open_target(api.HostRef(sandbox=sandbox))
>>> server = api.issue_server(store, "docker1.example.com", host, sans=["10.0.0.5"])
>>> server.names, server.restart_needed
(['docker1.example.com', '10.0.0.5'], True)
>>> client = api.client_context("docker1", "docker1.example.com", ca="prod", use=True)
>>> client.context.host if client.context else None
'tcp://docker1.example.com:2376'
>>> settings = api.export_settings(store, "deploy", host="docker1.example.com")
>>> api.export_ci(store, settings).bundle.context
'deploy'

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

from .ca import CAInfo, Issued, LeafRequest, describe_ca, init_ca, issue, issue_many, list_cas
from .ci import bootstrap, decode_bundle, export_ci, export_settings
from .client import client_context, client_files
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
from .due import renew_due
from .errors import CertkitError, OperationError, UsageError
from .host.local import LocalTarget, read_host_files
from .host.options import HostRef, InstallOptions
from .host.plan import plan_install
from .host.target import Target, open_target
from .inventory import list_items, status
from .names import parse_names
from .renew import renew
from .rotation import finish_rotation, rotation_status, start_rotation
from .server import issue_server
from .store import CAStore, Record
from .verify import verify

__all__ = [
    "KEY_TYPES",
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
