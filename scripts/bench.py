"""certkit against the tools people use today, side by side, on this machine, in one run.

Groups (each runs round-robin: a case and its yardstick alternate):

* startup: ``certkit --help``, ``--version``, ``status``, ``issue-server HOST
  --out DIR`` against ``python -c "import typer"`` (and ``python -c pass``);
* setup:   ``certkit setup`` (CA + server certificate installed into a
  ``--root`` sandbox + docker context, one process) against Docker's openssl
  recipe with EC keys (CA + server + client: three keys);
* flow:    CA + server + client with certkit's three commands, Docker's
  recipe as documented (RSA 4096), mkcert, cfssl, easy-rsa;
* clients: 100 and 1,000 client certificates (``issue-client --count N``,
  one process) against a loop of cfssl, openssl, mkcert, easy-rsa for 100;
  the 1,000 are compared with ten cfssl 100-loops; the floor (benchlib/floor.py:
  Python with the imports an issuance needs, the crypto alone, crypto + files);
  all of it next to a concurrent disk writer (benchlib/writer.py);
* inventory: issue-client, status and ``list --kind client --json`` (when its
  first record comes, its peak memory) in a store of 100,000 records against a
  store of one.

Other benchmarks (bench_fleet, the authorization plugin's latency, OpenBao
logins, renewals, revocation) put their figures in the same JSON's
``measurements``: ``scripts/bench --add NAME FIGURES.json --json docs/bench.json``
(FIGURES.json: a list of {"label", "value", "unit", "target", "met", "note"}).
A full run keeps the measurements the file it replaces held.

Writes one JSON (every run's wall and CPU time, the round it ran in, the
commands, the tool versions, the machine, the issue's ratios and targets) and
prints a table.  ``--table FILE.json`` regenerates the tables of README.md
and docs/benchmark.md from such a JSON (``--check``: exit 1 when they differ).

Usage:
  scripts/bench [--json FILE]            # the full run: about 15 minutes on 2 cores
  scripts/bench --quick                  # small counts, few runs (a test runs it)
  scripts/bench --table docs/bench.json  # rewrite the README/docs tables from the JSON
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchlib import cases, report, tools
from benchlib.timer import Runner

REPO = Path(__file__).resolve().parent.parent
TABLE_FILES = ("README.md", "docs/benchmark.md")


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "load_average_1_5_15": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def certkit_command(given: str | None) -> str:
    if given:  # another build, e.g. an earlier commit's checkout, for a before/after table
        return given
    local = REPO / ".venv" / "bin" / "certkit"
    if local.exists():
        return str(local)
    found = shutil.which("certkit")
    if not found:
        sys.exit("bench: certkit is not installed (run scripts/test once to make .venv)")
    return found


def compile_certkit(command: str) -> None:
    """Byte-compile certkit as an installed package is (an editable install, or
    PYTHONDONTWRITEBYTECODE=1, would otherwise compile every module on every run)."""
    python = Path(command).with_name("python")  # the certkit script's own venv
    find = "import certkit, pathlib; print(pathlib.Path(certkit.__file__).parent)"
    out = subprocess.run([str(python), "-c", find], check=True, capture_output=True, text=True)
    subprocess.run(
        [str(python), "-m", "compileall", "-q", out.stdout.strip()],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run(args: argparse.Namespace) -> int:
    small, big = (
        int(c) for c in (args.counts or ("5,20" if args.quick else "100,1000")).split(",")
    )
    only = set(args.only.split(",")) if args.only else set(cases.DEFAULT_GROUPS)
    if unknown := only - set(cases.GROUPS):
        sys.exit(f"bench: unknown group(s) {', '.join(sorted(unknown))}: {', '.join(cases.GROUPS)}")
    command = certkit_command(args.certkit)
    compile_certkit(command)
    found = tools.find_tools(command)
    work = Path(tempfile.mkdtemp(prefix="certkit-bench-"))
    started, clock = dt.datetime.now(dt.UTC), time.monotonic()
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    try:
        plan = cases.Plan(work, found, small, big, args.quick)
        records = args.records or (200 if args.quick else 100000)
        runner = Runner(work)
        for group in cases.plan_groups(plan, only, records):
            group.rounds = min(group.rounds, args.rounds or group.rounds)
            print(f"{group.name}: {len(group.cases)} cases, {group.rounds} rounds", flush=True)
            for row in runner.run_group(group):
                rows.append(row)
                shown = f"failed: {row.failed}" if row.failed else report.fmt_time(row.median_s)
                print(f"  {row.tool:44} {shown}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    info = {**machine(), "load_average_at_start": load_at_start}
    out = (
        Path(args.json)
        if args.json
        else (REPO / "bench-results" / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    )
    doc = {
        "schema": 2,
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - clock, 1),
        "command": shlex.join(["scripts/bench", *sys.argv[1:]]),
        "machine": info,
        "versions": tools.versions(found),
        "counts": [small, big],
        "records": records,
        "results": [asdict(r) for r in rows],
        "measurements": kept_measurements(out),
    }
    doc["ratios"] = report.compute_ratios(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print("\n" + report.console(doc))
    print(f"\nJSON: {out} ({doc['duration_s']:.0f} s). Tables: scripts/bench --table {out}")
    failed = [r for r in rows if r.tool.startswith("certkit") and r.failed]
    return 1 if failed else 0


def kept_measurements(path: Path) -> dict[str, list[dict[str, object]]]:
    """The ``measurements`` of the results file about to be replaced (other benchmarks')."""
    try:
        return dict(json.loads(path.read_text()).get("measurements", {}))
    except (OSError, ValueError):
        return {}


MEASUREMENT_KEYS = {"label", "value", "unit", "target", "met", "note"}


def add(args: argparse.Namespace) -> int:
    """Put another benchmark's figures into the JSON's ``measurements[NAME]`` (replaced)."""
    name, figures_file = args.add
    if not args.json:
        sys.exit("bench: --add needs --json FILE (the results file to add to)")
    figures = json.loads(Path(figures_file).read_text())
    if not isinstance(figures, list) or not all(
        isinstance(f, dict) and {"label", "value"} <= f.keys() <= MEASUREMENT_KEYS for f in figures
    ):
        keys = ", ".join(sorted(MEASUREMENT_KEYS))
        sys.exit(f"bench: {figures_file} must be a list of objects with keys among {keys}")
    path = Path(args.json)
    doc = json.loads(path.read_text())
    doc.setdefault("measurements", {})[name] = figures
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"bench: {len(figures)} figure(s) of {name} in {path}; now: scripts/bench --table {path}")
    return 0


