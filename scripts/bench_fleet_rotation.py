"""A CA rotation across N real-systemd lab hosts while every context polls (issue 34).

Boots N lab hosts (tests/lab.py), converges them with ``certkit fleet apply
--restart --contexts``, makes one docker context ``laptop`` with
``client-context`` (a client made before the rotation), then runs the fleet
rotation of docs/renewal.md (:func:`benchlib.fleetrotation.documented_rotation`)
while a client polls every 0.25 s with each context's files.  Prints each
step's start and duration, and per context the requests sent, the restart
pauses (refused or cut) and the lockouts (a certificate refused: should be 0).

Usage: scripts/bench_fleet_rotation [--hosts N] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))

from benchlib.fleetrotation import (  # noqa: E402
    ContextPoller,
    Timeline,
    context_tls,
    documented_rotation,
)
from lab import booted_lab, lab_missing  # noqa: E402
from test_fleet import inventory  # noqa: E402


def certkit_json(argv: list[str]) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "certkit", *argv, "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"certkit {' '.join(argv)} failed: {done.stdout}{done.stderr}")
    return json.loads(done.stdout)


def bench(count: int, work: Path) -> dict[str, Any]:
    os.environ["CERTKIT_HOME"] = str(work / "home")
    docker_config = work / "docker"
    os.environ["DOCKER_CONFIG"] = str(docker_config)
    with booted_lab() as lab:
        hosts = lab.boot(count)
        certkit_json(["init-ca"])
        inv = inventory(work / "hosts.ini", hosts)
        forks = str(min(count, 12))
        certkit_json(["fleet", "apply", str(inv), "--restart", "--contexts", "--forks", forks])
        certkit_json(["client-context", "laptop", "--host", hosts[0].address])
        names = [(f"h{i}", h) for i, h in enumerate(hosts, 1)] + [("laptop", hosts[0])]
        pollers = [
            ContextPoller(n, h.address, 2376, context_tls(docker_config, n)) for n, h in names
        ]
        timeline = Timeline()
        for p in pollers:
            p.start(timeline.t0)
        try:
            documented_rotation(certkit_json, str(inv), ["laptop"], timeline)
        finally:
            for p in pollers:
                p.stop()
    polled = {p.name: p.to_json() for p in pollers}
    return {
        "hosts": count,
        "steps": timeline.steps,
        "contexts": polled,
        "lockouts": sum(p["lockout"] for p in polled.values()),
        "pauses": sum(p["pause"] for p in polled.values()),
        "longest_gap_s": max(p["longest_gap_s"] for p in polled.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    missing = lab_missing()
    if missing:
        raise SystemExit(f"the lab needs: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="certkit-rotation-") as tmp:
        result = bench(args.hosts, Path(tmp))
    for s in result["steps"]:
        print(f"{s['start_s']:7.1f} s  {s['seconds']:6.1f} s  {s['step']}")
    print(
        f"{args.hosts} hosts, {len(result['contexts'])} contexts polled every 0.25 s: "
        f"{result['lockouts']} lockouts, {result['pauses']} restart pauses (refused or cut), "
        f"longest gap between answers {result['longest_gap_s']} s."
    )
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
