"""The "how to reach a Docker host" option group, declared once (pip's ``cmdoptions`` style).

Every command that reaches a host (``issue-server``, ``setup``, ``renew``,
``firewall show|remove``) takes these options and turns them into one
:class:`~certkit.targets.Reach` with :func:`reach`; the target registry
(:mod:`certkit.targets`) then says which kind of host they name.  A command
that reaches a recorded host reaches it with no option at all: the record
says how (its kind, key file, ssh options, sudo).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..targets import Reach

ROOT = typer.Option(None, "--root", help="Sandbox root: /etc/docker/... means ROOT/etc/docker/...")
SSH = typer.Option(
    None,
    "--ssh",
    help="The Docker host over SSH: [USER@]HOST[:PORT] (for a recorded server: as recorded).",
)
SUDO = typer.Option(False, "--sudo", help="Over SSH: run the remote side with sudo -n; recorded.")
IDENTITY = typer.Option(
    None,
    "--identity",
    help="The SSH private key file to use (ssh -i); recorded, so renewal needs it no more.",
)
SSH_OPTIONS = typer.Option(
    None,
    "--ssh-option",
    metavar="OPT",
    help="An ssh -o option, e.g. ProxyJump=bastion (repeatable); recorded as --identity is.",
)
ROOTLESS = typer.Option(
    False,
    "--rootless",
    help="With --ssh USER@HOST: the user's own rootless dockerd (no root, no sudo); recorded.",
)


def group(
    ssh: str | None = None,
    sudo: bool = False,
    identity: str | None = None,
    ssh_option: list[str] | None = None,
    root: object = None,
    rootless: bool = False,
) -> Reach:
    """The group's values as one :class:`~certkit.targets.Reach` (``root`` may be a Path)."""
    from ..targets import Reach

    return Reach(
        ssh=ssh,
        sudo=sudo,
        identity=identity,
        ssh_options=tuple(ssh_option or ()),
        root=str(root) if root else None,
        rootless=rootless,
    )


def new_host(reach_: Reach) -> Reach:
    """``reach_`` for a host not recorded yet: the SSH-only flags need --ssh."""
    from ..errors import UsageError

    if reach_.ssh is None and reach_.over_ssh_only:
        raise UsageError("--sudo, --identity and --ssh-option only apply with --ssh [USER@]HOST.")
    return reach_
