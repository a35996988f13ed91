"""How a converged ``certkit fleet apply`` grows with hosts and forks, and where its time goes.

Boots N real-systemd lab hosts (tests/lab.py), converges them once
(``fleet apply --restart --contexts``), then interleaves, ``--repeat`` times:

* the converged ``fleet apply --restart --contexts --json`` (its ``timings``: the
  controller's set-up, Ansible's start, the hosts' task time, the tail);
* the same with ``--forks 1``, 2, 4, ... up to N (``--forks-sweep``);
* ``fleet verify`` of the same hosts (the target's yardstick: converged apply
  <= 2x verify at 12 hosts);
* with ``--firewall-probe``, the converged apply with ``certkit_allow_from`` set
  on every host, so that the read step probes ufw, firewalld and nftables
  (without it certkit skips the probe).

With ``--before TREE`` (a checkout of certkit to compare, e.g. ``git archive main
certkit | tar -x -C /tmp/before``), every apply and verify runs once with each
tree in turn, on the same hosts in the same round (``*_before`` keys): on a
shared machine only such interleaved pairs compare.  Each run's CPU time (certkit,
ansible-playbook and its workers; not the hosts') is recorded beside its wall
time: it moves far less with the machine's load.

Writes the medians as JSON (``bench-results/fleet-scale-N.json``) and a table.
Usage: scripts/bench_fleet_scale.py --hosts 12 [--repeat 3] [--forks-sweep]
The machine's load average is recorded next to the numbers: ratios matter more
than absolute times on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from lab import booted_lab, lab_missing  # noqa: E402
from test_fleet import inventory  # noqa: E402

BEFORE: Path | None = None  # --before: the tree to compare with
CPU: dict[str, list[float]] = {}  # key -> CPU seconds of each run


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def certkit(*args: str, tree: Path | None = None) -> tuple[float, dict[str, Any] | None]:
    """Run certkit (this checkout, or ``tree``); its wall time and its --json output
    (raises when it fails).  Its CPU time goes to :data:`CPU` under ``cpu_key``."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)  # and cwd: ``-m`` puts the cwd first on the path
    started, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run(
        [sys.executable, "-m", "certkit", *args],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=tree or REPO,
    )
    took = time.monotonic() - started
    certkit.last_cpu = _children_cpu() - cpu  # type: ignore[attr-defined]
    if done.returncode != 0:
        raise SystemExit(f"certkit {' '.join(args)} failed: {done.stdout[-3000:]}{done.stderr}")
    data = None
    if "--json" in args:
        try:
            data = json.loads(done.stdout)
        except ValueError:
            data = None
    return took, data


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def phases(runs: list[dict[str, Any] | None]) -> dict[str, float]:
    """The median of each phase of ``timings`` (when this certkit reports them)."""
    got: dict[str, list[float]] = {}
    for data in runs:
        for key, value in ((data or {}).get("timings") or {}).items():
            if isinstance(value, int | float):
                got.setdefault(key, []).append(float(value))
    return {k: median(v) for k, v in got.items()}


def host_seconds(runs: list[dict[str, Any] | None]) -> float | None:
    """The median over runs of the mean per-host task time."""
    means = []
    for data in runs:
        secs = [
            float(d["seconds"])
            for d in ((data or {}).get("hosts") or {}).values()
            if isinstance(d.get("seconds"), int | float)
        ]
        if secs:
            means.append(sum(secs) / len(secs))
    return median(means) if means else None


def bench(count: int, repeat: int, sweep: bool, probe: bool, work: Path) -> dict[str, Any]:
    os.environ["CERTKIT_HOME"] = str(work / "home")
    os.environ["DOCKER_CONFIG"] = str(work / "docker")
    certkit("init-ca")
    forks = [1] + [f for f in (2, 4, 8, 16, 32) if f < count] + [count] if sweep else [count]
    with booted_lab() as lab:
        hosts = lab.boot(count)
        inv = str(inventory(work / "fleet.ini", hosts))
        fw = {f"h{i}": "certkit_allow_from='[\"10.0.0.0/8\"]'" for i in range(1, count + 1)}
        inv_fw = str(inventory(work / "fleet-fw.ini", hosts, extra=fw))
        first, _ = certkit("fleet", "apply", inv, "--restart", "--contexts", f"--forks={count}")
        if probe:
            certkit("fleet", "apply", inv_fw, "--restart", f"--forks={count}")
            certkit("fleet", "apply", inv, "--restart", f"--forks={count}")
        walls: dict[str, list[float]] = {}
        datas: dict[str, list[dict[str, Any] | None]] = {}
        load = []

        def step(key: str, *args: str) -> None:
            for tree, suffix in [(None, "")] + ([(BEFORE, "_before")] if BEFORE else []):
                t, d = certkit(*args, tree=tree)
                walls.setdefault(key + suffix, []).append(t)
                CPU.setdefault(key + suffix, []).append(certkit.last_cpu)  # type: ignore[attr-defined]
                if "--json" in args:
                    datas.setdefault(key + suffix, []).append(d)

        for _ in range(repeat):
            load.append(os.getloadavg()[0])
            for f in forks:
                step(
                    f"apply_forks_{f}",
                    *("fleet", "apply", inv, "--restart", "--contexts", "--json", f"--forks={f}"),
                )
            step("verify", "fleet", "verify", inv, f"--forks={count}")
            if probe:
                step(
                    "apply_firewall_probe",
                    *("fleet", "apply", inv_fw, "--restart", "--json", f"--forks={count}"),
                )
    out: dict[str, Any] = {
        "hosts": count,
        "first_run_s": round(first, 2),
        "load_avg_1m": [round(x, 2) for x in load],
        "cores": os.cpu_count(),
    }
    for key, values in walls.items():
        out[key] = {
            "median_s": median(values),
            "all_s": [round(v, 2) for v in values],
            "cpu_median_s": median(CPU[key]),
        }
        if key in datas:
            out[key]["phases"] = phases(datas[key])
            out[key]["host_task_mean_s"] = host_seconds(datas[key])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--forks-sweep", action="store_true", help="also --forks 1, 2, 4, ...")
    parser.add_argument("--firewall-probe", action="store_true", help="also with allow_from")
    parser.add_argument("--before", help="a certkit tree to compare with, interleaved")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    global BEFORE
    BEFORE = Path(args.before).resolve() if args.before else None
    missing = lab_missing()
    if missing:
        raise SystemExit(f"the lab cannot boot here: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-scale-") as tmp:
        results = bench(args.hosts, args.repeat, args.forks_sweep, args.firewall_probe, Path(tmp))
    verify = results["verify"]["median_s"]
    for key, value in results.items():
        if isinstance(value, dict):
            ratio = value["median_s"] / verify if verify else 0
            print(
                f"{key:28} {value['median_s']:7.2f} s  ({ratio:4.1f}x verify)  "
                f"cpu {value['cpu_median_s']:6.2f} s  {value.get('phases', '')}"
            )
    print(f"load (1 min) at each round: {results['load_avg_1m']} on {results['cores']} cores")
    out = Path(args.json_out or REPO / "bench-results" / f"fleet-scale-{args.hosts}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
