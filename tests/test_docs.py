"""The docs site: its generated pages must match what the real commands print today.

``scripts/docs`` regenerates ``docs/reference/cli.md`` from every command's
``--help`` and the output of every console block by running its commands in a
sandbox; ``scripts/docs --check`` fails when a committed page differs.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support import REPO

DOCS = REPO / "docs"
SCRIPT = REPO / "scripts" / "docs.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("certkit_docs_script", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_docs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_every_page_matches_what_the_commands_print(require_dockerd: None) -> None:
    # The quick start and the verify examples run against a real dockerd: root only.
    if os.geteuid() != 0:
        pytest.skip("the docs' dockerd examples need root")
    r = run_docs("--check")
    assert r.returncode == 0, f"docs are stale; run scripts/docs:\n{r.stdout}{r.stderr}"


def test_a_changed_example_output_is_caught(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(DOCS / "ca.md", docs / "ca.md")
    assert run_docs("--check", "--docs-dir", str(docs), "ca.md").returncode == 0

    page = (docs / "ca.md").read_text()
    assert "Created CA 'default' (ec-p256)" in page
    (docs / "ca.md").write_text(page.replace("Created CA 'default' (ec-p256)", "Created CA 'x'"))
    r = run_docs("--check", "--docs-dir", str(docs), "ca.md")
    assert r.returncode == 1
    assert "stale: ca.md" in r.stderr
    assert "+Created CA 'default' (ec-p256)" in r.stdout

    r = run_docs("--docs-dir", str(docs), "ca.md")  # regenerating repairs it
    assert r.returncode == 0
    assert (docs / "ca.md").read_text() == page


def test_the_cli_reference_has_every_command() -> None:
    script = load_script()
    paths = script.command_paths()
    assert ("ca", "list") in paths and ("rotate-ca", "finish") in paths
    headings = re.findall(r"^#+ `(certkit[^`]*)`$", (DOCS / "reference/cli.md").read_text(), re.M)
    assert headings == [" ".join(("certkit", *p)) for p in paths], "run scripts/docs"


def test_every_console_block_is_a_session_the_script_runs() -> None:
    # Output that no command in the block printed would be hand-written: not allowed.
    for page in sorted(DOCS.rglob("*.md")):
        if page.name == "security.md":  # another engineer's page, kept by hand
            continue
        blocks = re.findall(r"^```console\n(.*?)^```$", page.read_text(), re.M | re.S)
        for block in blocks:
            assert block.startswith("$ "), f"{page.name}: a console block without a command"


def test_the_masks_are_stable_and_keep_what_matters() -> None:
    script = load_script()
    masker = script.Masker([("/tmp/certkit-docs.abc/home", "/home/me")])
    masker.delta = script.REF_DATE - dt.date(2027, 3, 1)
    text = (
        "serial 0123456789abcdef0123456789abcdef, valid until 2029-03-01T10:11:12\n"
        "backup daemon.json.certkit-backup-20270301T101112.345678Z in 0.18 s\n"
        "again 0123456789abcdef0123456789abcdef, other fedcba9876543210\n"
        "file /tmp/certkit-docs.abc/home/.docker/contexts/tls/" + "ab" * 32 + "/docker\n"
    )
    out = masker.mask(text).split("\n")
    serial = out[0].split()[1].rstrip(",")
    assert serial != "0123456789abcdef0123456789abcdef" and len(serial) == 32
    assert out[2].split()[1].rstrip(",") == serial  # the same value, the same stand-in
    assert len(out[2].split()[3]) == 16 and out[2].split()[3] != serial[:16]
    assert out[0].endswith("2028-11-27T09:00:00")  # shifted by the same days as the run date
    assert "certkit-backup-20261127T090000.000000Z in 0.25 s" in out[1]
    assert out[3] == "file /home/me/.docker/contexts/tls/" + "ab" * 32 + "/docker"
