"""The rules certkit's command line parses option values by (certkit/cli/_fastparams.py).

_fastparams replaces typer's pydantic-based conversion with click's rules (stricter
in two places: ASCII digits only, finite floats only) and typer 0.29's ``<int>`` /
``{name}`` help with click's ``INTEGER`` / ``NAME``.  Every rule is pinned here,
on a small app with one option of each kind and on certkit's real commands, and
the last tests fail loudly when a private typer name it patches disappears.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Literal

import pytest
import typer
import typer.core
from typer.testing import CliRunner

import certkit.cli
import certkit.cli.root  # installs the patch, as the certkit command does
from certkit.cli import _fastparams

REPO = Path(__file__).resolve().parent.parent


class Color(str, Enum):  # noqa: UP042 - typer sees str+Enum choices like this
    RED = "red"
    GREEN = "green"


demo = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@demo.command()
def _demo(
    name: str = typer.Argument(..., help="A required argument."),
    extra: str = typer.Argument(None, help="An optional argument."),
    i: int = typer.Option(0, "--i"),
    f: float = typer.Option(0.0, "--f"),
    b: bool = typer.Option(False, "--b", envvar="DEMO_B"),
    flag: bool = typer.Option(False, "--flag"),
    s: str = typer.Option("", "--s"),
    p: Path = typer.Option(None, "--p"),
    pe: Path = typer.Option(None, "--pe", exists=True, dir_okay=False),
    lit: Literal["ec-p256", "rsa-2048"] = typer.Option("ec-p256", "--lit"),
    color: Color = typer.Option(Color.RED, "--color", case_sensitive=False),
    many: list[int] = typer.Option(None, "--many"),
    names: list[str] = typer.Option(None, "--names", metavar="NAME_OR_IP"),
) -> None:
    values = {
        "name": name,
        "extra": extra,
        "i": i,
        "f": f,
        "b": b,
        "flag": flag,
        "s": s,
        "p": p,
        "pe": pe,
        "lit": lit,
        "color": color,
        "many": many,
        "names": names,
    }
    received.clear()
    received.update(values)


received: dict[str, object] = {}
runner = CliRunner()


def parse(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """The values the demo command received for ``ARGS`` (the test fails on a usage error)."""
    received.clear()
    r = runner.invoke(demo, ["n", *args], prog_name="prog", env=env)
    assert r.exit_code == 0, r.output
    return dict(received)


def refused(*args: str, env: dict[str, str] | None = None) -> str:
    """The one-paragraph error for ``ARGS`` (the test fails if they are accepted)."""
    r = runner.invoke(demo, ["n", *args], prog_name="prog", env=env)
    assert r.exit_code == 2, r.output
    return " ".join(r.output.split())


# -- integers: click.INT, ASCII digits only ------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("30", 30), (" 30 ", 30), ("+30", 30), ("-5", -5), ("3_0", 30), ("0", 0), ("007", 7)],
)
def test_int_accepts_what_click_accepts(text: str, value: int) -> None:
    got = parse("--i", text)["i"]
    assert got == value and type(got) is int


@pytest.mark.parametrize("text", ["30.0", "30.5", "1e3", "0x1e", "", "abc", "3 0", "True"])
def test_int_refuses_what_click_refuses(text: str) -> None:
    assert f"Invalid value for '--i': {text!r} is not a valid integer." in refused("--i", text)


@pytest.mark.parametrize("text", ["٣٠", "३०", "３０", "3٠"])
def test_int_refuses_digits_other_than_ascii_with_a_reason(text: str) -> None:
    assert int(text) == 30  # what click's int() would have let through
    assert f"{text!r} is not a valid integer: write numbers with the digits 0-9." in refused(
        "--i", text
    )


# -- floats: click.FLOAT, ASCII and finite --------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("30", 30.0),
        ("30.0", 30.0),
        (" 2.5 ", 2.5),
        ("-0.5", -0.5),
        ("1e3", 1000.0),
        ("1_0.5", 10.5),
    ],
)
def test_float_accepts_what_click_accepts(text: str, value: float) -> None:
    got = parse("--f", text)["f"]
    assert got == value and type(got) is float


@pytest.mark.parametrize("text", ["abc", "", "1,5", "0x1p3"])
def test_float_refuses_what_click_refuses(text: str) -> None:
    assert f"{text!r} is not a valid float." in refused("--f", text)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "Infinity"])
def test_float_refuses_non_finite_numbers(text: str) -> None:
    assert "it must be a finite number." in refused("--f", text)


def test_float_refuses_digits_other_than_ascii() -> None:
    assert "write numbers with the digits 0-9." in refused("--f", "٣.٥")


# -- booleans: click.BOOL (typer's bool options are flags: words come from envvars) ---


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "t", "yes", " Y ", "on"])
def test_bool_true_words(text: str) -> None:
    assert parse(env={"DEMO_B": text})["b"] is True


@pytest.mark.parametrize("text", ["0", "false", "F", "no", "n", "off", ""])
def test_bool_false_words(text: str) -> None:
    assert parse(env={"DEMO_B": text})["b"] is False


@pytest.mark.parametrize("text", ["2", "maybe", "yess", "١"])
def test_bool_refuses_other_words(text: str) -> None:
    msg = refused(env={"DEMO_B": text})
    assert f"{text!r} is not a valid boolean. Recognized values: 0, 1, f, false, n" in msg


def test_flags_are_flags() -> None:
    assert parse()["flag"] is False and parse()["b"] is False
    assert parse("--flag")["flag"] is True and parse("--b")["b"] is True


# -- strings, choices, lists, paths ---------------------------------------------------


@pytest.mark.parametrize("text", ["docker1.example.com", " spaced ", "", "٣٠", "ünïcode"])
def test_str_is_passed_through_unchanged(text: str) -> None:
    got = parse("--s", text)["s"]
    assert got == text and type(got) is str


def test_literal_choices() -> None:
    assert parse()["lit"] == "ec-p256"
    assert parse("--lit", "rsa-2048")["lit"] == "rsa-2048"
    msg = refused("--lit", "RSA-2048")  # case sensitive by default, as click.Choice
    assert "'RSA-2048' is not one of 'ec-p256', 'rsa-2048'." in msg
    assert "is not one of" in refused("--lit", "ed448")


def test_enum_choices_by_value_and_case_insensitive_when_asked() -> None:
    assert parse()["color"] is Color.RED
    assert parse("--color", "GREEN")["color"] is Color.GREEN
    assert "'blue' is not one of 'red', 'green'." in refused("--color", "blue")


def test_lists_convert_each_item() -> None:
    assert parse()["many"] is None and parse()["names"] is None  # as typer's own
    assert parse("--many", "1", "--many", "+2")["many"] == [1, 2]
    assert parse("--names", "a", "--names", "10.0.0.5")["names"] == ["a", "10.0.0.5"]
    assert "'x' is not a valid integer." in refused("--many", "1", "--many", "x")
    assert "write numbers with the digits 0-9." in refused("--many", "٢")


def test_path(tmp_path: Path) -> None:
    assert parse()["p"] is None
    got = parse("--p", "some/where")["p"]
    assert got == Path("some/where") and isinstance(got, Path)
    file = tmp_path / "file.txt"
    file.write_text("x")
    assert parse("--pe", str(file))["pe"] == file
    assert "does not exist." in refused("--pe", str(tmp_path / "missing"))
    assert "is a directory." in refused("--pe", str(tmp_path))


ranged_demo = typer.Typer(add_completion=False, rich_markup_mode=None)


@ranged_demo.command()
def _ranged(ranged: int = typer.Option(5, "--ranged", min=1, max=10)) -> None:
    received["ranged"] = ranged


def test_options_with_min_or_max_keep_typers_own_conversion() -> None:
    from typer._coercion import AdapterRuntimeParam, resolve_type_descriptor
    from typer.models import OptionInfo

    descriptor = resolve_type_descriptor(int, OptionInfo(min=1, max=10))
    assert isinstance(typer.core.build_runtime_param(descriptor), AdapterRuntimeParam)
    r = runner.invoke(ranged_demo, ["--ranged", "7"])
    assert r.exit_code == 0 and received["ranged"] == 7
    r = runner.invoke(ranged_demo, ["--ranged", "11"])
    assert r.exit_code == 2 and "Invalid value for '--ranged'" in r.output
    assert re.search(r"--ranged INTEGER RANGE\s", runner.invoke(ranged_demo, ["--help"]).output)


def test_arguments() -> None:
    r = runner.invoke(demo, ["first", "second"], prog_name="prog")
    assert r.exit_code == 0 and (received["name"], received["extra"]) == ("first", "second")
    r = runner.invoke(demo, [], prog_name="prog")
    assert r.exit_code == 2 and "Missing argument 'name'" in r.output


# -- which converter runs -------------------------------------------------------------


@pytest.mark.parametrize(
    "annotation",
    [str, int, float, bool, Path, Literal["a", "b"], Color, list[str], list[int], list[Path]],
)
def test_plain_annotations_take_the_fast_path(annotation: object) -> None:
    from typer._coercion import AdapterRuntimeParam, resolve_type_descriptor
    from typer.models import OptionInfo

    built = typer.core.build_runtime_param(resolve_type_descriptor(annotation, OptionInfo()))
    assert not isinstance(built, AdapterRuntimeParam)
    assert type(built).__name__ == "FastParam"


def test_parsing_every_kind_does_not_import_pydantic(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "from test_cli_params import demo\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(demo, ['n', '--i', '1', '--f', '2', '--s', 'x',"
        f" '--p', 'q', '--pe', {str(file)!r}, '--lit', 'rsa-2048', '--color', 'green',"
        " '--many', '3', '--names', 'a'], env={'DEMO_B': 'on'})\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.startswith('pydantic')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# -- --help: click's metavars and usage line ------------------------------------------


def demo_help() -> str:
    r = runner.invoke(demo, ["--help"], prog_name="prog")
    assert r.exit_code == 0, r.output
    return r.output


def test_help_usage_line_names_arguments_in_capitals() -> None:
    assert demo_help().splitlines()[0] == "Usage: prog [OPTIONS] NAME [EXTRA]"


@pytest.mark.parametrize(
    "row",
    [
        "--i INTEGER",
        "--f FLOAT",
        "--s TEXT",
        "--p PATH",
        "--pe FILE",
        "--lit [ec-p256|rsa-2048]",
        "--color [red|green]",
        "--many INTEGER",
        "--names NAME_OR_IP",
    ],
)
def test_help_shows_click_metavars(row: str) -> None:
    assert re.search(rf"^\s+{re.escape(row)}\s", demo_help(), re.M), demo_help()


def test_help_arguments_section() -> None:
    text = demo_help()
    assert re.search(r"^\s+NAME\s+A required argument\.", text, re.M), text
    assert re.search(r"^\s+EXTRA\s+An optional argument\.", text, re.M), text


def certkit_help(*words: str) -> str:
    r = runner.invoke(certkit.cli.app, [*words, "--help"], prog_name="certkit")
    assert r.exit_code == 0, r.output
    return r.output


def test_certkit_usage_lines() -> None:
    assert certkit_help("env").splitlines()[0] == "Usage: certkit env [OPTIONS] NAME"
    first = certkit_help("issue-server").splitlines()[0]
    assert first == "Usage: certkit issue-server [OPTIONS] [HOST]"
    first = certkit_help("context", "import").splitlines()[0]
    assert first == "Usage: certkit context import [OPTIONS] FILE [NAME]"


def test_certkit_option_metavars() -> None:
    server = certkit_help("issue-server")
    for row in ("--days INTEGER", "--port INTEGER", "--ca TEXT", "--san NAME_OR_IP"):
        assert re.search(rf"^\s+{re.escape(row)}\s", server, re.M), row
    assert re.search(r"^\s+--timeout FLOAT\s", certkit_help("verify"), re.M)
    assert re.search(r"^\s+--out PATH\s", certkit_help("ci", "export"), re.M)


def test_no_command_shows_typers_angle_or_brace_metavars() -> None:
    def walk(cmd: object, words: list[str]) -> list[list[str]]:
        found = [words]
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            found += walk(sub, [*words, name])
        return found

    paths = walk(typer.main.get_command(certkit.cli.app), [])
    assert len(paths) > 10
    for words in paths:
        text = certkit_help(*words)
        assert not re.search(r"<(str|int|float|bool|path|file|dir)>", text), (words, text)
        assert "{" not in text.splitlines()[0], (words, text)


# -- the typer internals this relies on -----------------------------------------------


def test_typer_is_in_the_pinned_range() -> None:
    """pyproject pins typer to the releases _fastparams was tested with."""
    pyproject = (REPO / "pyproject.toml").read_text()
    pin = re.search(r'"typer>=([\d.]+),<([\d.]+)"', pyproject)
    assert pin, "typer must be pinned to a tested range: _fastparams patches its internals"

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text)[:3])

    installed = version(importlib.metadata.version("typer"))
    assert version(pin[1]) <= installed < version(pin[2])


def test_private_typer_names_exist_in_a_pristine_typer() -> None:
    """Loud failure when a typer release drops or renames a name _fastparams patches.

    Run in a fresh interpreter that never imported certkit.cli, so the check sees
    typer as shipped, not as patched.
    """
    source = Path(_fastparams.__file__)
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('fp', {str(source)!r})\n"
        "fp = importlib.util.module_from_spec(spec); spec.loader.exec_module(fp)\n"
        "assert 'certkit.cli' not in sys.modules\n"
        "print(fp.missing_names())\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", (
        f"typer internals that _fastparams patches are gone: {r.stdout}"
    )


def test_the_patch_is_installed() -> None:
    assert _fastparams.missing_names() == []
    assert getattr(typer.core.build_runtime_param, "_certkit_fast", False)
    assert typer.core.TyperArgument._usage_display_name is _fastparams.usage_piece
    # the runtime params typer builds still go through RuntimeParam.coerce
    from typer._coercion import RuntimeParam, resolve_type_descriptor
    from typer.models import OptionInfo

    built = typer.core.build_runtime_param(resolve_type_descriptor(int, OptionInfo()))
    assert isinstance(built, RuntimeParam)
    assert built.coerce("7", param=_Param(), ctx=None) == 7


class _Param:
    multiple = False
    nargs = 1
