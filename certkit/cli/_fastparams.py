"""Start-up speed: convert certkit's plain option types without pydantic.

typer 0.29 converts every option through a pydantic ``TypeAdapter``.  Importing
pydantic and building those adapters costs about 80-110 ms per command run on a
2-core machine, more than certkit's own work for ``certkit status`` (measured
with ``python -X importtime``).  typer has no supported switch for this, so this
module replaces one private typer function, ``typer.core.build_runtime_param``,
with one that converts ``str``, ``int``, ``float``, ``bool``, ``pathlib.Path``,
``Literal``/``Enum`` choices and ``list[...]`` of those itself and hands every
other annotation (and any option with ``parser=``, ``min``/``max``, files) to
typer's own function.

The rules are click's (``click.STRING``, ``INT``, ``FLOAT``, ``BOOL``), made
stricter in one place, with a message that says why: numbers must be written
with ASCII digits (``int()`` and ``float()`` also take Arabic-Indic,
Devanagari, full-width ... digits; click passes them through) and a float must
be finite (no ``nan``/``inf``).  ``--days 30.0`` is refused as click refuses it.

It also makes ``--help`` speak click's language: ``--days INTEGER``,
``--out PATH``, ``--kind [a|b]`` and ``Usage: certkit env [OPTIONS] NAME``
instead of typer 0.29's ``<int>``, ``<path>`` and ``{name}``.

Every private name used is listed in :data:`PATCHED`; the ``typer`` requirement
in pyproject.toml is pinned to the releases this was tested with, and
``tests/test_cli_params.py`` fails loudly if any of the names disappears or
changes shape.  If typer's layout is not the expected one at run time, nothing
is patched and typer's own behaviour applies.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

#: Every private typer name this module uses or replaces, as (module, attribute path).
PATCHED: tuple[tuple[str, str], ...] = (
    ("typer.core", "build_runtime_param"),  # replaced
    ("typer.core", "_TyperParameter.display_type"),  # replaced: option metavars
    ("typer.core", "TyperArgument._usage_display_name"),  # replaced: usage line
    ("typer.core", "TyperArgument._rich_display_name"),  # replaced: Arguments section
    ("typer._coercion", "RuntimeParam"),  # subclassed (fields, coerce, _coerce_value)
    ("typer._coercion", "TypeDescriptor"),  # read: annotation, parameter_info, ...
    ("typer._click.exceptions", "BadParameter"),  # raised
    ("typer._param_types", "coerce_cli_path"),  # called: typer's own Path checks
)


def missing_names() -> list[str]:
    """The entries of :data:`PATCHED` the installed typer lacks (empty when all are there)."""
    import importlib

    missing = []
    for module_name, path in PATCHED:
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            missing.append(f"{module_name} (module)")
            continue
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                missing.append(f"{module_name}.{path}")
                break
    return missing


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"", "0", "false", "f", "no", "n", "off"})
_MARK = "_certkit_fast"

Converter = Callable[[Any, Any, Any], Any]


class _Invalid(ValueError):
    """A value this module refuses; the message is shown as typer's BadParameter."""


def to_str(value: Any) -> str:
    """click.STRING: bytes are decoded as the file system does, anything else ``str()``."""
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return value if isinstance(value, str) else str(value)


def _ascii_number(value: Any, kind: str) -> str:
    text = to_str(value)
    if not text.isascii():
        raise _Invalid(f"{text!r} is not a valid {kind}: write numbers with the digits 0-9.")
    return text


def to_int(value: Any) -> int:
    """click.INT (``int(text)``: sign, surrounding blanks and ``_`` between digits allowed),
    but digits other than ASCII 0-9 are refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = _ascii_number(value, "integer")
    try:
        return int(text)
    except ValueError:
        raise _Invalid(f"{text!r} is not a valid integer.") from None


def to_float(value: Any) -> float:
    """click.FLOAT (``float(text)``), but ASCII only and finite (no nan/inf)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        text = _ascii_number(value, "float")
        try:
            number = float(text)
        except ValueError:
            raise _Invalid(f"{text!r} is not a valid float.") from None
    if not math.isfinite(number):
        raise _Invalid(f"{value!r} is not a valid float: it must be a finite number.")
    return number


def to_bool(value: Any) -> bool:
    """click.BOOL: 1/true/t/yes/y/on and 0/false/f/no/n/off (any case, blanks
    around them ignored); the empty string is False."""
    if isinstance(value, bool):
        return value
    text = to_str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    states = ", ".join(sorted(_TRUE | _FALSE - {""}))
    raise _Invalid(f"{value!r} is not a valid boolean. Recognized values: {states}")


