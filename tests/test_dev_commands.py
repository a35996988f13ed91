"""The README's docs and development commands, run from a fresh clone as written; and the
built docs site's Python API page shows its examples as code.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support import REPO, free_port, stop_process_group

sys.path.insert(0, str(REPO / "scripts"))
from docs_griffe import fence_examples  # scripts/ is not a package


def readme_block(heading: str) -> list[str]:
    """The command lines of the first ```sh block after ``heading`` in README.md."""
    text = (REPO / "README.md").read_text()
    start = text.index(heading)
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block, heading
    lines = [ln.split("  #")[0].strip() for ln in block.group(1).splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_examples_are_fenced_and_their_directives_dropped() -> None:
    doc = "Intro:\n\n>>> f()  # doctest: +SKIP\n1\n>>> g()\n\nAfter."
    assert fence_examples(doc) == "Intro:\n\n```pycon\n>>> f()\n1\n>>> g()\n```\n\nAfter."
    assert fence_examples("No example here.\n  >>> indented") == "No example here.\n  >>> indented"


def code_blocks(page: str) -> list[str]:
    """The text of every ``<pre>`` block of an HTML page (highlighting markup off)."""
    return [
        html.unescape(re.sub(r"<[^>]+>", "", b)) for b in re.findall(r"<pre.*?</pre>", page, re.S)
    ]


def test_the_built_api_page_shows_the_examples_as_code(tmp_path: Path) -> None:
    site = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    page = (site / "api" / "index.html").read_text()
    blocks = code_blocks(page)
    examples = [b for b in blocks if ">>> " in b]
    assert any(">>> from certkit import api" in b for b in examples), blocks[:3]
    assert any('>>> api.docker_client("docker1")' in b for b in examples)
    assert "doctest:" not in page and "+SKIP" not in page
    # ... and no example is left in a paragraph (what the page showed before)
    assert not re.search(r"<p>\s*&gt;&gt;&gt;", page)
    clients = (site / "clients" / "index.html").read_text()
    assert "certkit.api.docker_client" in clients
    assert (site / "monitoring" / "index.html").is_file()


def fresh_clone(dest: Path) -> Path:
    """The repository's files as a clone has them: what git tracks (and new files not
    ignored), no .venv, no caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    assert not (dest / ".venv").exists() and (dest / "scripts" / "test").is_file()
    return dest


def sh(clone: Path, command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"  # no virtualenv of ours
    return subprocess.run(
        ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


# Each documented command, and how this test runs it: as written, or narrowed where the
# whole run is another test's job (the full suite, every page, the 3-minute benchmark).
DEVELOPMENT = {
    "scripts/test": "scripts/test tests/test_api.py -q -k doctests",
    "scripts/test -k verify -x": None,  # the same script, other pytest arguments
    "scripts/docs": None,  # regenerates: run below as --check
    "scripts/docs --check": "scripts/docs --check ca.md",
    "scripts/bench --json docs/bench.json": None,  # 3 minutes; tests/test_bench.py runs --quick
    "scripts/bench --table docs/bench.json": "scripts/bench --table docs/bench.json --check",
    "scripts/bench --quick": None,  # tests/test_bench.py
}


@pytest.mark.slow
def test_documented_commands_work_from_a_fresh_clone(tmp_path: Path) -> None:
    assert set(readme_block("## Development")) == set(DEVELOPMENT), "README changed: update"
    clone = fresh_clone(tmp_path / "clone")
    # scripts/docs first: a fresh clone has no .venv, and it must make one
    r = sh(clone, str(DEVELOPMENT["scripts/docs --check"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Setting up .venv" in r.stderr and (clone / ".venv" / "bin" / "certkit").is_file()
    for command in filter(None, DEVELOPMENT.values()):
        r = sh(clone, command)
        assert r.returncode == 0, f"{command}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"

    # "Read it locally": the commands as written; serve on a free port, not 8000.
    setup, serve = readme_block("Read it locally")
    assert serve == ".venv/bin/mkdocs serve"
    r = sh(clone, setup)
    assert r.returncode == 0, r.stdout + r.stderr
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {serve} -a 127.0.0.1:{port}"], cwd=clone, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    try:
        page = ""
        deadline = time.monotonic() + 180
        while not page and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/", timeout=5) as got:
                    page = got.read().decode()
            except OSError:
                time.sleep(1)
        served = code_blocks(page)
        assert any(">>> from certkit import api" in b for b in served), (
            tmp_path / "serve.log"
        ).read_text()
    finally:
        stop_process_group(proc, timeout=10)
        log.close()
