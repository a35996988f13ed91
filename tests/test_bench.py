"""`scripts/bench`: the tables of README.md and docs/benchmark.md come from its JSON.

Timings are not asserted (they depend on the machine): the tests check that
the committed tables are exactly what the committed JSON renders, that the
generator puts each figure and verdict where it belongs, and (slow) that a
`--quick` run works end to end and its JSON renders.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import REPO

BENCH = str(REPO / "scripts" / "bench")


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BENCH, *args], capture_output=True, text=True, timeout=600)


def test_the_committed_tables_match_the_committed_json() -> None:
    r = bench("--table", "docs/bench.json", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((REPO / "docs" / "bench.json").read_text())
    assert doc["counts"] == [100, 1000]  # a full run, not --quick
    readme = (REPO / "README.md").read_text()
    assert '| `certkit status` / `python -c "import typer"` |' in readme


def row(key: str, tool: str, count: int | None, times: list[float]) -> dict[str, Any]:
    """A result as scripts/bench writes it, one run per round."""
    ordered = sorted(times)
    return {
        "key": key,
        "group": key.split("/")[0].split("-")[0].replace("flow", "full flow"),
        "tool": tool,
        "count": count,
        "command": tool,
        "note": "",
        "runs": len(times),
        "median_s": ordered[len(times) // 2],
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "cpu_median_s": ordered[len(times) // 2],
        "times_s": times,
        "cpu_s": times,
        "rounds": list(range(len(times))),
        "failed": None,
    }


def fixture(setup_s: float) -> dict[str, Any]:
    results = [
        row("startup/typer", 'python -c "import typer"', None, [0.050, 0.050, 0.050]),
        row("startup/status", "certkit status", None, [0.060, 0.061, 0.059]),
        row("startup/help", "certkit --help", None, [0.080, 0.080, 0.080]),
        row("setup/certkit", "certkit setup", None, [setup_s] * 3),
        row("setup/openssl-ec", "openssl recipe, EC P-256", None, [0.100] * 3),
        row("clients-100/certkit", "certkit issue-client --count N", 100, [0.2] * 3),
        row("clients-1000/certkit", "certkit issue-client --count N", 1000, [0.9] * 3),
        row("clients-100/cfssl", "cfssl loop", 100, [1.0] * 3),
    ]
    machine = {
        "cpus": "2",
        "cpu_model": "Test CPU",
        "kernel": "6.1",
        "python": "3.11.7",
        "load_average_1_5_15": "0.1 0.1 0.1",
        "load_average_at_start": "0.1 0.1 0.1",
    }
    versions = {k: f"{k} 1" for k in ("certkit", "openssl", "mkcert", "cfssl", "easyrsa")}
    return {
        "schema": 1,
        "started": "2026-11-28T12:00:00+00:00",
        "command": "scripts/bench",
        "machine": machine,
        "versions": versions,
        "counts": [100, 1000],
        "results": results,
    }


def pages(tmp_path: Path) -> tuple[Path, Path]:
    readme, docs = tmp_path / "README.md", tmp_path / "benchmark.md"
    readme.write_text("# x\n\n<!-- bench:summary -->\nold\n<!-- /bench:summary -->\n\nend\n")
    docs.write_text("# y\n<!-- bench:results -->\n<!-- /bench:results -->\ntail\n")
    return readme, docs


def test_the_tables_are_generated_from_the_json(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps(fixture(setup_s=0.150)))
    readme, docs = pages(tmp_path)
    r = bench("--table", str(tmp_path / "r.json"), "--files", str(readme), str(docs))
    assert r.returncode == 0, r.stdout + r.stderr
    summary = readme.read_text()
    assert summary.startswith("# x\n\n<!-- bench:summary -->\n| measure |") and "old" not in summary
    assert summary.endswith("<!-- /bench:summary -->\n\nend\n")
    # status 60 ms / typer 50 ms, round by round; setup 150 ms / openssl 100 ms
    assert '| `certkit status` / `python -c "import typer"` | 1.20x | ≤ 1.5x | met |' in summary
    assert '| `certkit --help` / `python -c "import typer"` | 1.60x | ≤ 1.5x | MISSED |' in summary
    assert (
        "| `certkit setup` / openssl EC recipe (CA + server + client) | 1.50x | ≤ 2.0x | met |"
        in summary
    )
    assert "| cfssl loop / `certkit issue-client --count 100` | 5.00x | ≥ 4.0x | met |" in summary
    assert (
        "| 10 cfssl 100-loops / `certkit issue-client --count 1000` | 11.1x | ≥ 10.0x | met |"
        in summary
    )
    assert "| `certkit issue-client --count 1000`, seconds | 900 ms | ≤ 1.2 s | met |" in summary
    page = docs.read_text()
    assert "Measured on 2026-11-28: 2 cores (Test CPU)" in page and page.endswith("tail\n")
    assert "| certkit status | 60 ms | 60 ms | 3 | 1.20x |" in page
    assert "| 100: cfssl loop | 1.00 s | 1.00 s | 3 | 5.00x |" in page
    assert "| 1000: 10 cfssl 100-loops (10 x the median above) | 10.0 s |" in page
    assert (
        bench(
            "--table", str(tmp_path / "r.json"), "--files", str(readme), str(docs), "--check"
        ).returncode
        == 0
    )


def test_a_missed_target_and_stale_tables_are_reported(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps(fixture(setup_s=0.250)))
    readme, docs = pages(tmp_path)
    args = ["--table", str(tmp_path / "r.json"), "--files", str(readme), str(docs)]
    stale = bench(*args, "--check")
    assert stale.returncode == 1 and "does not match" in stale.stdout
    assert bench(*args).returncode == 0
    assert "| 2.50x | ≤ 2.0x | MISSED |" in readme.read_text()
    (tmp_path / "plain.md").write_text("no markers\n")
    r = bench("--table", str(tmp_path / "r.json"), "--files", str(tmp_path / "plain.md"))
    assert r.returncode == 1 and "has no <!-- bench:NAME --> section" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_bench_quick_runs_end_to_end(tmp_path: Path) -> None:
    """Every group runs and its JSON renders (timings are not asserted)."""
    out = tmp_path / "bench.json"
    r = bench("--quick", "--json", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    groups = {row["group"] for row in doc["results"]}
    assert {"startup", "setup", "full flow", "clients"} <= groups
    certkit_rows = [row for row in doc["results"] if row["tool"].startswith("certkit")]
    assert certkit_rows and all(row["median_s"] > 0 and not row["failed"] for row in certkit_rows)
    assert {x["a"] for x in doc["ratios"]} >= {"startup/status", "startup/help", "setup/certkit"}
    readme, docs = pages(tmp_path)
    r = bench("--table", str(out), "--files", str(readme), str(docs))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "certkit setup" in docs.read_text() and "n/a" in readme.read_text()
