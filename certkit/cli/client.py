"""``certkit client-context``, ``certkit env`` and ``certkit context export|import``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .output import CA_OPTION, DOCKER_CONFIG_OPTION, JSON_OPTION, KEY_TYPE_OPTION, emit, say, warn
from .root import app

if TYPE_CHECKING:
    from ..client import ClientResult

context_app = typer.Typer(
    help="Move docker contexts between machines (the docker CLI's export format).",
    no_args_is_help=True,
)
app.add_typer(context_app, name="context")


@app.command("client-context")
def client_context(
    name: str = typer.Argument(
        None, help="Context name (default: the first label of --host, e.g. docker1)."
    ),
    host: str = typer.Option(None, "--host", help="DNS name or IP the daemon is reached by."),
    port: int = typer.Option(2376, "--port", help="TLS port of the daemon."),
    cn: str = typer.Option(None, "--cn", help="Common name of the certificate (default: NAME)."),
    days: int = typer.Option(365, "--days", help="Validity in days."),
    key_type: str = KEY_TYPE_OPTION,
    ca: str = CA_OPTION,
    description: str = typer.Option(None, "--description", help="Shown by `docker context ls`."),
    docker_config: str = DOCKER_CONFIG_OPTION,
    use: bool = typer.Option(
        False, "--use", help="Make it the current context (config.json currentContext)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing context (or files in --out) of that name."
    ),
    client_only: bool = typer.Option(
        False,
        "--client-only",
        help="Write only ca.pem, cert.pem, key.pem into --out, no docker context.",
    ),
    out: str = typer.Option(None, "--out", help="Directory for --client-only (created 0700)."),
    role: str = typer.Option(
        None,
        "--role",
        help="full | read-only | deny | a custom role: what hosts running certkit's "
        "authorization plugin let this identity do (certkit policy push HOST).",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Issue a client certificate and write it as a docker context.

    The context is what `docker context create` would write (TLS files 0600
    in 0700 dirs), so the docker CLI, `docker context ls` and docker-py use it.

    Example: certkit client-context prod --host docker1.example.com --use
    """
    from ..errors import UsageError
    from ..revoke import check_role

    check_role(_store(ca), role)  # before anything is issued
    if client_only:
        if not out:
            raise UsageError("--client-only needs --out DIR for ca.pem, cert.pem and key.pem.")
        if use or docker_config:
            raise UsageError("--client-only writes no context: drop --use and --docker-config.")
        from ..client import client_files

        result = client_files(
            name, out, host, port, cn=cn, days=days, key_type=key_type, ca=ca, force=force
        )
        _record_role(result, role)
        _report_files(result, json_out)
        return
    if out:
        raise UsageError("--out is for --client-only; a context lives in the docker config dir.")
    if not host:
        raise UsageError(
            "--host is required: the DNS name or IP of the Docker host (as in its certificate)."
        )
    from ..client import client_context as _client_context

    result = _client_context(
        name,
        host,
        port,
        cn=cn,
        days=days,
        key_type=key_type,
        ca=ca,
        description=description,
        docker_config=docker_config,
        use=use,
        force=force,
    )
    _record_role(result, role)
    _report_context(result, json_out)


def _store(ca: str) -> Any:
    from ..store import CAStore

    return CAStore(ca)


def _record_role(result: ClientResult, role: str | None) -> None:
    if role is not None:
        from ..revoke import set_role

        set_role(_store(result.ca), "client", result.name, role)
        result.role = role


def _report_context(result: ClientResult, json_out: bool) -> None:
    info = result.context
    assert info is not None
    for warning in result.warnings:
        warn(warning)
    _warn_docker_py(result.docker_py)
    from shlex import quote

    flag = (
        ""
        if info.config_dir == _default_config()
        else f"DOCKER_CONFIG={quote(str(info.config_dir))} "
    )
    if result.used:
        current = f"Current context is now {result.name!r} ({result.config_path})."
        next_line = f"Next: {flag}docker version"
    else:
        current = f"Make it the default with: {flag}docker context use {result.name}"
        next_line = f"Next: {flag}docker --context {result.name} version"
    emit(
        json_out,
        {"ok": True, **result.to_json()},
        [
            f"Issued client certificate {result.common_name!r} ({result.key_type}, "
            f"serial {result.serial[:16]}, valid until {result.not_after[:10]}).",
            f"Docker context {result.name!r} -> {info.host}",
            f"  TLS files: {info.tls_dir}  (key.pem 0600)",
            *([f"  Role: {result.role} (where certkit's plugin runs)"] if result.role else []),
            current,
            next_line,
        ],
    )


def _report_files(result: ClientResult, json_out: bool) -> None:
    for warning in result.warnings:
        warn(warning)
    _warn_docker_py(result.docker_py)
    from shlex import quote

    d = result.out_dir
    q = quote(str(d))  # the lines are commands to copy: quote the path once
    host = result.host or "tcp://HOST:2376"
    https = host.replace("tcp://", "https://", 1)
    emit(
        json_out,
        {"ok": True, **result.to_json()},
        [
            f"Issued client certificate {result.common_name!r} ({result.key_type}, "
            f"serial {result.serial[:16]}, valid until {result.not_after[:10]}).",
            f"Wrote {d}/ca.pem, cert.pem, key.pem (key.pem 0600).",
            f"  docker: DOCKER_HOST={host} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={q} docker version",
            f"  curl:   curl --cacert {quote(f'{d}/ca.pem')} --cert {quote(f'{d}/cert.pem')} "
            f"--key {quote(f'{d}/key.pem')} "
            f"{https}/version",
        ],
    )