def choices_of(annotation: Any) -> tuple[Any, ...] | None:
    """The choices of a ``Literal[...]`` or ``Enum`` annotation, else None."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return tuple(annotation)
    return None


def _choice_text(choice: Any) -> str:
    return str(choice.value) if isinstance(choice, Enum) else str(choice)


def to_choice(value: Any, choices: tuple[Any, ...], case_sensitive: bool) -> Any:
    """click.Choice: the value must be one of the choices (Enum members by value)."""
    if any(value is choice for choice in choices):
        return value
    text = to_str(value)
    fold: Callable[[str], str] = (lambda s: s) if case_sensitive else str.casefold
    for choice in choices:
        if fold(_choice_text(choice)) == fold(text):
            return choice
    allowed = ", ".join(repr(_choice_text(c)) for c in choices)
    raise _Invalid(f"{text!r} is not one of {allowed}.")


_SCALARS: dict[Any, Callable[[Any], Any]] = {
    str: to_str,
    int: to_int,
    float: to_float,
    bool: to_bool,
}


def _leaf_converter(annotation: Any, info: Any) -> Converter | None:
    """A converter for one value of ``annotation``, or None to leave it to typer."""
    scalar = _SCALARS.get(annotation)
    if scalar is not None:
        return lambda value, param, ctx: scalar(value)
    choices = choices_of(annotation)
    if choices is not None:
        case_sensitive = bool(getattr(info, "case_sensitive", True))
        return lambda value, param, ctx: to_choice(value, choices, case_sensitive)
    if annotation is Path and getattr(info, "path_type", None) is None:
        from typer._param_types import coerce_cli_path

        def to_path(value: Any, param: Any, ctx: Any) -> Any:
            path = value if isinstance(value, Path) else Path(to_str(value))
            return coerce_cli_path(path, info, path_type=Path, param=param, ctx=ctx)

        return to_path
    return None


def converter_for(annotation: Any, info: Any) -> Converter | None:
    """The converter for a parameter, or None when typer's own must be used."""
    if any(getattr(info, name, None) is not None for name in ("parser", "min", "max")):
        return None
    if getattr(info, "click_type", None) is not None:
        return None
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        leaf = _leaf_converter(item, info)
        if leaf is None:
            return None
        each = leaf

        def to_list(value: Any, param: Any, ctx: Any) -> list[Any]:
            items = value if isinstance(value, (list, tuple)) else [value]
            return [each(v, param, ctx) for v in items]

        return to_list
    return _leaf_converter(annotation, info)


# -- help text: click's metavars and usage line --------------------------------------

_CLICK_NAMES = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN", Path: "PATH"}


def metavar_for(annotation: Any, info: Any, is_argument: bool = False) -> str:
    """click's metavar for one parameter: TEXT, INTEGER, FLOAT, PATH, [a|b], ..."""
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    if get_origin(annotation) is tuple:
        return " ".join(metavar_for(a, info) for a in get_args(annotation))
    choices = choices_of(annotation)
    if choices is not None:
        return "[" + "|".join(_choice_text(c) for c in choices) + "]"
    if is_argument:
        return ""
    name = _CLICK_NAMES.get(annotation)
    if name == "PATH" or (name is None and getattr(info, "path_type", None) is not None):
        file_okay, dir_okay = getattr(info, "file_okay", True), getattr(info, "dir_okay", True)
        if file_okay != dir_okay:
            return "FILE" if file_okay else "DIRECTORY"
        return "PATH"
    if name is not None:
        if annotation in (int, float) and (info.min is not None or info.max is not None):
            return f"{name} RANGE"
        return name
    return str(getattr(annotation, "__name__", annotation)).upper()


def argument_name(param: Any) -> str:
    """An argument's name as click writes it: its metavar, else its name in capitals."""
    return str(param.metavar) if param.metavar is not None else str(param.name).upper()


def usage_piece(param: Any) -> str:
    """click's usage word for an argument: NAME, [NAME], NAME... or [NAME]..."""
    name = argument_name(param)
    if not param.required:
        name = f"[{name}]"
    if param.nargs != 1:
        name += "..."
    return name


def install() -> None:
    """Patch typer (see the module docstring); does nothing when typer's layout differs."""
    if missing_names():  # another typer layout: keep typer's own behaviour
        return
    from typer import _coercion, core

    original = getattr(core, "build_runtime_param")  # noqa: B009
    if getattr(original, _MARK, False):
        return
    from typer._click.exceptions import BadParameter

    class FastParam(_coercion.RuntimeParam):
        convert: Converter

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return self.convert(value, param, ctx)
            except _Invalid as e:
                raise BadParameter(str(e), ctx=ctx, param=param) from None

    def build_runtime_param(descriptor: Any) -> Any:
        convert = None
        if descriptor.file_annotation is None:
            convert = converter_for(descriptor.annotation, descriptor.parameter_info)
        if convert is None:
            return original(descriptor)
        fast = FastParam(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation)
        object.__setattr__(fast, "convert", convert)  # a frozen dataclass
        return fast

    setattr(build_runtime_param, _MARK, True)
    setattr(core, "build_runtime_param", build_runtime_param)  # noqa: B010

    def display_type(self: Any, ctx: Any) -> str:
        desc = self.type_descriptor
        is_argument = isinstance(self, core.TyperArgument)
        return metavar_for(desc.annotation, desc.parameter_info, is_argument)

    def rich_display_name(self: Any) -> str:
        return argument_name(self) + ("..." if self.metavar is None and self.nargs != 1 else "")

    setattr(core._TyperParameter, "display_type", display_type)  # noqa: B010
    setattr(core.TyperArgument, "_usage_display_name", usage_piece)  # noqa: B010
    setattr(core.TyperArgument, "_rich_display_name", rich_display_name)  # noqa: B010
