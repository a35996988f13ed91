"""Where a converged ``certkit fleet apply``'s time goes, part by part, on N lab hosts.

Each part is timed on its own, ``--repeat`` times (median), on the same booted hosts:

* ``certkit_import``: Python start-up and the imports of ``fleet apply`` (the CLI);
* ``worker_import``: what each Ansible worker imported for the action
  (``certkit.fleet.action`` and its dependencies) before certkit preloaded it;
* ``ansible_empty_play``: ``ansible-playbook`` of a play without tasks on the
  inventory (Ansible's start-up, inventory, the callback: the floor of any run);
* ``ansible_raw_true``: a play running ``raw: true`` on every host (SSH
  connections and one round trip per host, Ansible's task machinery);
* ``firewall_probe_host``: the firewall probe (ufw, firewalld, nft) inside one host;
* ``apply_converged``: the whole converged ``fleet apply`` (with ``timings``);
* ``verify``: ``fleet verify`` of the same hosts.

Usage: scripts/bench_fleet_profile.py --hosts 12 [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
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

BIN = Path(sys.executable).parent


def timed(argv: list[str], **kw: Any) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200, **kw)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return took, done.stdout


def play(work: Path, name: str, tasks: str) -> Path:
    path = work / f"{name}.yml"
    path.write_text(f"- hosts: all\n  gather_facts: false\n  tasks: {tasks}\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    if lab_missing():
        raise SystemExit(f"the lab cannot boot here: {', '.join(lab_missing())}")
    parts: dict[str, list[float]] = {}
    apply_timings: list[dict[str, float]] = []
    load = []
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-fleet-prof-") as tmp, booted_lab() as lab:
        work = Path(tmp)
        os.environ["CERTKIT_HOME"] = str(work / "home")
        os.environ["DOCKER_CONFIG"] = str(work / "docker")
        timed([py, "-m", "certkit", "init-ca"])
        hosts = lab.boot(args.hosts)
        inv = str(inventory(work / "fleet.ini", hosts))
        forks = f"--forks={args.hosts}"
        timed([py, "-m", "certkit", "fleet", "apply", inv, "--restart", forks])
        empty = play(work, "empty", "[]")
        raw = play(work, "raw", "[{raw: 'true'}]")
        env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "True"}
        probe = "ufw status; firewall-cmd --state; nft list ruleset"
        for _ in range(args.repeat):
            load.append(os.getloadavg()[0])
            for name, argv in (
                ("certkit_import", [py, "-c", "import certkit.cli.fleet, certkit.fleet.apply"]),
                ("worker_import", [py, "-c", "import certkit.fleet.action; "
                                   "certkit.fleet.action.preload()"]),
                ("ansible_empty_play", [str(BIN / "ansible-playbook"), "-i", inv, str(empty)]),
                ("ansible_raw_true", [str(BIN / "ansible-playbook"), "-i", inv, forks, str(raw)]),
                ("firewall_probe_host", ["nsenter", "-t", str(hosts[0].pid), "-a",
                                         "sh", "-c", probe + " >/dev/null 2>&1; true"]),
            ):  # fmt: skip
                parts.setdefault(name, []).append(timed(argv, env=env)[0])
            took, out = timed(
                [py, "-m", "certkit", "fleet", "apply", inv, "--restart", forks, "--json"]
            )
            parts.setdefault("apply_converged", []).append(took)
            apply_timings.append(json.loads(out).get("timings") or {})
            parts.setdefault("verify", []).append(
                timed([py, "-m", "certkit", "fleet", "verify", inv, forks])[0]
            )
    result: dict[str, Any] = {k: round(statistics.median(v), 3) for k, v in parts.items()}
    result["apply_timings"] = (
        {
            k: round(statistics.median([t[k] for t in apply_timings if k in t]), 3)
            for k in apply_timings[0]
        }
        if apply_timings and apply_timings[0]
        else {}
    )
    result["hosts"] = args.hosts
    result["load_avg_1m"] = [round(x, 2) for x in load]
    print(json.dumps(result, indent=2))
    out_path = Path(args.json_out or REPO / "bench-results" / f"fleet-profile-{args.hosts}.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