def add_results(args: argparse.Namespace) -> int:
    """Put another run's groups into --json FILE (its rows replace those of the same key):
    groups run at the same time on a crowded machine, one results file.  The machine and
    load of each run are kept (``runs``)."""
    if not args.json:
        sys.exit("bench: --add-results needs --json FILE (the results file to add to)")
    path, other = Path(args.json), json.loads(Path(args.add_results).read_text())
    doc = json.loads(path.read_text())
    keys = {r["key"] for r in other["results"]}
    doc["results"] = [r for r in doc["results"] if r["key"] not in keys] + other["results"]
    doc["records"] = other.get("records", doc.get("records"))
    runs = doc.setdefault("runs", [_run_of(doc)])
    runs.append(_run_of(other))
    doc["command"] = " + ".join(r["command"] for r in runs)
    doc["ratios"] = report.compute_ratios(doc)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"bench: {len(keys)} case(s) of {args.add_results} in {path}")
    return 0


def _run_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("command", "started", "duration_s", "machine")}


def table(args: argparse.Namespace) -> int:
    """Rewrite (or with --check, compare) the generated tables from the JSON."""
    doc = json.loads(Path(args.table).read_text())
    doc["ratios"] = report.compute_ratios(doc)  # from the results: the one source of figures
    paths = [Path(f) if Path(f).is_absolute() else REPO / f for f in args.files or TABLE_FILES]
    try:
        rendered = report.render_files(doc, paths)
    except (ValueError, KeyError) as e:
        sys.exit(f"bench: {e}")
    stale = [p for p, text in rendered.items() if p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"bench: {p} does not match {args.table}: run scripts/bench --table {args.table}")
        return 1 if stale else 0
    for p in stale:
        p.write_text(rendered[p])
        print(f"bench: rewrote the tables of {p}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="5 and 20 clients, few runs (a smoke test)"
    )
    ap.add_argument("--counts", help="the two client counts (default 100,1000)")
    ap.add_argument("--only", help=f"comma-separated groups: {','.join(cases.GROUPS)}")
    ap.add_argument("--rounds", type=int, help="at most this many rounds per group")
    ap.add_argument("--records", type=int, help="inventory group: store size (default 100000)")
    ap.add_argument("--json", help="where to write the results (default bench-results/)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--certkit", help="the certkit command to time (default: .venv's)")
    ap.add_argument("--table", metavar="JSON", help="regenerate the tables from this JSON")
    ap.add_argument("--check", action="store_true", help="with --table: exit 1 when stale")
    ap.add_argument("--files", nargs="+", help=f"with --table (default: {' '.join(TABLE_FILES)})")
    ap.add_argument(
        "--add",
        nargs=2,
        metavar=("NAME", "FIGURES"),
        help="put another benchmark's figures in --json FILE's measurements",
    )
    ap.add_argument("--add-results", metavar="JSON", help="merge another run's cases into --json")
    args = ap.parse_args()
    if args.add:
        return add(args)
    if args.add_results:
        return add_results(args)
    if args.table:
        return table(args)
    # Ctrl-C or kill: still remove the work directory (run's finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
