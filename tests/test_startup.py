"""Start-up budget: what each command path imports.

Timings depend on the machine, so these tests check the cause instead: the
modules loaded.  `scripts/bench` measures the time (docs/benchmark.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from certkit.cli import app

# Run the real entry point in-process, then dump sys.modules to a file
# (stdout belongs to the command).
_PROBE = """
import json, sys
out, args = sys.argv[1], sys.argv[2:]
if args == ["--import-typer-only"]:
    import typer
else:
    sys.argv = ["certkit", *args]
    from certkit.cli import main
    try:
        main()
    except SystemExit:
        pass
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
"""

DOCKER_SDK = ("docker", "requests", "urllib3", "paramiko")
CRYPTO = ("cryptography",)
# typer converts options through pydantic (~80 ms a run); certkit/cli/_fastparams.py avoids it.
PYDANTIC = ("pydantic", "pydantic_core")
FLEET = ("ansible", "ansible_runner")
# Never on a command's path unless it asks for them (--format prometheus, fleet, a token).
HEAVY = DOCKER_SDK + PYDANTIC + FLEET + ("prometheus_client", "pkcs11", "rich")
# What installs on a host (daemon.json, systemd, plan, targets, SSH, firewall); the
# options (host/options.py) are plain data every record carries.
INSTALL_MACHINERY = ("certkit.host.",)


def imported(tmp_path: Path, *args: str) -> set[str]:
    """Top-level and dotted names of every module ``certkit ARGS`` imported."""
    out = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert out.exists(), r.stdout + r.stderr
    return set(json.loads(out.read_text()))


def loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in packages)


def command_paths() -> list[list[str]]:
    """Every command of the CLI as argv words (``["ca", "show"]``), groups included."""
    paths: list[list[str]] = []

    def walk(cmd: object, prefix: list[str]) -> None:
        subcommands = getattr(cmd, "commands", None) or {}
        for name, sub in subcommands.items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("args", [["--help"], ["--version"], []])
def test_help_and_version_import_neither_cryptography_nor_docker(
    tmp_path: Path, args: list[str]
) -> None:
    modules = imported(tmp_path, *args)
    assert "certkit.cli" in modules  # the probe really ran the CLI
    assert loaded(modules, DOCKER_SDK) == []
    assert loaded(modules, CRYPTO) == []


def test_help_adds_only_certkit_modules_to_what_typer_imports(tmp_path: Path) -> None:
    """`certkit --help` costs typer plus certkit's own small CLI modules, nothing else."""
    extra = imported(tmp_path, "--help") - imported(tmp_path, "--import-typer-only")
    own = ("certkit", "typer")  # and modules built into the interpreter (gc): free to import
    foreign = sorted(
        m for m in extra if not m.startswith(own) and m not in sys.builtin_module_names
    )
    assert foreign == []


def test_every_command_help_stays_light(tmp_path: Path) -> None:
    """Each CLI module imports heavy libraries inside its commands, never at import time."""
    paths = command_paths()
    assert ["init-ca"] in paths and ["issue-client"] in paths
    for words in paths:
        modules = imported(tmp_path, *words, "--help")
        assert loaded(modules, DOCKER_SDK + CRYPTO) == [], words


def test_init_ca_does_not_import_the_docker_sdk(tmp_path: Path, certkit_home: Path) -> None:
    modules = imported(tmp_path, "init-ca")
    assert (certkit_home / "cas" / "default" / "ca.pem").exists()  # it really ran
    assert loaded(modules, DOCKER_SDK) == []
    assert loaded(modules, PYDANTIC) == []


def test_issuing_commands_run_without_pydantic(tmp_path: Path, certkit_home: Path) -> None:
    """Plain str/int/bool options are converted without typer's pydantic adapters."""
    imported(tmp_path, "init-ca")
    out = tmp_path / "clients"
    modules = imported(tmp_path, "issue-client", "--count", "3", "--days", "30", "--out", str(out))
    assert len(list(out.iterdir())) == 3  # it really ran, with the int options converted
    assert loaded(modules, PYDANTIC) == []
    assert loaded(modules, DOCKER_SDK) == []


@pytest.mark.parametrize("command", ["status", "list"])
def test_status_and_list_do_not_import_the_docker_sdk(
    tmp_path: Path, certkit_home: Path, command: str
) -> None:
    if [command] not in command_paths():
        pytest.skip(f"`certkit {command}` is not there yet")
    imported(tmp_path, "init-ca")
    modules = imported(tmp_path, command)
    assert "certkit.cli.inspect" in modules
    assert loaded(modules, DOCKER_SDK) == []
    assert loaded(modules, PYDANTIC) == []


def test_prometheus_format_imports_prometheus_client_only_there(
    tmp_path: Path, certkit_home: Path
) -> None:
    imported(tmp_path, "init-ca")
    text = imported(tmp_path, "status")
    assert "certkit.cli.inspect" in text and loaded(text, ("prometheus_client",)) == []
    metrics = imported(tmp_path, "status", "--format", "prometheus")
    assert "certkit.metrics" in metrics and loaded(metrics, ("prometheus_client",))
    assert loaded(metrics, DOCKER_SDK + CRYPTO + PYDANTIC) == []


