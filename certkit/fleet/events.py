"""ansible-runner's events turned into ``fleet apply``'s results, as they arrive.

:func:`take` reads one event (a host's result of the action, an unreachable
host, a failed batch gate) into a :class:`~certkit.fleet.apply.FleetResult`
and says which host it settled, so that the caller can print that host's
line at once.  :class:`Timeline` notes when each phase of the run began
(the controller's set-up, Ansible's start, the hosts' work, the tail) for
``--json``'s ``timings``: where the time of a run goes.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from .apply import FleetResult

ACTION = "certkit.docker.daemon_tls"
GATE_TASK = "certkit batch gate"
_RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _epoch(stamp: Any) -> float | None:
    """Seconds since the epoch of an event's ISO time (None when it has none)."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # ansible-runner writes UTC without an offset
    return when.timestamp()


@dataclass
class Timeline:
    """When the run's phases began, on the controller's clock."""

    started: float  # time.monotonic() when apply began
    marks: dict[str, float] = field(default_factory=dict)
    first_task: float | None = None  # monotonic: Ansible's first task began
    last_result: float | None = None  # monotonic: the last host's result arrived

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def event(self, event: dict[str, Any]) -> None:
        """Note when Ansible's first task began and when the last result came."""
        kind = event.get("event")
        if kind == "playbook_on_task_start" and self.first_task is None:
            created = _epoch(event.get("created"))
            now = time.monotonic()
            # The event's own time, moved onto the monotonic clock.
            self.first_task = now - max(0.0, time.time() - created) if created else now
        elif kind in _RESULT_EVENTS:
            self.last_result = time.monotonic()

    def summary(self) -> dict[str, float]:
        """Seconds per phase: ``setup`` (certkit's checks, the admin certificate),
        ``ansible_start`` (ansible-playbook up to its first task), ``hosts`` (first task
        to the last host's result), ``ansible_end`` (to ansible-playbook's exit),
        ``after`` (contexts)."""
        points = [
            ("setup", self.marks.get("ansible_start")),
            ("ansible_start", self.first_task),
            ("hosts", self.last_result),
            ("ansible_end", self.marks.get("ansible_end")),
            ("after", self.marks.get("end")),
        ]
        out: dict[str, float] = {}
        previous = self.started
        for name, at in points:
            if at is None:
                continue
            out[name] = round(max(0.0, at - previous), 3)
            previous = at
        out["total"] = round(previous - self.started, 3)
        return out


def _timing(data: dict[str, Any]) -> dict[str, Any]:
    """The host's step timing from the event (seconds, and when it began and ended)."""
    out: dict[str, Any] = {}
    duration = data.get("duration")
    if isinstance(duration, int | float):
        out["seconds"] = round(float(duration), 3)
    for key in ("start", "end"):
        if isinstance(data.get(key), str):
            out[f"{key}ed" if key == "end" else "started"] = data[key]
    return out


def take(result: FleetResult, event: dict[str, Any]) -> str | None:
    """Read one event into ``result``; the host whose result it settled, if any."""
    if event.get("event") not in _RESULT_EVENTS:
        return None
    data = event.get("event_data") or {}
    host = str(data.get("host") or "")
    res = data.get("res") or {}
    if event["event"] == "runner_on_unreachable":
        msg = _ANSI.sub("", str(res.get("msg") or "unreachable")).strip()
        result.hosts[host] = {"host": host, "failed": True, "unreachable": True, "msg": msg}
        result.hosts[host].update(_timing(data))
        return host
    if data.get("task") == GATE_TASK and event["event"] == "runner_on_failed":
        why = _ANSI.sub("", str(res.get("stderr") or res.get("msg") or "")).strip()
        last = why.splitlines()[-1] if why else f"exit {res.get('rc')}"
        result.stopped = f"the batch gate failed after {host}'s batch: {last}"
        return None
    if data.get("task_action") != ACTION:
        return None
    info = dict(res.get("certkit") or {"host": host})
    info["failed"] = event["event"] == "runner_on_failed" or bool(res.get("failed"))
    info["msg"] = _ANSI.sub("", str(res.get("msg") or info.get("msg") or ""))
    info.update(_timing(data))
    if data.get("task", "").startswith("certkit restart") and host in result.hosts:
        # The role's handler converged it again with a restart: that result wins.
        info["changed"] = bool(info.get("changed") or result.hosts[host].get("changed"))
        before = result.hosts[host].get("seconds")
        if isinstance(before, float) and "seconds" in info:
            info["seconds"] = round(before + info["seconds"], 3)
    result.hosts[host] = info
    return host


def add_silent_failures(
    result: FleetResult, runner: Any, group: str = "all", limit: str | None = None
) -> None:
    """Hosts the recap counts as failed or unreachable without an event of ours; a run
    that reached no host at all is a usage error with Ansible's reason."""
    stats = runner.stats or {}
    for key in ("failures", "dark"):
        for host in stats.get(key) or {}:
            if host not in result.hosts:
                result.hosts[host] = {"host": host, "failed": True, "msg": f"ansible: {key}"}
    if result.hosts:
        return
    output = _output(runner)
    if runner.rc == 0 or "no hosts" in output.lower() or "could not match" in output.lower():
        what = " and ".join(
            x
            for x in (
                f"group {group!r}" if group != "all" else "",
                f"--limit {limit!r}" if limit else "",
            )
            if x
        )
        raise UsageError(
            f"No host of the inventory matches {what or 'the play'}: "
            "check the names with ansible-inventory --graph."
        )
    raise UsageError(
        f"ansible-playbook failed before any host ran (exit {runner.rc}): {_last_lines(output)}"
    )


def _output(runner: Any) -> str:
    try:
        text = runner.stdout.read()
    except (AttributeError, OSError, ValueError):
        return ""
    return _ANSI.sub("", str(text))


def _last_lines(text: str) -> str:
    """Ansible's error lines (its warnings left out), else its last three lines."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("ERROR", "[ERROR]"))]
    return " ".join(errors[-3:] or lines[-3:]) or "no output"
