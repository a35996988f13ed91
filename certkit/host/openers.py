"""Reopening a recorded host (:mod:`certkit.targets`' openers for this machine and SSH)."""

from __future__ import annotations

from ..paths import system_paths
from ..targets import LocalRef, SSHRef
from .local import LocalTarget
from .remote import SSHTarget, remote_paths
from .ssh import SSH


def local(ref: LocalRef, cert_dir: str | None) -> LocalTarget:
    """This machine, or the sandbox standing in for its ``/``."""
    return LocalTarget(system_paths(ref.sandbox, cert_dir))


def ssh(ref: SSHRef, cert_dir: str | None) -> SSHTarget:
    """The host over SSH, with the recorded key file, ssh options and sudo."""
    conn = SSH.build(ref.ssh, identity=ref.identity, options=ref.ssh_options, sudo=ref.sudo)
    return SSHTarget(conn, remote_paths(ref.sandbox, cert_dir))