def _top_level_names(modules: str) -> set[str]:
    """The top-level commands of the app once ``modules`` (comma-separated) are loaded."""
    code = (
        "import sys, typer.main\n"
        "from certkit.cli import load_commands\n"
        "app = load_commands(tuple(m for m in sys.argv[1].split(',') if m))\n"
        "print('\\n'.join(typer.main.get_command(app).commands))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, modules], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_each_command_is_found_in_the_module_the_cli_loads_for_it() -> None:
    """`certkit WORD` imports only COMMAND_MODULES[WORD]: that module must register WORD,
    and every command of the CLI must be listed (else it runs, but loads every module)."""
    from certkit.cli import COMMAND_MODULES, MODULES

    everything = {path[0] for path in command_paths() if len(path) == 1}
    assert set(COMMAND_MODULES) == everything
    assert set(COMMAND_MODULES.values()) == set(MODULES)
    for module in MODULES:
        words = {w for w, m in COMMAND_MODULES.items() if m == module}
        assert _top_level_names(module) == words, module
    assert _top_level_names("") == set()  # --version alone registers nothing


def test_a_command_run_imports_only_its_own_cli_module(tmp_path: Path) -> None:
    modules = imported(tmp_path, "status", "--help")
    cli = sorted(m for m in modules if m.startswith("certkit.cli."))
    assert cli == ["certkit.cli._fastparams", "certkit.cli.inspect", "certkit.cli.output",
                   "certkit.cli.root"]  # fmt: skip
    assert "certkit.cli.server" in imported(tmp_path, "--help")  # the list needs them all


def test_modules_for_picks_the_command_module_or_all(monkeypatch: pytest.MonkeyPatch) -> None:
    from certkit.cli import MODULES, modules_for

    assert modules_for(["status", "--json"]) == ("inspect",)
    assert modules_for(["renew", "server", "h"]) == ("lifecycle",)
    assert modules_for(["--version"]) == ()
    for argv in ([], ["--help"], ["--version", "-h"], ["statu"]):  # the list of commands
        assert modules_for(argv) == MODULES, argv
    monkeypatch.setenv("_CERTKIT_COMPLETE", "bash_complete")  # completion lists every command
    assert modules_for(["status"]) == MODULES


def install_machinery(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules if m.startswith(INSTALL_MACHINERY) and m != "certkit.host.options"
    )


# Each command path with what it must not import beyond HEAVY.  {out} and {root} are
# replaced by directories of the test; the store already holds a CA.
PATHS: list[tuple[str, bool, bool]] = [
    # certkit ARGS, may import cryptography, may import the install machinery
    ("--help", False, False),
    ("--version", False, False),
    ("", False, False),
    ("status", False, False),
    ("status --json --warn-days 10", False, False),
    ("list --kind server", False, False),
    ("issue-server --help", False, False),
    ("renew server --help", False, False),
    ("setup --help", False, False),
    ("issue-server h1.example --out {out}", True, False),
    ("issue-server h2.example --san a.example --san 10.0.0.9 --out {out}2", True, False),
    ("issue-client c1 --out {out}3", True, False),
    ("issue-server h3.example --install --root {root} --method daemon-json --dry-run", True, True),
    ("renew server h2.example --san b.example", True, True),
    ("setup localhost --install --root {root} --method daemon-json --context ck", True, True),
]


def test_every_command_path_imports_only_what_it_needs(tmp_path: Path, certkit_home: Path) -> None:
    """pydantic (typer's option conversion), the docker SDK, Ansible, prometheus_client:
    on no path here; cryptography only where a certificate is made; the install machinery
    (certkit.host.*) only where something is installed: never for `issue-server --out`."""
    imported(tmp_path, "init-ca")
    for args, crypto, machinery in PATHS:
        argv = args.format(out=tmp_path / "out", root=tmp_path / "root").split()
        modules = imported(tmp_path, *argv)
        assert "certkit.cli.root" in modules, argv  # the probe really ran the CLI
        assert loaded(modules, HEAVY) == [], argv
        if not crypto:
            assert loaded(modules, CRYPTO) == [], argv
        if not machinery:
            assert install_machinery(modules) == [], argv
    assert (tmp_path / "out" / "server-cert.pem").exists()  # the paths really ran
    assert (tmp_path / "out2" / "server-cert.pem").exists()
    assert (tmp_path / "root" / "etc" / "docker" / "daemon.json").exists()


def test_the_install_machinery_is_found_by_the_check(tmp_path: Path, certkit_home: Path) -> None:
    """The check above can fail: an install imports the modules it looks for."""
    imported(tmp_path, "init-ca")
    modules = imported(tmp_path, "issue-server", "h.example", "--install", "--root",
                       str(tmp_path / "r"), "--method", "daemon-json")  # fmt: skip
    assert "certkit.host.plan" in install_machinery(modules)
    assert loaded(modules, CRYPTO)


def test_the_start_up_objects_are_frozen_and_the_gc_is_back_on(tmp_path: Path) -> None:
    """main() loads typer and the command's module without cyclic GC, then freezes what
    they made (never scanned again) and turns the GC back on for the command."""
    code = (
        "import gc, sys\n"
        "sys.argv = ['certkit', '--version']\n"
        "from certkit.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 1000)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["certkit", "0.1.0", "True", "True"]


def test_every_option_of_every_command_converts_without_pydantic() -> None:
    """typer converts what _fastparams does not through pydantic: an option typed
    ``int | None`` or given ``min=``, added to any command, would bring it back."""
    import inspect
    import typing

    from typer.models import ParameterInfo

    from certkit.cli import _fastparams, app

    def walk(t: typer.Typer, prefix: list[str]) -> list[str]:
        typer_path = []
        for command in t.registered_commands:
            hints = typing.get_type_hints(command.callback)
            for name, p in inspect.signature(command.callback).parameters.items():
                assert isinstance(p.default, ParameterInfo), (command.name, name)
                if _fastparams.converter_for(hints[name], p.default) is None:
                    typer_path.append(" ".join([*prefix, str(command.name), name]))
        for group in t.registered_groups:
            assert group.typer_instance is not None
            typer_path += walk(group.typer_instance, [*prefix, str(group.name)])
        return typer_path

    assert walk(app, []) == []
