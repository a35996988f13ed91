"""Time a group of cases round-robin, each run in a fresh copy of its seed.

A run's wall time is read just before the process starts and just after it is
reaped; its CPU time (user + system) is the kernel's own accounting of the
finished child (``wait4``), the processes it waited for included.  Before each
timed run its directory is copied from the seed and ``sync`` runs (untimed), so
no run pays for the previous one's dirty pages; nothing is deleted until the
end (deleting thousands of files slows the next run's file creation on ext4).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cases import Case, Group


@dataclass
class Row:
    """One case's measurements (the JSON's ``results``)."""

    key: str
    group: str
    tool: str
    count: int | None
    command: str
    note: str = ""
    runs: int = 0
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    cpu_median_s: float | None = None
    times_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # the round of each run: for pairing
    failed: str | None = None
    maxrss_kib: list[int] = field(default_factory=list)  # the peak resident memory of each run
    first_s: list[float] = field(default_factory=list)  # stream cases: stdout's second line
    writer: dict[str, float] | None = None  # the group's concurrent disk writer, if it ran

    def add(self, round_no: int, wall: float, cpu: float, rss: int, first: float | None) -> None:
        self.rounds.append(round_no)
        self.times_s.append(wall)
        self.cpu_s.append(cpu)
        self.maxrss_kib.append(rss)
        if first is not None:
            self.first_s.append(first)
        self.runs = len(self.times_s)
        self.median_s = statistics.median(self.times_s)
        self.min_s, self.max_s = min(self.times_s), max(self.times_s)
        self.cpu_median_s = statistics.median(self.cpu_s)


class Runner:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.scripts = work / "cases"
        self.runs_dir = work / "runs"
        self.scripts.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(parents=True, exist_ok=True)

    def argv(self, case: Case) -> list[str]:
        if case.script is None:
            return case.argv
        path = self.scripts / (case.key.replace("/", "_") + ".sh")
        if not path.exists():
            path.write_text("set -euo pipefail\n" + case.script)
        return ["bash", str(path), str(case.count or 0)]

    def prepare(self, case: Case) -> Path:
        """The run's directory: a fresh copy of the seed (or the work dir), synced."""
        if case.seed is None:
            return self.work
        run = Path(tempfile.mkdtemp(prefix=case.key.replace("/", "_") + "-", dir=self.runs_dir))
        shutil.copytree(self.work / "seeds" / case.seed, run, symlinks=True, dirs_exist_ok=True)
        os.sync()
        return run

    def run_once(self, case: Case) -> tuple[float, float, int, float | None]:
        """Wall-clock and CPU seconds of one run, its peak memory (KiB) and, for a stream
        case, when its second line of output came (RuntimeError when it fails)."""
        run = self.prepare(case)
        argv = [a.replace("{run}", str(run)) for a in self.argv(case)]
        env = {**os.environ, **{k: v.replace("{run}", str(run)) for k, v in case.env.items()}}
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(
                argv,
                cwd=run,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if case.stream else subprocess.DEVNULL,
                stderr=err,
            )
            first = None
            if proc.stdout is not None:  # "[" then the first item: time it, read the rest
                proc.stdout.readline()
                proc.stdout.readline()
                first = time.perf_counter() - start
                while proc.stdout.read(1 << 16):
                    pass
                proc.stdout.close()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace").strip()[-500:]
                raise RuntimeError(f"exit {proc.returncode}: {tail}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, first

    def run_group(self, group: Group) -> list[Row]:
        """Warm every case with three runs or more up once, then time the rounds."""
        rows = {
            c.key: Row(c.key, c.group, c.tool, c.count, " ".join(self.argv(c)), c.note)
            for c in group.cases
        }
        live = list(group.cases)
        writer = self.start_writer() if group.writer else None
        try:
            for case in [c for c in live if (c.runs or group.rounds) >= 3]:
                self._attempt(case, rows[case.key], live, None)
            for round_no in range(group.rounds):
                for case in [c for c in live if round_no < (c.runs or group.rounds)]:
                    self._attempt(case, rows[case.key], live, round_no)
        finally:
            report = self.stop_writer(writer) if writer else None
        for row in rows.values():
            row.writer = report
        return list(rows.values())

    def start_writer(self) -> subprocess.Popen[bytes]:
        """benchlib/writer.py on the work directory's disk, until :meth:`stop_writer`."""
        d = self.work / "writer"
        d.mkdir(exist_ok=True)
        script = Path(__file__).with_name("writer.py")
        return subprocess.Popen([sys.executable, str(script), str(d)])

    def stop_writer(self, proc: subprocess.Popen[bytes]) -> dict[str, float]:
        proc.terminate()
        proc.wait(timeout=60)
        return dict(json.loads((self.work / "writer" / "writer.json").read_text()))

    def _attempt(self, case: Case, row: Row, live: list[Case], round_no: int | None) -> None:
        try:
            wall, cpu, rss, first = self.run_once(case)
        except RuntimeError as e:
            row.failed = str(e)
            live.remove(case)
            return
        if round_no is not None:
            row.add(round_no, wall, cpu, rss, first)
