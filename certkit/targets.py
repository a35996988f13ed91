"""Every way certkit reaches a Docker host, by name: the target registry.

A *kind* of target (``local``, ``ssh``, ``ansible``) registers itself here
with three things, as certbot's installers do:

* how the command line describes it: :meth:`TargetKind.from_reach` turns the
  "how to reach a host" flags (:class:`Reach`, the one option group every
  command that reaches a host shares) into its reference, or says it is not
  the kind the flags ask for;
* how it is recorded: its own frozen dataclass of options (:class:`LocalRef`,
  :class:`SSHRef`, :class:`AnsibleRef`), stored in the inventory as
  ``{"kind": NAME, ...its fields}`` (:func:`ref_to_json`, :func:`ref_from_json`);
* how it is reopened: ``"module:function"``, imported only when a host is
  reached (:func:`open_target`), so ``certkit --help`` loads no host machinery.

Issuance, renewal (single and bulk), rotation, the firewall commands and
setup reach a recorded host through :func:`open_target` alone.  A new kind
is one module with its target and an opener, plus one :func:`register` line.
This module imports nothing from :mod:`certkit.host`: the inventory's stored
format does not depend on the host package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, Protocol

from .errors import UsageError

# What an opener returns: a certkit.host.target.Target (not imported: the host package
# imports this module, and this one stays below it).
Target = Any


class TargetRef(Protocol):
    """What a recorded host reference has in common: its kind's name."""

    kind: ClassVar[str]


@dataclass(frozen=True)
class LocalRef:
    """This machine; ``sandbox`` is a directory standing in for ``/`` (``--root``)."""

    kind: ClassVar[str] = "local"
    sandbox: str | None = None


@dataclass(frozen=True)
class SSHRef:
    """A host over SSH, with everything a cron ``certkit renew`` needs to reach it again."""

    kind: ClassVar[str] = "ssh"
    ssh: str = ""  # [USER@]HOST[:PORT]
    sudo: bool = False
    sandbox: str | None = None
    identity: str | None = None  # the --identity key file, absolute
    ssh_options: tuple[str, ...] = ()  # each --ssh-option (ssh -o)


@dataclass(frozen=True)
class AnsibleRef:
    """A host as Ansible reaches it (``fleet apply``): its inventory and inventory name.

    ``ssh`` is ``USER@ADDRESS[:PORT]`` as SSH would reach it: its files are
    recorded under that name, as ``--ssh`` records them.
    """

    kind: ClassVar[str] = "ansible"
    host: str = ""  # the inventory hostname
    inventory: str | None = None  # the inventory file or directory, absolute
    ssh: str | None = None
    become: bool = False


@dataclass(frozen=True)
class UnknownRef:
    """A reference of a kind this certkit does not know (a newer one wrote it): kept as is."""

    kind: str = "unknown"
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Reach:
    """The "how to reach a host" flags as given (None / False / (): not given)."""

    ssh: str | None = None
    sudo: bool = False
    identity: str | None = None
    ssh_options: tuple[str, ...] = ()
    root: str | None = None  # --root: a sandbox standing in for /
    rootless: bool = False  # --rootless: the user's own rootless dockerd (certkit.rootless_kind)

    @property
    def over_ssh_only(self) -> bool:
        """True when a flag that only means something over SSH was given."""
        return self.sudo or bool(self.identity) or bool(self.ssh_options)


Opener = Callable[[Any, "str | None"], Target]


@dataclass(frozen=True)
class TargetKind:
    """One kind of target: its name, its recorded options, how flags and records reopen it."""

    name: str
    ref_type: type[Any]
    opener: str | Opener  # "module:function(ref, cert_dir) -> Target", imported when used
    describe: Callable[[Any], str]  # "root@h1 over SSH", for messages
    from_reach: Callable[[Reach, Any], Any | None] = lambda reach, recorded: None

    def open(self, ref: Any, cert_dir: str | None) -> Target:
        opener = self.opener
        if isinstance(opener, str):
            module, _, function = opener.partition(":")
            opener = getattr(importlib.import_module(module), function)
        assert callable(opener)
        return opener(ref, cert_dir)


REGISTRY: dict[str, TargetKind] = {}


def register(kind: TargetKind) -> TargetKind:
    """Add (or replace) a kind of target; its references then read back and reopen."""
    REGISTRY[kind.name] = kind
    return kind


def kind_of(ref: Any) -> TargetKind:
    found = REGISTRY.get(str(ref.kind))
    if found is None:
        raise UsageError(
            f"This certkit does not know the target kind {ref.kind!r} the record names: "
            "upgrade certkit, or re-install the server with --ssh or --install."
        )
    return found


