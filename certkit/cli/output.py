"""Rendering for the CLI: human lines or one JSON document, warnings on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import typer

from ..defaults import DEFAULT_KEY_TYPE, KEY_TYPES
from ..untrusted import escape_controls

LAYOUT = "\n\t"  # the only control characters human output keeps

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document for machines.")
CA_OPTION = typer.Option("default", "--ca", help="Name of the CA in the store.")
KEY_TYPE_OPTION = typer.Option(DEFAULT_KEY_TYPE, "--key-type", help=" | ".join(KEY_TYPES) + ".")


DOCKER_CONFIG_OPTION = typer.Option(
    None,
    "--docker-config",
    help="The docker CLI's config dir (default: $DOCKER_CONFIG, else ~/.docker).",
)

# ---- installing on a Docker host: issue-server, setup and renew server (how to reach
# the host is its own option group: certkit.cli.reach)
CERT_DIR_OPTION = typer.Option(
    None,
    "--cert-dir",
    help="Where the files go on the host (default /etc/docker/certkit; renew: as installed).",
)
RESTART_OPTION = typer.Option(
    False, "--restart", help="Restart dockerd afterwards; roll back if it does not come back."
)


def emit(json_mode: bool, data: Any, lines: Iterable[str] = ()) -> None:
    """Print ``data`` as JSON in JSON mode, else the human ``lines``.

    Human lines quote what hosts, archives, bundles and store files say: their
    control characters are escaped (``\\x1b``), so none of them can retitle or
    clear the terminal or write the clipboard.  JSON escapes them by itself.
    """
    if json_mode:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        text = list(lines)
        if text:  # one write: `certkit list` prints tens of thousands of lines
            typer.echo(escape_controls("\n".join(text), keep=LAYOUT))


def emit_stream(items: Iterable[Any]) -> None:
    """Print ``items`` as :func:`emit` prints a list in JSON mode, byte for byte, but each
    item as soon as it comes: the reader has the first before the last is made."""
    out = sys.stdout
    first = True
    for item in items:
        text = json.dumps(item, indent=2, default=str).replace("\n", "\n  ")
        out.write(("[\n  " if first else ",\n  ") + text)
        if first:
            out.flush()
            first = False
    out.write("[]\n" if first else "\n]\n")
    out.flush()


def say(line: str, err: bool = False) -> None:
    """One human line, its control characters escaped (see :func:`emit`)."""
    typer.echo(escape_controls(line, keep=LAYOUT), err=err)


def warn(message: str) -> None:
    """A warning, always on stderr (so it never pollutes JSON or exported secrets); one
    line: a line break in what it quotes is escaped too."""
    typer.echo(escape_controls(f"certkit: warning: {message}", keep="\t"), err=True)


def next_step(command: str) -> str:
    return f"Next: {command}"
