"""The docker CLI's ``config.json``: which context is current, edited without losing a byte.

``config.json`` also holds registry credentials (``auths``, ``credsStore``),
so certkit only ever touches the ``currentContext`` value and writes the file
atomically with mode 0600 (docs/design.md, "The docker CLI's context store").
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .. import files, paths
from ..errors import UsageError
from ..files import StrPath
from ..untrusted import loads_json
from .store import check_config_dir, ensure_config_dir, unwritable, validate_context_name


def set_current_context(name: str, docker_config: StrPath | None = None) -> Path:
    """Make ``name`` the current context in ``config.json``; returns the file's path.

    Only the ``currentContext`` value is touched: every other byte of the
    file (``auths``, ``credsStore``, ``proxies``, formatting) stays as it
    was.  The file is replaced atomically with mode 0600, and followed when
    it is a symlink (as the docker CLI does).
    """
    config_dir = paths.docker_config_dir(docker_config)
    target, text = check_current_context(name, config_dir)
    ensure_config_dir(config_dir)
    try:
        files.atomic_write(target, text, files.PRIVATE_FILE)
    except OSError as e:
        raise unwritable(config_dir, e) from None
    return config_dir / "config.json"


def check_current_context(name: str, docker_config: StrPath | None = None) -> tuple[Path, str]:
    """(the file to write, its new text) for making ``name`` current; writes nothing.

    Called before anything is issued or written, so an unreadable or invalid
    config.json costs nothing.
    """
    validate_context_name(name)
    check_config_dir(paths.docker_config_dir(docker_config))
    config = paths.docker_config_dir(docker_config) / "config.json"
    target = config
    if config.is_symlink():
        owner = config.lstat().st_uid
        if owner not in (os.geteuid(), 0):  # someone else's link would choose what we write
            raise UsageError(
                f"{config} is a symlink owned by uid {owner}, not by you; refusing to follow "
                "it (remove it, or use a docker config dir of your own)."
            )
        target = config.resolve()
    try:
        text = config.read_text()  # through the link as the kernel allows (protected_symlinks)
    except (FileNotFoundError, NotADirectoryError):  # no file yet; an unwritable dir fails later
        text = ""
    except PermissionError:
        raise UsageError(
            f"{config} cannot be read (permission denied; a symlink in a shared directory, "
            "blocked by the kernel?); use a docker config dir of your own."
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"Cannot read {config}: {e}; fix or remove it first.") from None
    return target, _with_current_context(text, name, config)


def current_context(docker_config: StrPath | None = None) -> str | None:
    """``currentContext`` from config.json, or None."""
    config = paths.docker_config_dir(docker_config) / "config.json"
    try:
        value = loads_json(config.read_text()).get("currentContext")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def ensure_config_file(docker_config: StrPath | None = None) -> Path:
    """Create an empty ``config.json`` (``{}``, 0600) when there is none; returns its path.

    docker-py (7.2) looks for contexts next to the first ``config.json`` it
    finds: with ``DOCKER_CONFIG`` set but no ``config.json`` in it,
    ``from_context``/``from_env`` never see the contexts there.
    """
    config_dir = paths.docker_config_dir(docker_config)
    config = config_dir / "config.json"
    if not config.exists() and not config.is_symlink():
        try:
            ensure_config_dir(config_dir)
            files.atomic_write(config, "{}\n", files.PRIVATE_FILE)
        except OSError as e:
            raise unwritable(config_dir, e) from None
    return config


def _with_current_context(text: str, name: str, where: Path) -> str:
    """``text`` (a JSON object) with ``currentContext`` set, all else byte-for-byte."""
    value = json.dumps(name)
    if not text.strip():
        return "{\n\t" + f'"currentContext": {value}' + "\n}"
    try:
        spans = _top_level_spans(text)
    except ValueError:
        raise UsageError(
            f"{where} is not a JSON object; fix it (or move it aside) and run again."
        ) from None
    found = [s for s in spans if s[0] == "currentContext"]
    if found:
        _, start, end = found[-1]  # the last duplicate is the one parsers keep
        return text[:start] + value + text[end:]
    close = text.rindex("}")
    if not spans:
        return text[:close] + f'\n\t"currentContext": {value}\n' + text[close:]
    first_key = text.index('"', text.index("{"))
    line_start = text.rfind("\n", 0, first_key) + 1
    indent = text[line_start:first_key] if line_start else ""
    sep = f"\n{indent}" if "\n" in text[: first_key + 1] else " "
    last_end = spans[-1][2]
    return text[:last_end] + f',{sep}"currentContext": {value}' + text[last_end:]


def _top_level_spans(text: str) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of each top-level member of a JSON object."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")

    def skip(i: int) -> int:
        m = ws.match(text, i)
        assert m is not None
        return m.end()

    i = skip(0)
    if text[i : i + 1] != "{":
        raise ValueError("not an object")
    i = skip(i + 1)
    spans: list[tuple[str, int, int]] = []
    if text[i : i + 1] == "}":
        return spans
    while True:
        key, i = decoder.raw_decode(text, i)
        if not isinstance(key, str):
            raise ValueError("bad key")
        i = skip(i)
        if text[i : i + 1] != ":":
            raise ValueError("missing ':'")
        start = skip(i + 1)
        _, end = decoder.raw_decode(text, start)
        spans.append((key, start, end))
        i = skip(end)
        if text[i : i + 1] == ",":
            i = skip(i + 1)
            continue
        if text[i : i + 1] == "}" and not text[i + 1 :].strip():
            return spans
        raise ValueError("trailing data")
