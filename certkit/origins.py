"""How each certificate was issued, typed: what renewal needs to issue it again the same way.

Every record in the inventory carries one origin, by kind:

* :class:`ServerOrigin`: the SANs, the ``--out`` directory, and where and how it
  was installed (a target reference of :mod:`certkit.targets`: this machine, a
  sandbox root, a host over SSH or through Ansible);
* :class:`ClientOrigin`: the docker context (endpoint, config dir) or the
  ``--out`` directory it was written to;
* :class:`CIOrigin`: the endpoint and context a CI secret connects to;
* :class:`CAOrigin`: the CA a rotated CA replaced.

Leaves also remember ``trust``, the fingerprints of the CAs installed beside
them (their ``ca.pem``), which CA rotation reads.  This module is the only
code that knows how origins are stored, including the untyped ``options``
dictionaries of inventory version 1 (:func:`origin_from_json`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .install_options import InstallOptions
from .names import DOCKER_TLS_PORT
from .targets import LocalRef, legacy_ref, ref_from_json, ref_to_json


@dataclass(frozen=True)
class ServerOrigin:
    """A server certificate: its names, and where its files went."""

    sans: tuple[str, ...] = ()
    days: int | None = None  # the validity asked for (None: read it off the certificate)
    out: str | None = None  # the directory --out wrote ca.pem, server-cert.pem, server-key.pem to
    install: InstallOptions | None = None  # how it was installed; None: not installed
    # The host it was installed on, by kind (certkit.targets): this one, SSH, Ansible...
    target: Any = field(default_factory=LocalRef)
    trust: tuple[str, ...] = ()
    renewed_from: str | None = None


@dataclass(frozen=True)
class ClientOrigin:
    """A client certificate: written as a docker context, or as files into a directory."""

    days: int | None = None
    context: str | None = None  # the docker context name, when one was written
    host: str | None = None  # the endpoint of that context
    port: int | None = None
    docker_config: str | None = None
    description: str | None = None
    out: str | None = None  # client --client-only / bulk: the directory of the three files
    endpoint: str | None = None  # tcp://HOST:PORT it is meant for, when given with --out
    trust: tuple[str, ...] = ()
    renewed_from: str | None = None

    @property
    def rewritable(self) -> bool:
        """True when certkit knows where its files are (a context or a directory)."""
        return bool(self.host or self.out)


@dataclass(frozen=True)
class CIOrigin:
    """A CI secret: the endpoint and context the CI job connects to."""

    host: str = ""
    port: int = DOCKER_TLS_PORT
    context: str = ""
    days: int | None = None
    key_type: str | None = None
    format: str = "bundle"
    trust: tuple[str, ...] = ()
    renewed_from: str | None = None


@dataclass(frozen=True)
class CAOrigin:
    """A CA certificate; ``rotated_from`` is the fingerprint of the CA it replaced."""

    rotated_from: str | None = None


Origin = ServerOrigin | ClientOrigin | CIOrigin | CAOrigin
LeafOrigin = ServerOrigin | ClientOrigin | CIOrigin

_CLASSES: dict[str, type[Origin]] = {
    "server": ServerOrigin,
    "client": ClientOrigin,
    "ci": CIOrigin,
    "ca": CAOrigin,
}


def empty_origin(kind: str) -> Origin:
    """The origin of a certificate issued with every default (library callers, tests)."""
    return _CLASSES[kind]()


def origin_to_json(origin: Origin) -> dict[str, Any]:
    data = asdict(origin)
    if isinstance(origin, ServerOrigin):  # the kind's name and its own options
        data["target"] = ref_to_json(origin.target)
    return data


def origin_from_json(kind: str, data: dict[str, Any], *, legacy: bool = False) -> Origin:
    """Read an origin back; ``legacy`` reads inventory version 1's ``options`` dictionary."""
    if legacy:
        data = _from_v1(kind, data)
    cls = _CLASSES[kind]
    known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
    for key in ("sans", "trust"):
        if key in known:
            known[key] = tuple(str(v) for v in known[key] or ())
    if cls is ServerOrigin:
        if isinstance(known.get("install"), dict):
            known["install"] = InstallOptions.from_json(known["install"])
        if isinstance(known.get("target"), dict):  # without "kind": a HostRef, migrated
            known["target"] = ref_from_json(known["target"])
    return cls(**known)


def _from_v1(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept a flat dictionary: rename its keys into today's fields."""
    data = dict(options)
    if "out_dir" in data and not data.get("out"):
        data["out"] = data["out_dir"]  # an early spelling of "out"
    if kind == "server":
        installed = bool(data.get("install"))
        data["install"] = InstallOptions.from_json(data) if installed else None
        ssh, root = data.get("ssh"), data.get("root")
        data["target"] = legacy_ref(ssh, data.get("sudo", False), root)
    return data


def with_trust(origin: LeafOrigin, fingerprints: list[str]) -> LeafOrigin:
    """``origin`` remembering that these CAs were installed beside the certificate."""
    return replace(origin, trust=tuple(fingerprints))
