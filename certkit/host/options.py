"""How to install and how a host was reached, as the host package spells them.

The data lives below the host package: :mod:`certkit.install_options` (what
to install) and :mod:`certkit.targets` (how a host is reached, by kind).
"""

from __future__ import annotations

from ..defaults import DEFAULT_LISTEN
from ..install_options import METHODS, InstallOptions
from ..targets import LocalRef, SSHRef, legacy_ref

__all__ = ["DEFAULT_LISTEN", "METHODS", "HostRef", "InstallOptions"]


def HostRef(
    ssh: str | None = None, sudo: bool = False, sandbox: str | None = None
) -> LocalRef | SSHRef:
    """This machine (or its ``sandbox``), or the host ``ssh`` names: a registry reference."""
    return legacy_ref(ssh, sudo, sandbox)
