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
        row("startup/status", "certkit status", None, [0.054, 0.055, 0.053]),
        row("startup/help", "certkit --help", None, [0.080, 0.080, 0.080]),
        row("setup/certkit", "certkit setup", None, [setup_s] * 3),
        row("setup/openssl-ec", "openssl recipe, EC P-256", None, [0.100] * 3),
        row("clients-100/certkit", "certkit issue-client --count N", 100, [0.15] * 3),
        row("clients-1000/certkit", "certkit issue-client --count N", 1000, [0.4] * 3),
        row("clients-100/cfssl", "cfssl loop", 100, [1.0] * 3),
        row("floor/imports", "floor: Python + imports", None, [0.06] * 3),
        row("floor/crypto-1000", "floor: crypto", 1000, [0.2] * 3),
        row("floor/files-1000", "floor: crypto + files", 1000, [0.32] * 3),
        row("inventory-1/issue-client", "issue-client", 1, [0.1] * 3),
        row("inventory-100000/issue-client", "issue-client", 100000, [0.13] * 3),
        row("inventory-1/status", "status", 1, [0.06] * 3),
        row("inventory-100000/status", "status", 100000, [0.25] * 3),
        row("inventory-1/list", "list --kind client --json", 1, [0.06] * 3),
        row("inventory-100000/list", "list --kind client --json", 100000, [4.0] * 3),
    ]
    for r in results:
        r["group"] = r["group"].replace("floor", "clients")
    results[-1]["first_s"] = [0.1] * 3  # the first record after 100 ms of 4 s
    results[-1]["maxrss_kib"] = [30 * 1024] * 3
    results[-2]["maxrss_kib"] = [25 * 1024] * 3
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
        "schema": 2,
        "started": "2026-11-28T12:00:00+00:00",
        "command": "scripts/bench",
        "machine": machine,
        "versions": versions,
        "counts": [100, 1000],
        "records": 100000,
        "results": results,
        "measurements": {
            "authz": [{"label": "added latency", "value": 0.4, "unit": "ms", "target": "<= 1"}]
        },
    }


def pages(tmp_path: Path) -> tuple[Path, Path]:
    readme, docs = tmp_path / "README.md", tmp_path / "benchmark.md"
    readme.write_text("# x\n\n<!-- bench:summary -->\nold\n<!-- /bench:summary -->\n\nend\n")
    docs.write_text("# y\n<!-- bench:results -->\n<!-- /bench:results -->\ntail\n")
    return readme, docs


def test_the_tables_are_generated_from_the_json(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps(fixture(setup_s=0.120)))
    readme, docs = pages(tmp_path)
    r = bench("--table", str(tmp_path / "r.json"), "--files", str(readme), str(docs))
    assert r.returncode == 0, r.stdout + r.stderr
    summary = readme.read_text()
    assert summary.startswith("# x\n\n<!-- bench:summary -->\n| measure |") and "old" not in summary
    assert summary.endswith("<!-- /bench:summary -->\n\nend\n")
    typer = '`python -c "import typer"`'
    # status 54 ms / typer 50 ms, round by round (wall and CPU); setup 120 ms / openssl 100 ms
    assert f"| `certkit status` / {typer} | 1.08x | 1.08x | ≤ 1.1x | met |" in summary
    assert f"| `certkit --help` / {typer} | 1.60x | 1.60x | ≤ 1.1x | MISSED |" in summary
    assert (
        "| `certkit setup` / openssl EC recipe (CA + server + client) | 1.20x | 1.20x | ≤ 1.3x "
        "| met |" in summary
    )
    writer = "(disk writer running)"
    assert f"| cfssl loop / `certkit issue-client --count 100` {writer} | 6.67x |" in summary
    assert f"| 10 cfssl 100-loops / `certkit issue-client --count 1000` {writer} | 25.0x" in summary
    assert (
        f"| `certkit issue-client --count 1000`, seconds {writer} | 400 ms | 400 ms | ≤ 0.45 s"
        in summary
    )
    assert "| `certkit issue-client --count 1000` / its floor (crypto + files) | 1.25x |" in summary
    assert "| `certkit issue-client --count 1000` / crypto alone | 2.00x |" in summary
    assert (
        "| one `issue-client` at 100,000 records / in a store of one | 1.30x | 1.30x | ≤ 1.2x "
        "| MISSED |" in summary
    )
    assert (
        "| `certkit status` at 100,000 records, seconds | 250 ms | 250 ms | ≤ 0.3 s | met |"
        in summary
    )
    assert "first record / whole list | 0.03x | - | ≤ 0.1x | met |" in summary
    assert "peak memory at 100,000 / at 1 record | 1.20x | - | ≤ 1.5x | met |" in summary
    assert "| authz: added latency | 0.4 ms | - | ≤ 1 | n/a |" in summary  # measurements slot
    page = docs.read_text()
    assert "Measured on 2026-11-28: 2 cores (Test CPU)" in page and page.endswith("tail\n")
    assert "| certkit status | 54 ms | 54 ms | 3 | 1.08x |" in page
    assert "| 100: cfssl loop | 1.00 s | 1.00 s | 3 | 6.67x |" in page
    assert "| 1000: 10 cfssl 100-loops (10 x the median above) | 10.0 s |" in page
    assert "| 1000: floor: crypto + files | 320 ms | 320 ms | 3 | 0.80x |" in page
    assert "| floor: Python + imports | 60 ms |" in page
    assert "| status | 60 ms | 250 ms | 4.17x |" in page
    assert "first record after 100 ms; peak memory 25 MiB / 30 MiB |" in page
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
    assert "| 2.50x | 2.50x | ≤ 1.3x | MISSED |" in readme.read_text()
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


def test_other_benchmarks_add_their_figures_to_the_json(tmp_path: Path) -> None:
    """`--add NAME FIGURES.json` fills the measurements slot; a bad file is one sentence."""
    results = tmp_path / "r.json"
    results.write_text(json.dumps(fixture(setup_s=0.120)))
    figures = tmp_path / "fleet.json"
    figures.write_text(json.dumps([{"label": "converged apply, 12 hosts", "value": 5.1,
                                    "unit": "s", "target": "<= 6", "met": True}]))  # fmt: skip
    r = bench("--add", "fleet", str(figures), "--json", str(results))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(results.read_text())
    assert set(doc["measurements"]) == {"authz", "fleet"}  # the other one kept
    readme, docs = pages(tmp_path)
    assert bench("--table", str(results), "--files", str(readme), str(docs)).returncode == 0
    assert "| fleet: converged apply, 12 hosts | 5.1 s | - | ≤ 6 | met |" in readme.read_text()
    figures.write_text(json.dumps({"label": "not a list"}))
    r = bench("--add", "fleet", str(figures), "--json", str(results))
    assert r.returncode == 1 and "must be a list of objects" in r.stderr
    assert "Traceback" not in r.stderr
