"""``certkit setup``: CA, server certificate installed, client context, verify: one command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from . import reach
from .installflags import (
    ALLOW_FROM,
    KEEP_CONTAINERS,
    KEEP_INSECURE,
    REMOVE_INSECURE,
    REPLACE_CA,
    with_allow_from,
    with_keep_containers,
)
from .output import (
    CA_OPTION,
    CERT_DIR_OPTION,
    DOCKER_CONFIG_OPTION,
    JSON_OPTION,
    RESTART_OPTION,
    emit,
    next_step,
    warn,
)
from .root import app

if TYPE_CHECKING:
    from ..setup import SetupResult

# issue-server's options, worded for setup (where they apply to --ssh as well as --install).
SAN = typer.Option(
    None, "--san", metavar="NAME_OR_IP", help="Another name or IP for the certificate (repeatable)."
)
LISTEN = typer.Option(None, "--listen", help="Address dockerd listens on (default 0.0.0.0).")
PORT = typer.Option(None, "--port", help="TLS port of dockerd and of the context (default 2376).")
METHOD = typer.Option(
    None,
    "--method",
    help="auto | systemd (-H flag in a drop-in) | daemon-json (hosts key) | socket "
    "(a docker.socket ListenStream: the port stays open while dockerd restarts).",
)


@app.command("setup")
def setup(
    host: str = typer.Argument(..., help="The name (or IP) clients use to reach the Docker host."),
    ssh: str = reach.SSH,
    install: bool = typer.Option(
        False, "--install", help="Install on this machine (root), or under --root DIR."
    ),
    root: str = reach.ROOT,
    context: str = typer.Option(
        None, "--context", help="Name of the docker context (default: HOST's first label)."
    ),
    san: list[str] = SAN,
    listen: str = LISTEN,
    port: int = PORT,
    method: str = METHOD,
    cert_dir: str = CERT_DIR_OPTION,
    restart: bool = RESTART_OPTION,
    ca: str = CA_OPTION,
    docker_config: str = DOCKER_CONFIG_OPTION,
    sudo: bool = reach.SUDO,
    identity: str = reach.IDENTITY,
    ssh_option: list[str] = reach.SSH_OPTIONS,
    rootless: bool = reach.ROOTLESS,
    force: bool = typer.Option(
        False, "--force", help="Take a name another host's active certificate holds (it moved)."
    ),
    keep_insecure: bool = KEEP_INSECURE,
    remove_insecure: bool = REMOVE_INSECURE,
    allow_from: list[str] = ALLOW_FROM,
    replace_ca: bool = REPLACE_CA,
    keep_containers: bool = KEEP_CONTAINERS,
    json_out: bool = JSON_OPTION,
) -> None:
    """Set up one Docker host for mutual TLS in one step; a second run changes nothing.

    Creates the CA if there is none, issues and installs the server
    certificate (over SSH or on this machine), writes and selects the docker
    context, and verifies the endpoint when dockerd was restarted.  Each step
    is skipped when its result is already in place.

    Exit codes: 0 done, 1 an operation or the verification failed, 2 bad input
    or a host configuration certkit refuses to touch (nothing written).

    Example: certkit setup docker1.example.com --ssh root@docker1.example.com --restart

    Example (on the Docker host): sudo certkit setup docker1.example.com --install --restart
    """
    from ..errors import UsageError
    from ..install_options import install_options
    from ..setup import setup as _setup
    from ..targets import from_reach, open_target

    if (ssh is None) == (not install) and not (rootless and not install):  # --rootless: here
        raise UsageError(
            "Say where dockerd runs: --ssh [USER@]HOST (over SSH) or --install (this machine)."
            if ssh is None
            else "--ssh installs over SSH and --install on this machine: use one of them."
        )
    where = reach.new_host(reach.group(ssh, sudo, identity, ssh_option, root, rootless))
    options = install_options(
        listen=listen,
        port=port,
        cert_dir=cert_dir,
        method=method,
        keep_insecure=keep_insecure,
        remove_insecure=remove_insecure,
        replace_ca=replace_ca,
    )
    options = with_allow_from(options, allow_from, install=True)
    options = with_keep_containers(options, keep_containers, restart)
    target = open_target(from_reach(where), cert_dir)
    result = _setup(
        host,
        target,
        context=context,
        sans=list(san or []),
        options=options,
        ca=ca,
        restart=restart,
        docker_config=docker_config,
        names_moved=force,
    )
    if not json_out:
        list(map(warn, result.warnings))
    emit(json_out, result.to_json(), _lines(result))
    if not result.ok:
        raise typer.Exit(1)


def _lines(r: SetupResult) -> list[str]:
    lines = [f"CA {r.ca!r}: {'created' if r.ca_created else 'already there'}."]
    if r.server is not None:
        plan = r.server.install.plan if r.server.install else None
        lines.append(
            f"Server certificate for {', '.join(r.names)}: issued (serial {r.server.serial}, "
            f"until {(r.server.not_after or '')[:10]}) and installed"
            + (f" ({plan.method} method, {len(plan.written)} files written)." if plan else ".")
        )
        if r.restarted and plan is not None:
            lines.append(f"Docker restarted and listens on {plan.tcp_host}.")
    elif r.server_current is not None:
        cur = r.server_current
        lines.append(
            f"Server certificate for {', '.join(r.names)}: unchanged (serial {cur.serial}, "
            f"{cur.describe_expiry()}), installed as configured."
        )
    if r.client is not None:
        lines.append(f"Context {r.context!r} -> {r.endpoint}: written and selected.")
    elif r.client_current is not None:
        state = "selected now" if r.selected else "already selected"
        lines.append(f"Context {r.context!r} -> {r.endpoint}: unchanged ({state}).")
    if r.verify is not None:
        fails = [c for c in r.verify.checks if c.status == "FAIL"]
        lines += [f"FAIL  {c.name:21} {c.message}" for c in fails]
        lines.append(f"Verify: {len(r.verify.checks) - len(fails)}/{len(r.verify.checks)} passed.")
    if not r.changed:
        lines.append("Nothing changed.")
    plan = r.server.install.plan if r.server and r.server.install else None
    restart = plan.restart_command if plan else "sudo systemctl restart docker"
    if r.restart_needed:
        lines.append(
            next_step(
                f"restart dockerd ({restart}, or re-run with --restart), "
                f"then certkit verify --context {r.context}"
            )
        )
    elif r.verify is not None and not r.verify.ok and not r.restarted:
        lines.append(next_step(f"dockerd may still run its previous configuration: {restart}"))
    else:
        lines.append(next_step(f"docker --context {r.context} version"))
    return lines
