"""The ``certkit`` command line: parse, call the API, render. Nothing else.

Each noun has its own module registering its commands on the app of
:mod:`certkit.cli.root`.  They import typer and that module only; the API
modules (and with them ``cryptography``, let alone the docker SDK) are
imported inside the command functions, so ``certkit --help`` stays fast.

A run imports only the module of the command it runs (:data:`COMMAND_MODULES`),
so typer builds one command, not all of them: ``certkit status`` neither
imports nor converts the other commands' parameters.  ``from certkit.cli
import app`` gives the complete command line.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any

#: The CLI modules, in the order ``certkit --help`` lists their commands: the main job first.
MODULES = (
    "setup",
    "ca",
    "server",
    "client",
    "ci",
    "inspect",
    "lifecycle",
    "firewall",
    "bulk",
    "fleet",
    "schedule",
)

#: The module registering each top-level command or group (tests/test_startup.py checks
#: it against the app).  A word not listed here loads every module: correct, just slower.
COMMAND_MODULES = {
    "setup": "setup",
    "init-ca": "ca",
    "ca": "ca",
    "issue-server": "server",
    "client-context": "client",
    "env": "client",
    "context": "client",
    "ci": "ci",
    "list": "inspect",
    "status": "inspect",
    "verify": "inspect",
    "doctor": "inspect",
    "renew": "lifecycle",
    "rotate-ca": "lifecycle",
    "firewall": "firewall",
    "issue-client": "bulk",
    "fleet": "fleet",
    "schedule": "schedule",
}

_HELP = frozenset({"-h", "--help"})


def modules_for(argv: list[str]) -> tuple[str, ...]:
    """The CLI modules ``certkit ARGV`` needs: its command's, all of them for the list of
    commands (no command, ``--help``, an unknown word, shell completion), none for
    ``--version`` alone."""
    if any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ):
        return MODULES
    command = next((word for word in argv if not word.startswith("-")), None)
    if command is None:
        return () if "--version" in argv and not _HELP & set(argv) else MODULES
    module = COMMAND_MODULES.get(command)
    return (module,) if module is not None else MODULES


def load_commands(modules: tuple[str, ...] = MODULES) -> Any:
    """The root typer app with the commands of ``modules`` registered on it."""
    for module in modules:
        importlib.import_module(f"{__name__}.{module}")
    from .root import app

    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # the complete command line (docs, tests)
        return load_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console entry point: user errors become one line on stderr and an exit code."""
    import typer

    from ..errors import CertkitError

    # Importing typer and the command's module makes tens of thousands of objects that
    # live as long as the process: collecting them over and over costs a command like
    # `status` a tenth of its run.  No cyclic GC while they load; then frozen (never
    # scanned again) and the GC back on for the command itself.
    gc.disable()
    try:
        app = load_commands(modules_for(sys.argv[1:]))
    finally:
        gc.freeze()
        gc.enable()
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
