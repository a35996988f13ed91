"""Start-up speed: coerce plain ``str``/``int``/``bool`` options without pydantic.

typer (0.2x) converts every non-flag option through a pydantic ``TypeAdapter``.
Importing pydantic and building those adapters costs about 80 ms per command
run on a 2-core machine, more than certkit's own work for ``certkit status``
or 100 client certificates (measured with ``python -X importtime`` and
cProfile; see the performance section of the README).

certkit's options are plain strings, integers and flags, which need no
validation framework: this module gives typer a trivial converter for exactly
those and leaves every other annotation to typer.  It touches typer
internals, so it checks they look as expected and otherwise does nothing
(``tests/test_startup.py`` notices when pydantic comes back).
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    """Route plain ``str``/``int``/``bool`` parameters to a pydantic-free converter."""
    try:
        from typer import core
        from typer._click.exceptions import BadParameter
        from typer._coercion import RuntimeParam, TypeDescriptor
    except ImportError:  # another typer layout: keep typer's own behaviour
        return
    original = getattr(core, "build_runtime_param", None)
    if original is None or getattr(original, "_certkit_fast", False):
        return

    def _to_bool(value: Any, param: Any, ctx: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise BadParameter(f"{value!r} is not a valid boolean.", ctx, param)

    class PlainParam(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.annotation is str:
                return value if isinstance(value, str) else str(value)
            if self.annotation is bool:
                return _to_bool(value, param, ctx)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            try:
                return int(value)
            except (TypeError, ValueError):
                raise BadParameter(f"{value!r} is not a valid integer.", ctx, param) from None

    def build_runtime_param(descriptor: TypeDescriptor) -> Any:
        info = descriptor.parameter_info
        plain = (
            descriptor.annotation in (str, int, bool)
            and descriptor.file_annotation is None
            and getattr(info, "parser", None) is None
            and getattr(info, "min", None) is None
            and getattr(info, "max", None) is None
        )
        if plain:
            return PlainParam(parameter_info=info, annotation=descriptor.annotation)
        return original(descriptor)

    build_runtime_param._certkit_fast = True  # type: ignore[attr-defined]
    core.build_runtime_param = build_runtime_param  # type: ignore[attr-defined]


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
