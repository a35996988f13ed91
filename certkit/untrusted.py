"""Text from outside certkit: shown with control characters escaped, refused where it matters.

A host's daemon.json or command output, a context archive, a CI bundle or a
store file may carry C0/C1 control characters: ESC and CSI sequences that
retitle or clear the admin's terminal, OSC 52 clipboard writes, or a newline
that turns one shell assignment into two.  :func:`escape_controls` is the one
way such text reaches a terminal; :func:`refuse_controls` is the check at a
trust boundary where a value must not hold them at all.
"""

from __future__ import annotations

from .errors import UsageError


def is_control(c: str) -> bool:
    """C0 (U+0000-U+001F), DEL and C1 (U+0080-U+009F): what terminals act on."""
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F


def has_controls(text: str) -> bool:
    return any(is_control(c) for c in text)


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every control character but those in ``keep`` written as ``\\xHH``.

    >>> escape_controls("a\\x1b]0;title\\x07b")
    'a\\\\x1b]0;title\\\\x07b'
    """
    if not has_controls(text):
        return text
    return "".join(f"\\x{ord(c):02x}" if is_control(c) and c not in keep else c for c in text)


def refuse_controls(text: str, what: str) -> str:
    """``text``, or UsageError naming ``what`` when it holds a control character."""
    if has_controls(text):
        raise UsageError(f"{what} {text!r} contains control characters; refusing it.")
    return text
