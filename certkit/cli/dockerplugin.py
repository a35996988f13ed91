"""``certkit install-docker-plugin``: ``docker certkit ...`` through the docker CLI."""

from __future__ import annotations

import typer

from .output import DOCKER_CONFIG_OPTION, JSON_OPTION, emit
from .root import app


@app.command("install-docker-plugin")
def install_docker_plugin(
    user: bool = typer.Option(
        False,
        "--user",
        help="Into $DOCKER_CONFIG/cli-plugins, else ~/.docker/cli-plugins (default).",
    ),
    system: bool = typer.Option(
        False, "--system", help="Into /usr/local/lib/docker/cli-plugins, for every user (root)."
    ),
    root: str = typer.Option(
        None, "--root", help="With --system: install under this directory instead of /."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace a docker-certkit that certkit did not write."
    ),
    docker_config: str = DOCKER_CONFIG_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Install `docker certkit`: a docker CLI plugin that runs this certkit.

    The docker CLI's --config is honoured, and --context / --host / --tlscacert,
    --tlscert, --tlskey where a command takes an endpoint (verify, env); with none,
    those use the context docker would (DOCKER_CONTEXT, else the current one).
    Exit codes are certkit's.

    Example: certkit install-docker-plugin && docker --context prod certkit verify
    """
    from ..dockerplugin import install

    if user and system:
        from ..errors import UsageError

        raise UsageError("--user and --system exclude each other: choose one.")
    done = install(system, root=root, docker_config=docker_config, force=force)
    verb = "Installed" if done.changed else "Already installed:"
    lines = [
        f"{verb} {done.path}: `docker certkit` runs this certkit.",
        "Next: docker certkit status",
    ]
    emit(json_out, done.to_json(), lines)
