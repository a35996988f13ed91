"""``certkit ci export`` (where the CA lives) and ``certkit ci bootstrap`` (in the CI job)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .output import CA_OPTION, DOCKER_CONFIG_OPTION, JSON_OPTION, emit, say, warn
from .root import app

if TYPE_CHECKING:
    from ..ci import Bootstrapped, Exported

ci_app = typer.Typer(
    help=(
        "CI secrets: export a short-lived client certificate as one secret, "
        "turn it into a docker context inside the job."
    ),
    no_args_is_help=True,
)
app.add_typer(ci_app, name="ci")


@ci_app.command("export")
def export(
    name: str = typer.Argument(
        ..., help="Name of this CI (also the context name); the CN is ci:NAME."
    ),
    host: str = typer.Option(
        None,
        "--host",
        help="Docker host the job connects to (HOST, HOST:PORT or tcp://HOST:PORT). "
        "Remembered: re-exports may omit it.",
    ),
    port: int = typer.Option(None, "--port", help="TLS port of the daemon (default 2376)."),
    days: int = typer.Option(
        None, "--days", help="Validity of the CI certificate in days (default 30)."
    ),
    key_type: str = typer.Option(
        None, "--key-type", help="ec-p256 (default) | ec-p384 | rsa-2048 | ... | ed25519."
    ),
    context: str = typer.Option(
        None, "--context", help="Name of the docker context the job gets (default NAME)."
    ),
    ca: str = CA_OPTION,
    fmt: str = typer.Option(
        "bundle",
        "--format",
        help="bundle (one secret, for `certkit ci bootstrap`) | tar (one secret a job unpacks "
        "with base64 and tar, no install) | env (dotenv, one variable per PEM) | json | "
        "github / gitlab (print the commands that store the secret; nothing is issued).",
    ),
    out: Path = typer.Option(
        None, "--out", help="Write the secret to this file (created 0600) instead of stdout."
    ),
    force: bool = typer.Option(False, "--force", help="Replace the --out file if it exists."),
    role: str = typer.Option(
        None,
        "--role",
        help="full | read-only | deny | a custom role (e.g. deploy-only): what hosts running "
        "certkit's authorization plugin let this job do. Remembered for NAME.",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Issue a short-lived CI client certificate and print it as one CI secret.

    The secret holds a private key: pipe it straight into your CI's secret
    store. Re-running it for the same NAME rotates the secret (the previous
    certificate is marked superseded).

    Example: certkit ci export deploy --host docker1.example.com | gh secret set CERTKIT_BUNDLE
    """
    from ..ci import (
        RECIPE_FORMATS,
        check_format,
        check_out,
        export_ci,
        export_settings,
        setup_recipe,
    )
    from ..errors import UsageError
    from ..revoke import check_role, set_role
    from ..store import CAStore

    form = check_format(fmt)
    store = CAStore(ca).require()
    check_role(store, role)
    settings = export_settings(store, name, host, port, days, key_type, context)
    if form in RECIPE_FORMATS:
        if out is not None:
            raise UsageError(f"--format {form} prints commands, not a secret: drop --out.")
        recipe = setup_recipe(form, settings, ca)
        emit(json_out, {"format": form, "recipe": recipe}, [recipe.rstrip("\n")])
        if not json_out:
            typer.echo("Nothing was issued yet: run the command of step 1.", err=True)
        return
    if out is not None:
        check_out(out, force=force)  # before issuing: a typo must not cost a certificate
    exported = export_ci(store, settings, form)
    if role is not None:
        set_role(store, "ci", settings.name, role)
    _render_export(exported, out, json_out, force)


def _render_export(exported: Exported, out: Path | None, json_out: bool, force: bool) -> None:
    from ..ci import GITLAB_MAX_VALUE, write_out

    summary = exported.summary()
    text = exported.text
    if out is not None:
        written = write_out(out, text, force=force)
        summary["out"] = str(written)
    elif json_out:
        summary["secret"] = text
    else:
        # The secret itself: exactly what was asked for, nothing else on stdout.
        one_line = exported.fmt in ("bundle", "tar")
        newline = "\n" if one_line and sys.stdout.isatty() else ""
        sys.stdout.write(text + newline)
        sys.stdout.flush()
        if sys.stdout.isatty():
            warn(
                "the secret above holds a private key; pipe it into your CI's secret store "
                "or use --out FILE rather than leaving it in the terminal."
            )
    lines = _export_lines(exported, summary.get("out"))
    if out is not None or json_out:
        emit(json_out, {"ok": True, **summary}, lines)
    else:
        for line in lines:  # stdout carries the secret: the messages go to stderr
            say(line, err=True)
    if exported.fmt in ("bundle", "tar") and len(text) > GITLAB_MAX_VALUE:
        warn(
            f"the {exported.fmt} secret is {len(text)} characters, more than a GitLab "
            "variable holds "
            f"({GITLAB_MAX_VALUE}); use --key-type ec-p256 or --format env."
        )


