"""certkit fleet apply on three real-systemd lab hosts, against the one-host-at-a-time way.

Boots three lab hosts (tests/lab.py) per scenario, each fresh, and times:

* ``certkit fleet apply INVENTORY --restart --contexts``: the first run
  (three certificates issued, three daemons reconfigured and restarted), the
  converged re-run (nothing issued, nothing written; ``--repeat`` times,
  median) and ``--check`` on the converged fleet;
* three sequential ``certkit issue-server ADDRESS --ssh root@ADDRESS --restart``
  then ``client-context`` (what a user without the fleet command runs), on
  three fresh hosts in the same run.  Running it again re-issues and restarts
  every time: it has no converged re-run.

* with ``--baseline-ansible BIN`` (the bin directory of an Ansible that has
  community.crypto, e.g. ``pip install 'ansible>=12,<13'`` in a venv of its
  own): ``scripts/bench_fleet_baseline.yml``, the community.crypto-style
  playbook, first run, re-run and ``--check``, on three fresh hosts.

Writes a table and the same numbers as JSON (``bench-results/fleet.json``).
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from lab import LabHost, booted_lab, lab_missing  # noqa: E402
from test_fleet import inventory  # noqa: E402


def certkit(*args: str) -> float:
    """Run certkit; its wall time (raises when it fails)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "certkit", *args], capture_output=True, text=True, timeout=600
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"certkit {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return took


def fresh_env(work: Path, name: str) -> None:
    os.environ["CERTKIT_HOME"] = str(work / name / "home")
    os.environ["DOCKER_CONFIG"] = str(work / name / "docker")
    certkit("init-ca")


def bench_fleet(work: Path, repeat: int) -> dict[str, object]:
    fresh_env(work, "fleet")
    with booted_lab() as lab:
        hosts = lab.boot(3)
        inv = str(inventory(work / "fleet.ini", hosts))
        first = certkit("fleet", "apply", inv, "--restart", "--contexts")
        again = [certkit("fleet", "apply", inv, "--restart", "--contexts") for _ in range(repeat)]
        check = [certkit("fleet", "apply", inv, "--check") for _ in range(repeat)]
        verify = [certkit("fleet", "verify", inv) for _ in range(repeat)]
    return {
        "first_run_s": round(first, 2),
        "converged_rerun_s": round(statistics.median(again), 2),
        "converged_rerun_all_s": [round(t, 2) for t in again],
        "check_s": round(statistics.median(check), 2),
        "verify_s": round(statistics.median(verify), 2),
    }


def one_host(h: LabHost, i: int) -> float:
    return certkit("issue-server", h.address, *h.cli_args("root"), "--restart") + certkit(
        "client-context", f"h{i}", "--host", h.address
    )


def bench_sequential(work: Path) -> dict[str, object]:
    fresh_env(work, "sequential")
    with booted_lab() as lab:
        hosts = lab.boot(3)
        per_host = [one_host(h, i) for i, h in enumerate(hosts, 1)]
        # The same commands once more: issue-server has no "already converged".
        again = sum(
            certkit("issue-server", h.address, *h.cli_args("root"), "--restart") for h in hosts
        )
    return {
        "first_run_s": round(sum(per_host), 2),
        "per_host_s": [round(t, 2) for t in per_host],
        "rerun_s": round(again, 2),
    }


def playbook(argv: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stdout[-3000:]}{done.stderr[-2000:]}")
    return took


def bench_baseline(work: Path, ansible_bin: Path) -> dict[str, object]:
    with booted_lab() as lab:
        hosts = lab.boot(3)
        inv = str(inventory(work / "baseline.ini", hosts))
        argv = [
            str(ansible_bin / "ansible-playbook"),
            "-i",
            inv,
            str(REPO / "scripts" / "bench_fleet_baseline.yml"),
            "-e",
            f"baseline_ca_dir={work / 'baseline-ca'}",
        ]
        first = playbook(argv)
        again = playbook(argv)
        check = playbook([*argv, "--check"])
    return {"first_run_s": round(first, 2), "rerun_s": round(again, 2), "check_s": round(check, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each converged step")
    parser.add_argument("--baseline-ansible", help="bin dir of an Ansible with community.crypto")
    parser.add_argument("--json-out", default=str(REPO / "bench-results" / "fleet.json"))
    args = parser.parse_args()
    missing = lab_missing()
    if missing:
        raise SystemExit(f"the lab cannot boot here: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        results = {"fleet_apply": bench_fleet(work, args.repeat)}
        results["issue_server_x3"] = bench_sequential(work)
        if args.baseline_ansible:
            results["community_crypto_playbook"] = bench_baseline(work, Path(args.baseline_ansible))
    fl, sq = results["fleet_apply"], results["issue_server_x3"]
    bl = results.get("community_crypto_playbook", {})
    rows = [
        ("3 hosts, first run", sq["first_run_s"], bl.get("first_run_s"), fl["first_run_s"]),
        ("3 hosts, re-run", sq["rerun_s"], bl.get("rerun_s"), fl["converged_rerun_s"]),
        ("3 hosts, --check (converged)", None, bl.get("check_s"), fl["check_s"]),
        ("3 hosts, fleet verify", None, None, fl["verify_s"]),
    ]

    def cell(v: object) -> str:
        return "-" if v is None else f"{v:.1f} s"

    print(f"{'':30} {'issue-server x3':>16} {'community.crypto':>17} {'fleet apply':>12}")
    for label, seq, base, fleet in rows:
        print(f"{label:30} {cell(seq):>16} {cell(base):>17} {cell(fleet):>12}")
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