def open_target(ref: Any, cert_dir: str | None = None) -> Target:
    """The host ``ref`` records, reopened through its kind (its module imported now)."""
    return kind_of(ref).open(ref, cert_dir)


def describe(ref: Any) -> str:
    """How messages name the host ``ref`` records ("this machine", "root@h1 over SSH")."""
    found = REGISTRY.get(str(ref.kind))
    return found.describe(ref) if found else f"a {ref.kind} host"


def from_reach(reach: Reach, recorded: Any = None) -> Any:
    """The reference the flags ask for; flags not given keep the ``recorded`` host's values.

    The kinds are asked in registration order; the first that takes the flags wins.
    """
    for kind in reversed(REGISTRY.values()):  # the newest registration first
        ref = kind.from_reach(reach, recorded)
        if ref is not None:
            return ref
    return recorded if recorded is not None else LocalRef(reach.root)


# ---------------------------------------------------------------- the stored format


def ref_to_json(ref: Any) -> dict[str, Any]:
    if isinstance(ref, UnknownRef):
        return {"kind": ref.kind, **dict(ref.options)}
    return {"kind": ref.kind, **asdict(ref)}


def ref_from_json(data: dict[str, Any]) -> Any:
    """Read :func:`ref_to_json` back; a reference without ``kind`` is the older ``HostRef``
    (``ssh``, ``sudo``, ``sandbox``), migrated to a local or SSH reference."""
    if "kind" not in data:
        return legacy_ref(data.get("ssh"), data.get("sudo"), data.get("sandbox"))
    found = REGISTRY.get(str(data["kind"]))
    if found is None:
        rest = tuple(sorted((k, v) for k, v in data.items() if k != "kind"))
        return UnknownRef(str(data["kind"]), rest)
    known = {f.name for f in fields(found.ref_type)}
    values = {k: v for k, v in data.items() if k in known}
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(str(v) for v in value)
    return found.ref_type(**values)


def legacy_ref(ssh: Any, sudo: Any, sandbox: Any) -> LocalRef | SSHRef:
    """A ``HostRef(ssh, sudo, sandbox)`` of inventories before the registry, as today's kind."""
    box = str(sandbox) if sandbox else None
    if ssh:
        return SSHRef(str(ssh), bool(sudo), box)
    return LocalRef(box)


# ---------------------------------------------------------------- the built-in kinds


def _local_from_reach(reach: Reach, recorded: Any) -> LocalRef | None:
    if reach.ssh is not None:
        return None
    if reach.root is not None:
        return LocalRef(reach.root)
    if recorded is None:
        return LocalRef()
    return recorded if isinstance(recorded, LocalRef) else None


def _ssh_from_reach(reach: Reach, recorded: Any) -> SSHRef | None:
    if reach.ssh is None and not isinstance(recorded, SSHRef):
        return None
    was = recorded if isinstance(recorded, SSHRef) else SSHRef()
    return replace(
        was,
        ssh=reach.ssh or was.ssh,
        sudo=reach.sudo or was.sudo,
        sandbox=reach.root if reach.root is not None else was.sandbox,
        identity=reach.identity or was.identity,
        ssh_options=reach.ssh_options or was.ssh_options,
    )


def _ansible_from_reach(reach: Reach, recorded: Any) -> AnsibleRef | SSHRef | None:
    """A fleet host: through Ansible again, unless flags name another way in (--ssh, --root);
    SSH-only flags (--identity, --ssh-option, --sudo) reach it over SSH at the address
    Ansible used."""
    if not isinstance(recorded, AnsibleRef) or reach.ssh is not None or reach.root is not None:
        return None
    if reach.over_ssh_only and recorded.ssh:
        sudo = reach.sudo or recorded.become
        return SSHRef(recorded.ssh, sudo, None, reach.identity, reach.ssh_options)
    return recorded


register(
    TargetKind(
        "local",
        LocalRef,
        "certkit.host.openers:local",
        lambda ref: f"the sandbox {ref.sandbox}" if ref.sandbox else "this machine",
        _local_from_reach,
    )
)
register(
    TargetKind(
        "ssh", SSHRef, "certkit.host.openers:ssh", lambda ref: f"{ref.ssh} over SSH",
        _ssh_from_reach,
    )
)  # fmt: skip
register(
    TargetKind(
        "ansible",
        AnsibleRef,
        "certkit.fleet.adhoc:reopen",
        lambda ref: f"{ref.host} through Ansible",
        _ansible_from_reach,
    )
)

from . import rootless_kind  # noqa: E402,F401  registers "rootless" (it needs the names above)
