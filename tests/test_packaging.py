"""The wheel, built and installed as a user installs it, and shell completion.

The wheel is built from a copy of the source tree (``pip wheel . --no-deps``
would leave ``build/`` and ``*.egg-info`` in the checkout), installed into a
fresh virtualenv with its dependencies from the package index, and run from
outside the checkout so the installed copy, not the source, answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import REPO

from certkit import __version__

SOURCE_JUNK = (".git", ".venv", "build", "dist", "site", "*.egg-info", "__pycache__", ".*_cache")
CERTKIT = Path(sys.executable).with_name("certkit")  # the console script pip installed


def run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=600, cwd=cwd, env=env
    )
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}:\n{r.stdout}{r.stderr}"
    return r.stdout


def build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*SOURCE_JUNK))
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, ".", cwd=src)
    (wheel,) = wheels.glob("certkit-*.whl")
    return wheel


@pytest.mark.slow
def test_pipx_installs_the_wheel_as_the_docs_say(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(tmp_path / "bin"))
    env["CERTKIT_HOME"] = str(tmp_path / "home")
    run(sys.executable, "-m", "pipx", "install", "--python", sys.executable, wheel, env=env)
    certkit = tmp_path / "bin" / "certkit"
    assert run(certkit, "--version", cwd=tmp_path, env=env) == f"certkit {__version__}\n"
    run(certkit, "init-ca", cwd=tmp_path, env=env)
    assert (tmp_path / "home" / "cas" / "default" / "ca.pem").exists()


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv_and_runs(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    assert wheel.name.startswith(f"certkit-{__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "certkit/cli/__init__.py" in names and "certkit/__main__.py" in names
    assert not [n for n in names if not n.startswith(("certkit/", "certkit-"))], names

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["CERTKIT_HOME"] = str(tmp_path / "home")
    outside = tmp_path  # not the checkout: `import certkit` must find the installed copy
    where = run(venv / "bin" / "python", "-c", "import certkit; print(certkit.__file__)",
                cwd=outside, env=env)  # fmt: skip
    assert where.startswith(str(venv)), where
    assert run(venv / "bin" / "certkit", "--version", cwd=outside, env=env) == (
        f"certkit {__version__}\n"
    )
    shown = run(venv / "bin" / "certkit", "--help", cwd=outside, env=env)
    assert "setup" in shown and "init-ca" in shown and "--show-completion" in shown
    run(venv / "bin" / "certkit", "init-ca", cwd=outside, env=env)  # cryptography works too
    assert (tmp_path / "home" / "cas" / "default" / "ca.pem").exists()


def bash(script: str) -> str:
    """Run ``script`` in bash with the console script on PATH (typer detects the shell)."""
    assert CERTKIT.exists(), f"{CERTKIT} is missing: pip install -e . installs it"
    env = {**os.environ, "PATH": f"{CERTKIT.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return run("bash", "-c", script, env=env)


@pytest.mark.parametrize("args", ["--show-completion", "--show-completion bash"])
def test_bash_completion_script_completes_commands(args: str) -> None:
    script = bash(f"certkit {args}")
    assert "complete -o default -F _certkit_completion certkit" in script
    words = bash(
        f"source <(certkit {args})\n"
        "COMP_WORDS=(certkit iss); COMP_CWORD=1; _certkit_completion certkit\n"
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    assert words.split() == ["issue-server", "issue-client"]
    options = bash(
        f"source <(certkit {args})\n"
        "COMP_WORDS=(certkit status --for); COMP_CWORD=2; _certkit_completion certkit\n"
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    assert options.split() == ["--format"]
