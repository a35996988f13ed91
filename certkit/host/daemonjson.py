"""daemon.json: parsed as strictly as dockerd reads it, edited touching only certkit's keys."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

from ..errors import UsageError


def _no_duplicates(path: object) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise UsageError(
                    f"{path} sets {key!r} twice: keep one of them, then run again "
                    "(the file was left untouched)."
                )
            out[key] = value
        return out

    return hook


def _no_constant(path: object) -> Callable[[str], Any]:
    """NaN, Infinity and -Infinity: Python's json reads them, dockerd (Go) refuses the file."""

    def hook(name: str) -> Any:
        raise UsageError(
            f"{path} holds {name}, which is not JSON and makes dockerd refuse the file: "
            "use a number, then run again (the file was left untouched)."
        )

    return hook


MAX_DEPTH = 64  # nesting certkit reads in daemon.json; real settings use 3 or 4


def _too_deep(text: str) -> bool:
    """True when ``text`` nests ``[``/``{`` beyond :data:`MAX_DEPTH` (strings skipped):
    checked before parsing, so no input reaches the parser's recursion limit."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def parse_daemon_json(text: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The daemon.json object; UsageError naming line and column when it is not one.

    An empty (or whitespace-only) file counts as ``{}``, as dockerd reads it.
    """
    if not text.strip():
        return {}
    if _too_deep(text):
        raise UsageError(
            f"{path} nests arrays or objects more than {MAX_DEPTH} levels deep (dockerd's "
            "settings need a few): fix it, then run again (the file was left untouched)."
        )
    try:
        data = json.loads(
            text, object_pairs_hook=_no_duplicates(path), parse_constant=_no_constant(path)
        )
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): "
            "fix it, then run again (the file was left untouched)."
        ) from None
    if not isinstance(data, dict):
        raise UsageError(
            f"{path} must hold a JSON object ({{...}}), not a {type(data).__name__}: "
            "fix it, then run again (the file was left untouched)."
        )
    return data


def config_or_empty(text: str | None) -> dict[str, Any]:
    """daemon.json for read-only checks: an unreadable one counts as empty."""
    try:
        return parse_daemon_json(text or "", "daemon.json")
    except UsageError:
        return {}


def json_hosts(config: dict[str, Any]) -> list[str]:
    hosts = config.get("hosts")
    if isinstance(hosts, str):
        return [hosts]
    if isinstance(hosts, list):
        return [str(h) for h in hosts]
    return []


def _indent_of(text: str | None) -> int:
    """The indent the user's daemon.json uses (2 when it cannot tell)."""
    for line in (text or "").splitlines()[1:]:
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            return len(line) - len(stripped)
    return 2


def dump_daemon_json(config: dict[str, Any], indent: int = 2) -> str:
    return json.dumps(config, indent=indent, ensure_ascii=False) + "\n"


_WS = re.compile(r"\s*")


def _skip_ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


def _top_level_spans(text: str) -> dict[str, tuple[int, int]] | None:
    """Where each top-level value sits in a daemon.json object: key -> (start, end).

    None when the text is not a plain JSON object (the caller then rewrites
    the whole file).
    """
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if text[i : i + 1] != "{":
        return None
    i += 1
    spans: dict[str, tuple[int, int]] = {}
    while True:
        i = _skip_ws(text, i)
        if text[i : i + 1] == "}":
            return spans
        try:
            key, i = decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i : i + 1] != ":":
                return None
            start = _skip_ws(text, i + 1)
            _, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            return None
        spans[str(key)] = (start, end)
        i = _skip_ws(text, end)
        if text[i : i + 1] == ",":
            i += 1


def edit_daemon_json(text: str | None, old: dict[str, Any], new: dict[str, Any]) -> str:
    """``new`` as daemon.json text, touching only the keys that change.

    Every other key keeps its exact text (spacing, order, nested layout), so
    the diff shows only what certkit set.  Falls back to a full rewrite in the
    user's indent when the file cannot be edited in place.
    """
    indent = _indent_of(text)
    full = dump_daemon_json(new, indent)
    found = _top_level_spans(text or "")
    one_line = "\n" not in (text or "").strip()
    if text is None or found is None or one_line or not old or set(old) - set(new):
        return full
    spans = found
    pad = " " * indent

    def render(value: Any) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=False).replace("\n", "\n" + pad)

    out = text
    # Replace existing values from the end, so earlier offsets stay valid.
    for key, (start, end) in sorted(spans.items(), key=lambda kv: -kv[1][0]):
        if new[key] != old[key]:
            out = out[:start] + render(new[key]) + out[end:]
    added = [k for k in new if k not in old]
    if added:
        last_end = max(end for _, end in spans.values())
        shift = len(out) - len(text)  # all replacements happened at or before last_end
        at = last_end + shift
        insert = "".join(f",\n{pad}{json.dumps(k)}: {render(new[k])}" for k in added)
        out = out[:at] + insert + out[at:]
    try:
        if json.loads(out) == new:
            return out
    except json.JSONDecodeError:
        pass
    return full
