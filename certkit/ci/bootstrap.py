"""In the CI job: turn the secret in the environment into a docker context.

:func:`bootstrap` runs on a bare CI runner.  It reads the secret
(:func:`certkit.ci.bundle.read_secret`), checks it completely before writing
anything, then writes the docker context with :mod:`certkit.dockercli` and
tells later steps about it (``$GITHUB_ENV`` or ``export`` lines).  It needs
no certkit store and never creates one.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import dockercli, paths
from ..errors import OperationError, UsageError
from ..names import format_host
from ..untrusted import has_controls
from .bundle import BUNDLE_ENV, CONTEXT_ENV, Bundle, Checked, check_bundle, read_secret

GITHUB_ENV = "GITHUB_ENV"


@dataclass
class Bootstrapped:
    """What :func:`bootstrap` wrote and what later steps must know."""

    context: str
    host: str
    port: int
    ci_name: str
    not_after: str
    days_left: float
    docker_config: Path
    meta_path: Path
    used: bool
    github_env: Path | None
    env: dict[str, str]  # variables later steps need (DOCKER_CONTEXT, maybe DOCKER_CONFIG)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "context": self.context,
            "docker_host": format_host(self.host, self.port),
            "ci_name": self.ci_name,
            "not_after": self.not_after,
            "days_left": round(self.days_left, 1),
            "docker_config": str(self.docker_config),
            "current": self.used,
            "github_env": str(self.github_env) if self.github_env else None,
            "env": self.env,
            "warnings": self.warnings,
        }

    def export_lines(self) -> list[str]:
        """``export NAME=value`` lines for ``eval "$(certkit ci bootstrap --print-env)"``."""
        return [f"export {k}={shlex.quote(v)}" for k, v in self.env.items()]


def bootstrap(
    env: Mapping[str, str] | None = None,
    *,
    from_env: str | None = None,
    context: str | None = None,
    docker_config: str | os.PathLike[str] | None = None,
    use: bool = True,
    now: dt.datetime | None = None,
) -> Bootstrapped:
    """Turn the CI secret in the environment into a docker context.

    Everything is checked before anything is written; a bad secret raises a
    :class:`UsageError` and leaves the disk untouched.  Then the context is
    written (replacing one of the same name, so re-runs on a persistent
    runner work), made current when ``use``, and ``DOCKER_CONTEXT`` is
    appended to ``$GITHUB_ENV`` when that is set.  No certkit store is read
    or created.
    """
    env = os.environ if env is None else env
    source = from_env or BUNDLE_ENV
    bundle = read_secret(env, from_env)
    if from_env is None and not env.get(BUNDLE_ENV, "").strip():
        source = "the CERTKIT_*_PEM variables"
    checked = check_bundle(bundle, source, now)
    name = _context_name(checked, context, source)
    config_dir = paths.docker_config_dir(docker_config)
    github_env = _github_env_path(env)
    later = {"DOCKER_CONTEXT": name}
    if config_dir != _home_docker_config():
        later["DOCKER_CONFIG"] = str(config_dir)
    _check_later(later)
    if use:
        dockercli.check_current_context(name, config_dir)

    info = _write(bundle, checked, name, config_dir)  # everything above writes nothing
    if use:
        dockercli.set_current_context(name, docker_config=config_dir)
    if github_env is not None:
        _append_github_env(github_env, later)
    warnings = list(checked.warnings)
    overrides = [dockercli.docker_host_override_warning()]
    if use and github_env is None:
        overrides.append(dockercli.docker_context_override_warning(name))
    warnings += [w for w in overrides if w]
    return Bootstrapped(
        context=name,
        host=bundle.host,
        port=bundle.port,
        ci_name=checked.ci_name,
        not_after=checked.not_after.isoformat(),
        days_left=checked.days_left,
        docker_config=config_dir,
        meta_path=Path(info.meta_path),
        used=use,
        github_env=github_env,
        env=later,
        warnings=warnings,
    )


def _context_name(checked: Checked, context: str | None, source: str) -> str:
    """``--context``, else the bundle's context name, else the CI name: checked, before writing."""
    if context:
        return dockercli.validate_context_name(context)
    name = checked.bundle.context or checked.ci_name or "certkit-ci"
    origin = CONTEXT_ENV if source.startswith("the CERTKIT_") else source
    try:
        return dockercli.validate_context_name(name)
    except UsageError:
        raise UsageError(
            f"The context name {name!r} given by {origin} is not a valid docker context "
            "name; pass --context NAME (letters, digits, '_', '.', '+', '-')."
        ) from None


def _write(bundle: Bundle, checked: Checked, name: str, config_dir: Path) -> dockercli.ContextInfo:
    """The context ``name`` for the bundle, replacing one of that name (re-runs on a runner)."""
    who = checked.ci_name or name
    return dockercli.write_context(
        name,
        bundle.host,
        bundle.port,
        bundle.ca.encode(),
        bundle.cert.encode(),
        bundle.key.encode(),
        description=f"certkit CI {who}, certificate until {checked.expiry_date}",
        docker_config=config_dir,
        force=True,
    )


def _home_docker_config() -> Path | None:
    """``~/.docker``, the docker CLI's default config dir; None when there is no home."""
    try:
        return Path.home() / ".docker"
    except RuntimeError:
        return None


def _github_env_path(env: Mapping[str, str]) -> Path | None:
    value = env.get(GITHUB_ENV, "").strip()
    if not value:
        return None
    p = Path(value)
    if not p.parent.is_dir():
        raise UsageError(f"$GITHUB_ENV names {value}, whose directory does not exist.")
    return p


def _check_later(variables: Mapping[str, str]) -> None:
    """The values later steps get go into ``$GITHUB_ENV`` lines and ``export`` lines."""
    for k, v in variables.items():
        if has_controls(v):
            raise UsageError(
                f"Cannot pass {k} to later steps: its value contains a line break or "
                "another control character."
            )


def _append_github_env(path: Path, variables: Mapping[str, str]) -> None:
    """Append ``NAME=value`` lines to the runner's env file (the runner owns it: no rewrite)."""
    _check_later(variables)
    lines = "".join(f"{k}={v}\n" for k, v in variables.items())
    try:
        with open(path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    lines = "\n" + lines
            f.write(lines.encode())
    except OSError as e:
        raise OperationError(f"Cannot append to $GITHUB_ENV ({path}): {e.strerror}.") from None
