"""The root of the ``certkit`` command line: the typer app every CLI module registers on.

Kept apart from :mod:`certkit.cli` so that a command's module can be imported
on its own (``certkit status`` imports :mod:`certkit.cli.inspect` and no other
command module): see :func:`certkit.cli.load_commands`.
"""

from __future__ import annotations

import typer

from .. import __version__
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
