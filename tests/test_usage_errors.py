"""Usage errors: one sentence and exit 2, and under ``--json`` one JSON document on stdout too.

click prints its usage text on stderr and nothing on stdout, so a script reading
``certkit ... --json`` got an empty document for a typo in an option; every other
error under ``--json`` is ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import json

import pytest
from support import run_certkit


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["list", "--no-such-option"], "No such option: --no-such-option"),
        (["status", "--warn-days", "soon"], "soon"),
        (["issue-server", "h1", "--port", "many"], "many"),
        (["renew", "nothing-like-this"], "nothing-like-this"),
    ],
)
def test_a_usage_error_under_json_is_one_json_document(args: list[str], says: str) -> None:
    r = run_certkit(*args, "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is False
    assert says in doc["error"]
    assert "Usage:" in r.stderr  # click's usage text still goes to stderr for a person


def test_without_json_stdout_stays_empty_on_a_usage_error() -> None:
    r = run_certkit("list", "--no-such-option")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "No such option" in r.stderr


def test_help_and_success_under_json_keep_their_exit_codes() -> None:
    assert run_certkit("list", "--help", "--json").returncode == 0
    r = run_certkit("list", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
