"""The ``certkit`` command line: parse, call the API, render. Nothing else.

Each noun has its own module registering its commands on :data:`app`.  They
import typer and this package only; the API modules (and with them
``cryptography``, let alone the docker SDK) are imported inside the command
functions, so ``certkit --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import CertkitError
from ._fastparams import install as _install_fast_params

_install_fast_params()  # options converted without pydantic (~100 ms a run), click-style --help

app = typer.Typer(
    name="certkit",
    help=(
        "Mutual-TLS remote access to Docker daemons: a CA, server certificates installed "
        "into daemon.json, docker contexts, CI secrets.\n\n"
        "Start with: certkit setup HOST --ssh root@HOST --restart"
    ),
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"certkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """certkit: Docker over mutual TLS, hard to get wrong."""


# Register the commands (each module only imports typer at import time), in
# the order `certkit --help` lists them: the main job first.
# isort: off
from . import setup as _setup  # noqa: E402,F401
from . import ca as _ca  # noqa: E402,F401
from . import server as _server  # noqa: E402,F401
from . import client as _client  # noqa: E402,F401
from . import ci as _ci  # noqa: E402,F401
from . import inspect as _inspect  # noqa: E402,F401
from . import lifecycle as _lifecycle  # noqa: E402,F401
from . import firewall as _firewall  # noqa: E402,F401
from . import bulk as _bulk  # noqa: E402,F401
from . import fleet as _fleet  # noqa: E402,F401
# isort: on


def main() -> None:
    """Console entry point: user errors become one line on stderr and an exit code."""
    try:
        app()
    except CertkitError as e:
        if "--json" in sys.argv:
            import json

            typer.echo(json.dumps({"ok": False, "error": e.message}))
        # Messages may quote what a host, an archive or a bundle said: no terminal escapes.
        from ..untrusted import escape_controls

        typer.echo(f"certkit: error: {escape_controls(e.message, keep=chr(10))}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("certkit: interrupted", err=True)
        sys.exit(130)
