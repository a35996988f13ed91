"""``docker certkit ...``: certkit as a docker CLI plugin (``certkit install-docker-plugin``).

The docker CLI runs any executable ``docker-NAME`` in its plugin directories
(``$DOCKER_CONFIG/cli-plugins``, ``/usr/local/lib/docker/cli-plugins``, ...) that
answers ``docker-NAME docker-cli-plugin-metadata`` with a JSON object whose
``SchemaVersion`` is ``"0.1.0"`` (docker/cli's ``cli-plugins/manager``).  It then
runs ``docker-certkit [GLOBAL OPTIONS] certkit ARGS``: the docker CLI's global
options come first, unparsed, and the plugin must accept all of them.

:func:`translate` turns that into a certkit command line: ``--config DIR`` becomes
``DOCKER_CONFIG`` (every certkit command reads it); ``--context``, ``--host`` and
the ``--tls*`` files go to the commands where they name an endpoint (``verify``,
``env``); the logging and TLS switches mean nothing to certkit and are dropped.
The plugin then runs certkit in its own process and exits with certkit's code.

This module imports nothing heavy: the docker CLI asks every plugin for its
metadata on each ``docker --help``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UsageError

NAME = "certkit"
EXECUTABLE = f"docker-{NAME}"
METADATA_COMMAND = "docker-cli-plugin-metadata"
MARKER = "# docker-certkit: written by `certkit install-docker-plugin`"
METADATA = {
    "SchemaVersion": "0.1.0",
    "Vendor": "certkit",
    "Version": __version__,
    "ShortDescription": "Mutual TLS for Docker daemons: CA, server certificates, contexts",
}

# The docker CLI's global options (docker --help, "Global Options"), -v excepted: the
# docker CLI answers it itself.
_VALUE_OPTIONS = {
    "--config": "config",
    "-c": "context",
    "--context": "context",
    "-H": "host",
    "--host": "host",
    "-l": "log-level",
    "--log-level": "log-level",
    "--tlscacert": "tlscacert",
    "--tlscert": "tlscert",
    "--tlskey": "tlskey",
}
_SWITCHES = {"-D": "debug", "--debug": "debug", "--tls": "tls", "--tlsverify": "tlsverify"}


@dataclass(frozen=True)
class EndpointUse:
    """How a certkit command takes a docker endpoint: an option or its first argument."""

    context_option: str | None  # None: the context is the command's first argument
    value_options: frozenset[str]  # its options that take a value (to find its arguments)
    tls_options: dict[str, str] = field(default_factory=dict)  # docker flag -> certkit option


#: The commands docker's --context / --host / --tls* files mean something to.
ENDPOINT_COMMANDS = {
    "verify": EndpointUse(
        "--context",
        frozenset(
            {
                "--context",
                "--ca",
                "--cert",
                "--key",
                "--timeout",
                "--insecure-port",
                "--docker-config",
            }
        ),
        {"tlscacert": "--ca", "tlscert": "--cert", "tlskey": "--key"},
    ),
    "env": EndpointUse(None, frozenset({"--shell", "--docker-config"})),
}


@dataclass
class Invocation:
    """The certkit command line a ``docker certkit`` run stands for."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # docker options certkit had no use for


def _global_options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Docker's global options before the plugin's name, and the words after it."""
    given: dict[str, str] = {}
    words = list(argv)
    while words:
        word = words.pop(0)
        if word == NAME:
            return given, words
        if word == "help" and words[:1] == [NAME]:  # `docker help certkit [COMMAND]`
            return given, [*words[1:], "--help"]
        flag, eq, value = word.partition("=")
        if flag in _SWITCHES:
            given[_SWITCHES[flag]] = value if eq else "true"
        elif flag in _VALUE_OPTIONS:
            if not eq:
                if not words:
                    raise UsageError(f"docker {flag} needs a value.")
                value = words.pop(0)
            given[_VALUE_OPTIONS[flag]] = value
        else:
            raise UsageError(
                f"{word!r} before `{NAME}` is not a docker global option; "
                f"give certkit's options after it: docker {NAME} COMMAND [OPTIONS]."
            )
    raise UsageError(f"{EXECUTABLE} is a docker CLI plugin: run it as `docker {NAME} ...`.")


def _positionals(words: list[str], value_options: frozenset[str]) -> list[str]:
    found, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in value_options  # `--opt VALUE`, not `--opt=VALUE`
        else:
            found.append(word)
    return found


def _endpoint(host: str) -> str:
    """``tcp://HOST:PORT`` (docker's -H) as certkit's ``HOST[:PORT]``."""
    if not host.startswith("tcp://"):
        raise UsageError(
            f"docker -H {host}: certkit audits a TLS endpoint, tcp://HOST:PORT; "
            "or name a context: docker --context NAME certkit verify."
        )
    return host.removeprefix("tcp://").rstrip("/")


