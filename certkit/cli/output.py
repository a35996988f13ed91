"""Rendering for the CLI: human lines or one JSON document, warnings on stderr."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import typer

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document for machines.")
CA_OPTION = typer.Option("default", "--ca", help="Name of the CA in the store.")
KEY_TYPE_OPTION = typer.Option(
    "ec-p256", "--key-type", help="ec-p256 | ec-p384 | rsa-2048 | rsa-3072 | rsa-4096 | ed25519."
)


def emit(json_mode: bool, data: Any, lines: Iterable[str] = ()) -> None:
    """Print ``data`` as JSON in JSON mode, else the human ``lines``."""
    if json_mode:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            typer.echo(line)


def warn(message: str) -> None:
    """A warning, always on stderr (so it never pollutes JSON or exported secrets)."""
    typer.echo(f"certkit: warning: {message}", err=True)


def next_step(command: str) -> str:
    return f"Next: {command}"
