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
        if "--json" in sys.argv:
            _run_for_json(app)
        else:
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
    except OSError as e:
        # A full, read-only or forbidden file system met outside certkit.files' writers
        # (a mkdir, a lock file): one sentence too.  Any other OSError is a bug.
        from ..files import disk_failure

        failure = disk_failure(e.filename or "a file", e)
        if failure is None:
            raise
        if "--json" in sys.argv:
            import json

            typer.echo(json.dumps({"ok": False, "error": failure.message}))
        typer.echo(f"certkit: error: {failure.message}", err=True)
        sys.exit(failure.exit_code)


def _run_for_json(app: Any) -> None:
    """Run ``app`` so that a usage error (an unknown option, a missing argument) is one JSON
    document on stdout too, as every other error is under ``--json``; click's usage text still
    goes to stderr, and the exit code stays 2."""
    import json

    # typer 0.29 vendors click as typer._click (pinned in pyproject.toml, like _fastparams).
    from typer import Abort
    from typer._click.exceptions import ClickException, UsageError

    try:
        code = app(standalone_mode=False)
    except UsageError as e:
        print(json.dumps({"ok": False, "error": e.format_message()}))
        e.show()
        sys.exit(e.exit_code)
    except ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Abort:
        print("certkit: aborted", file=sys.stderr)
        sys.exit(1)
    # Without standalone mode click returns a typer.Exit's code instead of exiting.
    sys.exit(code if isinstance(code, int) else 0)
