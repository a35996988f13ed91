"""Every ``--option`` an error message names exists on the commands that can print it
(issue 26, item 7: ``setup`` suggested ``--remove-insecure`` and then rejected it; ``renew
server`` said "pass --sudo" and had no ``--sudo``).

The messages of the install path (the host package and the server module) reach the user
through ``issue-server``, ``setup`` and ``renew server``; each flag they name must be an
option of all three, except where a renewal keeps the first install's choice on purpose
(listed below, with the reason).  Messages are read from the source: the string parts of
every ``UsageError(...)``/``OperationError(...)`` call.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer

import certkit.cli

REPO = Path(__file__).resolve().parent.parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
INSTALL_PATH = [
    *sorted((REPO / "certkit" / "host").glob("*.py")),
    REPO / "certkit" / "server.py",
    REPO / "certkit" / "nameclaims.py",
]
COMMANDS = (("issue-server",), ("setup",), ("renew", "server"))
# A renewal re-installs the way the first install did: where dockerd listens and how
# (method, address, port, a rootless user) come from the record, never from flags.
KEPT_BY_RENEWAL = {"--method", "--listen", "--port", "--rootless"}
# The flags of other programs that messages quote (ssh, systemctl, firewall-cmd, ...).
FOREIGN = {"--user", "--zone", "--permanent", "--add-rich-rule", "--remove-rich-rule"}


def flags_in_errors(path: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
        if name not in ("UsageError", "OperationError"):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                for flag in FLAG.findall(sub.value):
                    found.setdefault(flag, node.lineno)
    return found


def options_of(path: tuple[str, ...]) -> set[str]:
    command = typer.main.get_command(certkit.cli.app)
    for word in path:
        command = command.commands[word]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts + param.secondary_opts}


def test_the_scan_finds_the_messages_it_is_meant_to_check() -> None:
    named = set().union(*(flags_in_errors(p) for p in INSTALL_PATH))
    # If these vanish, the scan (not the messages) broke.
    assert {"--keep-insecure", "--remove-insecure", "--replace-ca", "--allow-from"} <= named


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_flag_an_install_message_names_is_an_option_of(command: tuple[str, ...]) -> None:
    options = options_of(command)
    allowed = KEPT_BY_RENEWAL if command == ("renew", "server") else set()
    missing = [
        f"{path.relative_to(REPO)}:{line} names {flag}"
        for path in INSTALL_PATH
        for flag, line in flags_in_errors(path).items()
        if flag not in options and flag not in FOREIGN and flag not in allowed
    ]
    assert not missing, f"certkit {' '.join(command)} has no such option: " + "; ".join(missing)
