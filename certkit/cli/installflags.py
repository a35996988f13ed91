"""The install flags every command that installs a server certificate shares (``issue-server``,
``setup``): what to do with an insecure listener, the firewall sources, a CA swap.

Declared once, like the "how to reach a host" group in :mod:`certkit.cli.reach`, so a
message that names one of these flags names a flag of every installing command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ..install_options import InstallOptions

KEEP_INSECURE = typer.Option(
    False, "--keep-insecure", help="Keep an existing TCP listener without TLS (e.g. :2375)."
)
REMOVE_INSECURE = typer.Option(
    False, "--remove-insecure", help="Remove an existing TCP listener without TLS."
)
REPLACE_CA = typer.Option(
    False,
    "--replace-ca",
    help="Let the host trust this CA instead of another one it trusts now (its clients "
    "lose access; the old CA file is kept beside daemon.json).",
)
KEEP_CONTAINERS = typer.Option(
    False,
    "--keep-containers",
    help="With --restart: turn live-restore on first (daemon.json, then SIGHUP), so running "
    "containers survive the restart (refused on a swarm node).",
)
ALLOW_FROM = typer.Option(
    None,
    "--allow-from",
    metavar="CIDR",
    help="With --install: open the TLS port in the host's active firewall (ufw, firewalld) "
    "to these sources only (repeatable; 'any' for everyone); certkit's rules for other "
    "sources are removed.",
)


def with_keep_containers(options: InstallOptions, keep: bool, restart: bool) -> InstallOptions:
    """``options`` with ``--keep-containers`` when given (recorded: renewals keep asking);
    refused without ``--restart`` (the reload that turns live-restore on goes with it)."""
    if not keep:
        return options
    from dataclasses import replace

    from ..errors import UsageError

    if not restart:
        raise UsageError(
            "--keep-containers turns live-restore on just before certkit's restart: add --restart."
        )

    return replace(options, keep_containers=True)


def with_allow_from(
    options: InstallOptions, allow_from: list[str] | None, install: bool
) -> InstallOptions:
    """``options`` with the checked ``--allow-from`` sources (refused without an install)."""
    if not allow_from:
        return options
    from dataclasses import replace

    from ..errors import UsageError
    from ..host.firewall import check_sources

    if not install:
        raise UsageError("--allow-from only applies with --install or --ssh: add --install.")
    return replace(options, allow_from=check_sources(allow_from))