def translate(
    argv: list[str], selected: Callable[[str | None], str | None] | None = None
) -> Invocation:
    """The certkit command line for ``docker-certkit ARGV`` (docker's options, ``certkit``, ...).

    ``selected(docker_config)`` names the context the docker CLI would use when no option
    picks one (``DOCKER_CONTEXT``, else ``currentContext``): a command that takes an
    endpoint and is given none gets that one, as a docker command would.

    >>> translate(["--context", "prod", "certkit", "verify"]).args
    ['verify', '--context', 'prod']
    """
    given, rest = _global_options(argv)
    run = Invocation(list(rest))
    if "config" in given:
        run.env["DOCKER_CONFIG"] = os.path.abspath(os.path.expanduser(given["config"]))
    command = next((w for w in rest if not w.startswith("-")), None)
    use = ENDPOINT_COMMANDS.get(command or "")
    endpoint = {k: given[k] for k in ("context", "host") if k in given}
    tls = {k: v for k, v in given.items() if k.startswith("tls") and k not in ("tls", "tlsverify")}
    if use is None:
        run.ignored = sorted(endpoint) + sorted(tls)
        return run
    if len(endpoint) > 1:
        raise UsageError("docker --context and --host both name the endpoint: give one.")
    args = rest[rest.index(command) + 1 :] if command else []
    explicit = _positionals(args, use.value_options) or (
        use.context_option is not None and any(a.split("=")[0] == use.context_option for a in args)
    )
    if endpoint and explicit:
        flag = next(iter(endpoint))
        raise UsageError(
            f"docker --{flag} and `certkit {command}`'s own endpoint both name one: give one."
        )
    if not endpoint and not explicit and selected is not None and "DOCKER_HOST" not in os.environ:
        current = selected(run.env.get("DOCKER_CONFIG"))
        if current and current != "default":  # the built-in one is the local socket
            endpoint["context"] = current
    if "context" in endpoint:
        name = endpoint["context"]
        run.args += [use.context_option, name] if use.context_option else [name]
    elif "host" in endpoint:
        if use.context_option is None:  # env takes a context name only
            raise UsageError(f"certkit {command} takes a context: docker --context NAME.")
        run.args.append(_endpoint(endpoint["host"]))
    for key, value in tls.items():
        if key not in use.tls_options:
            run.ignored.append(key)
        elif use.tls_options[key] not in args:
            run.args += [use.tls_options[key], os.path.abspath(os.path.expanduser(value))]
    return run


def main(argv: list[str] | None = None) -> None:
    """The plugin's entry point: the metadata, or certkit with docker's options applied."""
    words = sys.argv[1:] if argv is None else argv
    if words == [METADATA_COMMAND]:
        print(json.dumps(METADATA))
        return
    from .cli import main as certkit_main
    from .dockercli import selected_context

    try:
        run = translate(words, selected_context)
    except UsageError as e:
        print(f"certkit: error: {e.message}", file=sys.stderr)
        sys.exit(e.exit_code)
    for key in run.ignored:
        print(
            f"certkit: warning: docker --{key} means nothing to this certkit command: ignored.",
            file=sys.stderr,
        )
    os.environ.update(run.env)
    sys.argv = [f"docker {NAME}", *run.args]  # usage lines read "docker certkit COMMAND"
    certkit_main()


# ---- installing it


@dataclass
class PluginInstall:
    """What ``certkit install-docker-plugin`` did."""

    path: Path
    scope: str  # user | system
    changed: bool
    python: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "path": str(self.path),
            "scope": self.scope,
            "changed": self.changed,
            "python": self.python,
        }


def script(python: str = sys.executable) -> str:
    """The ``docker-certkit`` executable: this Python calling :func:`main`.

    ``-P`` keeps the working directory off ``sys.path``; ``-c`` rather than ``-m``
    so click names the program from ``sys.argv[0]`` ("docker certkit"), not the module.
    """
    code = "from certkit.dockerplugin import main; main()"
    return f'#!/bin/sh\n{MARKER}\nexec {shlex.quote(python)} -P -c {shlex.quote(code)} "$@"\n'


def plugin_dir(system: bool, root: str | None = None, docker_config: str | None = None) -> Path:
    """Where the plugin goes: the user's ``$DOCKER_CONFIG/cli-plugins``, or the system's."""
    from .paths import SYSTEM_CLI_PLUGINS, docker_cli_plugins_dir, system_paths

    if system:
        return Path(system_paths(root).at(SYSTEM_CLI_PLUGINS))
    if root is not None:
        raise UsageError("--root goes with --system (the user's plugin dir is not re-rooted).")
    return docker_cli_plugins_dir(docker_config)


def install(
    system: bool = False,
    *,
    root: str | None = None,
    docker_config: str | None = None,
    force: bool = False,
) -> PluginInstall:
    """Write ``docker-certkit`` (0755) into the plugin dir; a second run changes nothing.

    A ``docker-certkit`` that certkit did not write is replaced only with ``force``.
    """
    from . import files
    from .errors import OperationError

    where = plugin_dir(system, root, docker_config)
    path = where / EXECUTABLE
    text = script()
    current = files.read_text(path) if path.is_file() else None
    scope = "system" if system else "user"
    if current == text:
        return PluginInstall(path, scope, False, sys.executable)
    if path.exists() and not force and (current is None or MARKER not in current):
        raise UsageError(
            f"{path} exists and was not written by certkit; add --force to replace it."
        )
    try:
        if not where.parent.exists():  # ~/.docker as the docker CLI makes it: private
            files.ensure_dir(where.parent, files.PUBLIC_DIR if system else files.PRIVATE_DIR)
        files.ensure_dir(where, files.PUBLIC_DIR)
        files.write_output_file(path, text, 0o755, force=True)
    except OSError as e:
        hint = " (--system needs root)" if system and e.errno in (1, 13) else ""
        raise OperationError(f"cannot write {path}: {e.strerror}{hint}.") from None
    return PluginInstall(path, scope, True, sys.executable)