def _export_lines(exported: Exported, out: str | None) -> list[str]:
    from ..names import format_host

    b = exported.bundle
    rec = exported.record
    lines = [
        f"Issued CI certificate {rec.subject} (serial {rec.serial}) for "
        f"{format_host(b.host, b.port)}, valid until {rec.not_after[:10]}."
    ]
    for old in exported.superseded:
        lines.append(
            f"Superseded serial {old.serial}: it stays valid until {old.not_after[:10]} "
            "(dockerd cannot revoke), so replace the secret everywhere it is stored."
        )
    if out:
        lines.append(f"Secret written to {out} (mode 0600).")
    if exported.fmt == "bundle":
        lines.append(
            "Next: store it as the CI secret CERTKIT_BUNDLE and run `certkit ci bootstrap` "
            "in the job (recipes: --format github | gitlab)."
        )
    elif exported.fmt == "tar":
        lines.append(
            "Next: store it as the CI secret CERTKIT_DOCKER_TLS and unpack it in the job with "
            "base64 and tar, no install (recipes: --format github | gitlab)."
        )
    elif exported.fmt == "env":
        lines.append(
            "Next: store each variable as a masked CI variable and run `certkit ci bootstrap`."
        )
    return lines


@ci_app.command("bootstrap")
def bootstrap(
    from_env: str = typer.Option(
        None,
        "--from-env",
        metavar="VAR",
        help="Variable holding the bundle (default CERTKIT_BUNDLE, else the "
        "CERTKIT_DOCKER_HOST / CERTKIT_CA_PEM / CERTKIT_CERT_PEM / CERTKIT_KEY_PEM layout).",
    ),
    context: str = typer.Option(
        None, "--context", help="Context name (default: the one in the bundle)."
    ),
    docker_config: Path = DOCKER_CONFIG_OPTION,
    use: bool = typer.Option(
        True, "--use/--no-use", help="Make it the current context (default) or only create it."
    ),
    print_env: bool = typer.Option(
        False,
        "--print-env",
        help='Print only `export` lines on stdout, for eval "$(certkit ci bootstrap --print-env)".',
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help="Then prove the connection: docker-py reaches the daemon through the context.",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create the docker context from the CI secret, inside the CI job.

    Checks the secret completely first (format, key, CA chain, expiry) and
    writes nothing when it is bad. Needs no certkit store. On GitHub Actions
    it appends DOCKER_CONTEXT to $GITHUB_ENV so later steps use the context.

    Example: CERTKIT_BUNDLE=... certkit ci bootstrap && docker version

    Example (fail the job early when the daemon is unreachable): certkit ci bootstrap --check
    """
    from ..ci import bootstrap as _bootstrap

    result = _bootstrap(from_env=from_env, context=context, docker_config=docker_config, use=use)
    lines = _bootstrap_lines(result)
    data = result.to_json()
    if check:
        from ..dockerpy import prove

        proof = prove(result.context, result.docker_config)
        data["check"] = proof.to_json()
        lines.insert(
            -1, f"Checked: docker-py reached Docker {proof.engine} (API {proof.api_version})."
        )
    if json_out:
        emit(True, data)
    elif print_env:
        for line in result.export_lines():
            typer.echo(line)
        for line in lines:
            say(line, err=True)
    else:
        emit(False, None, lines)
    for message in result.warnings:
        warn(message)


def _bootstrap_lines(r: Bootstrapped) -> list[str]:
    from ..ci import describe_days
    from ..names import format_host

    who = f"ci:{r.ci_name}" if r.ci_name else "the CI certificate"
    lines = [
        f"Context {r.context!r} -> {format_host(r.host, r.port)} "
        f"({who}, valid until {r.not_after[:10]}, {describe_days(r.days_left)} left).",
    ]
    if r.used:
        lines.append(f"It is now the current context in {r.docker_config}.")
    else:
        lines.append(f"Written to {r.docker_config}; select it with DOCKER_CONTEXT={r.context}.")
    if r.github_env is not None:
        lines.append(f"Later steps use it: {', '.join(r.env)} appended to $GITHUB_ENV.")
    lines.append(
        f"Next: docker version   (if it cannot connect: certkit verify --context {r.context})"
    )
    return lines