def _warn_docker_py(advice: list[str]) -> None:
    if advice:
        warn(f"docker-py: {advice[0]}")
        for line in advice[1:]:
            say(f"  {line}", err=True)


def _default_config() -> Path:
    """The config dir the docker CLI will use in this shell."""
    from ..paths import docker_config_dir

    return docker_config_dir(None)


@app.command("env")
def env(
    name: str = typer.Argument(..., help="Context name (as made by certkit client-context)."),
    shell: str = typer.Option(
        None, "--shell", help="bash | zsh | fish | powershell | cmd (default: from $SHELL)."
    ),
    unset: bool = typer.Option(False, "--unset", help="Print the commands that unset them."),
    docker_config: str = DOCKER_CONFIG_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Print DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, like `docker-machine env`.

    For tools that ignore docker contexts (older docker-py, docker-compose v1, IDEs).
    The variables point at the context's TLS files; DOCKER_HOST overrides any
    context for the docker CLI too, until `eval "$(certkit env NAME --unset)"`.

    Example: eval "$(certkit env prod)"
    """
    from ..dockercli import docker_py_advice, env_variables, read_context, render_env

    info = read_context(name, docker_config)
    variables = env_variables(info)
    chosen = shell or _detect_shell()
    cmd = _env_command(name, chosen, unset, docker_config)
    advice = [] if unset else docker_py_advice()
    if json_out:
        emit(True, {"ok": True, "context": name, "variables": variables, "docker_py": advice})
        return
    _warn_docker_py(advice)
    notes = [f"docker-py: {advice[0]}", *advice[1:]] if advice else []
    typer.echo(render_env(variables, chosen, cmd, unset=unset, notes=notes), nl=False)


def _detect_shell() -> str:
    base = os.path.basename(os.environ.get("SHELL", ""))
    if base in ("zsh", "fish"):
        return base
    if sys.platform == "win32":
        return "powershell"
    return "bash"


def _env_command(name: str, shell: str, unset: bool, docker_config: str | None) -> str:
    parts = ["certkit", "env", name]
    if shell != _detect_shell():
        parts += ["--shell", shell]
    if unset:
        parts.append("--unset")
    if docker_config:
        parts += ["--docker-config", docker_config]
    if shell in ("powershell", "cmd"):
        return " ".join(parts)
    import shlex

    return " ".join(shlex.quote(p) for p in parts)


@context_app.command("export")
def export(
    name: str = typer.Argument(..., help="Context to export."),
    out: str = typer.Option(
        None, "--out", help="Output file (default NAME.dockercontext; '-' for stdout)."
    ),
    docker_config: str = DOCKER_CONFIG_OPTION,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Write a context as the tar `docker context export` makes (it holds the private key).

    Example: certkit context export prod --out prod.dockercontext
    """
    from ..dockercli import export_context
    from ..errors import UsageError

    data = export_context(name, docker_config)
    if out == "-":
        if sys.stdout.isatty():
            raise UsageError("Refusing to write a tar holding a private key to a terminal.")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from ..files import PRIVATE_FILE, write_output_file

    path = Path(out or f"{name}.dockercontext").absolute()
    try:
        write_output_file(path, data, PRIVATE_FILE, force=force)
    except OSError as e:
        raise UsageError(f"Cannot write {path}: {e.strerror}; choose another --out.") from None
    emit(
        json_out,
        {"ok": True, "context": name, "file": str(path), "bytes": len(data)},
        [
            f"Exported context {name!r} to {path} (0600: it holds the private key).",
            f"Next, on the other machine: certkit context import {path.name}"
            f"   (or: docker context import {name} {path.name})",
        ],
    )


@context_app.command("import")
def import_(
    file: str = typer.Argument(..., help="Export file, tar or zip ('-' for stdin)."),
    name: str = typer.Argument(None, help="Context name (default: the name inside the file)."),
    docker_config: str = DOCKER_CONFIG_OPTION,
    force: bool = typer.Option(False, "--force", help="Replace an existing context of that name."),
    use: bool = typer.Option(False, "--use", help="Make it the current context."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Import a context exported by `docker context export` or `certkit context export`.

    Only meta.json and tls/docker/{ca,cert,key}.pem are accepted: links, paths
    leaving the context and oversized files are refused before anything is written.

    Example: certkit context import prod.dockercontext
    """
    from ..dockercli import (
        MAX_ARCHIVE,
        check_current_context,
        docker_context_override_warning,
        docker_host_override_warning,
        import_context,
        read_archive,
        set_current_context,
        validate_context_name,
    )
    from ..errors import UsageError

    if file == "-":
        data, source = sys.stdin.buffer.read(MAX_ARCHIVE + 1), "stdin"
    else:
        try:
            with open(file, "rb") as f:
                data = f.read(MAX_ARCHIVE + 1)
        except OSError as e:
            raise UsageError(f"Cannot read {file}: {e.strerror}.") from None
        source = file
    if use:  # an invalid config.json is refused before the context is written
        target = validate_context_name(name or read_archive(data, source).name)
        check_current_context(target, docker_config)
    info = import_context(data, name, source=source, docker_config=docker_config, force=force)
    lines = [f"Imported context {info.name!r} -> {info.host} into {info.config_dir}."]
    if use:
        set_current_context(info.name, docker_config)
        lines.append(f"Current context is now {info.name!r}.")
        for warning in (docker_host_override_warning(), docker_context_override_warning(info.name)):
            if warning:
                warn(warning)
    lines.append(f"Next: docker --context {info.name} version")
    emit(json_out, {"ok": True, **info.to_json(), "used": use}, lines)
