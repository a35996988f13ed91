"""Two ``client-context`` runs for one name at once (issue 26, item 5).

Before, in about one run in three both succeeded, each superseded the other's
record and none was in use: ``renew client`` then said the client did not exist.
Now exactly one wins; without ``--force`` the others are told in one sentence and
issue nothing; with ``--force`` they run one after the other and the last is in use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import REPO, cli_ok

RUNS = 5


def _race(*extra: str) -> list[subprocess.CompletedProcess[str]]:
    argv = [sys.executable, "-m", "certkit", "client-context", "prod", "--host", "docker1.test"]
    procs = [
        subprocess.Popen(
            [*argv, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=dict(os.environ),
        )
        for _ in range(RUNS)
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _in_use(name: str) -> list[dict[str, object]]:
    items = json.loads(cli_ok("list", "--kind", "client", "--json"))
    return [i for i in items if i["name"] == name and i["status"] == "valid"]


@pytest.mark.usefixtures("store")
def test_one_of_several_runs_wins_and_the_others_issue_nothing() -> None:
    results = _race()
    won = [r for r in results if r.returncode == 0]
    lost = [r for r in results if r.returncode != 0]
    assert len(won) == 1, [r.stderr for r in results]
    for r in lost:
        assert r.returncode == 2, r.stderr
        assert "already exists" in r.stderr or "another certkit run" in r.stderr, r.stderr
    assert len(_in_use("prod")) == 1
    every = json.loads(cli_ok("list", "--kind", "client", "--json"))
    assert len([i for i in every if i["name"] == "prod"]) == 1  # the losers issued nothing
    cli_ok("renew", "client", "prod")


@pytest.mark.usefixtures("store")
def test_forced_runs_take_turns_and_leave_exactly_one_in_use() -> None:
    cli_ok("client-context", "prod", "--host", "docker1.test")
    results = _race("--force")
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len(_in_use("prod")) == 1
    cli_ok("renew", "client", "prod")
