"""Text from outside certkit: shown with control characters escaped, refused where it matters.

A host's daemon.json or command output, a context archive, a CI bundle or a
store file may carry C0/C1 control characters: ESC and CSI sequences that
retitle or clear the admin's terminal, OSC 52 clipboard writes, or a newline
that turns one shell assignment into two.  :func:`escape_controls` is the one
way such text reaches a terminal; :func:`refuse_controls` is the check at a
trust boundary where a value must not hold them at all.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from .errors import UsageError

_CONTROL_CHARS = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))  # as is_control()


@functools.lru_cache
def _controls_but(keep: str) -> re.Pattern[str]:
    """The control characters not in ``keep``, searched in C (`certkit list` escapes megabytes)."""
    return re.compile(f"[{re.escape(''.join(c for c in _CONTROL_CHARS if c not in keep))}]")


def is_control(c: str) -> bool:
    """C0 (U+0000-U+001F), DEL and C1 (U+0080-U+009F): what terminals act on."""
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F


def has_controls(text: str) -> bool:
    return _controls_but("").search(text) is not None


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every control character but those in ``keep`` written as ``\\xHH``.

    >>> escape_controls("a\\x1b]0;title\\x07b")
    'a\\\\x1b]0;title\\\\x07b'
    """
    return _controls_but(keep).sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def refuse_controls(text: str, what: str) -> str:
    """``text``, or UsageError naming ``what`` when it holds a control character."""
    if has_controls(text):
        raise UsageError(f"{what} {text!r} contains control characters; refusing it.")
    return text


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` for text from outside certkit: any failure, nesting too deep for the
    parser included (``[[[[…`` raises RecursionError), is a ValueError the caller already
    turns into one sentence."""
    import json

    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
