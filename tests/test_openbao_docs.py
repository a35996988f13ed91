"""docs/team.md's examples, run as written against a real OpenBao (over TLS)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bao_support import BaoNode, bao_binary, running_dev
from support import REPO

pytestmark = pytest.mark.bao
PAGE = REPO / "docs" / "team.md"
DOC_ADDR = "https://bao.example.com:8200"


@pytest.fixture
def bao_tls(tmp_path: Path, certkit_home: Path) -> Iterator[BaoNode]:
    with running_dev(tmp_path, tls=True) as node:
        yield node


def example_lines() -> list[str]:
    """Every command of the page's ```sh blocks, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", PAGE.read_text(), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_team_page_runs_as_written(bao_tls: BaoNode, tmp_path: Path) -> None:
    lines = example_lines()
    assert any(line.startswith("certkit login") for line in lines)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{Path(bao_binary() or 'bao').parent}:{os.environ['PATH']}",
        "BAO_CACERT": str(bao_tls.cacert),
        "USER": "alice",
    }
    for line in lines:
        words = shlex.split(line.replace(DOC_ADDR, bao_tls.addr))
        if words[0] == "export":  # the admin's variables: BAO_ADDR and an admin token
            env.update({"BAO_ADDR": bao_tls.addr, "BAO_TOKEN": bao_tls.env()["BAO_TOKEN"]})
            continue
        if words[:2] == ["certkit", "login"]:  # the person: her password, no admin token
            run_env = {**env, "BAO_TOKEN": "", "CERTKIT_BAO_PASSWORD": "s3cret"}
        else:
            run_env = env
        r = subprocess.run(words, env=run_env, capture_output=True, text=True, cwd=tmp_path,
                           timeout=300)  # fmt: skip
        assert r.returncode == 0, f"{line}: {r.stdout}{r.stderr}"
    assert (tmp_path / "docker1" / "server-cert.pem").exists()
