"""A CA rotation across a fleet while every client polls (issue 34).

Shared by ``tests/test_fleet_rotation.py`` (3 lab hosts, asserts) and
``scripts/bench_fleet_rotation.py`` (3 and 12 hosts, the timeline in
docs/renewal.md).  :class:`ContextPoller` sends ``GET /version`` over mutual
TLS every ``interval`` seconds with a docker context's files, read again for
every request as the docker CLI reads them, and sorts what went wrong:

* ``pause``: the connection was refused, reset or closed unanswered with no TLS
  alert: dockerd was restarting (the restart pause a rotation cannot avoid with the systemd
  method);
* ``lockout``: a certificate was refused (a TLS alert from dockerd, or this
  client refusing dockerd's certificate): what a safe rotation never does.

:func:`documented_rotation` runs the steps docs/renewal.md gives, timing each.
No certkit import: it measures from the outside, through the CLI.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .renewal import tls_client, version_request

# A certkit command line -> its --json output (raises when it fails).
Runner = Callable[[list[str]], Any]


@dataclass
class Failure:
    at: float  # seconds since the pollers started
    kind: str  # "pause" or "lockout"
    why: str


@dataclass
class ContextPoller:
    """Polls dockerd at ``address:port`` with the files of ``tls_dir`` (a docker context)."""

    name: str
    address: str
    port: int
    tls_dir: Path
    interval: float = 0.25
    sent: int = 0
    failures: list[Failure] = field(default_factory=list)
    longest_gap: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self._loop, args=(t0,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        time.sleep(self.interval * 4)  # a few requests after the last step
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _loop(self, t0: float) -> None:
        last_ok = time.monotonic()
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                version_request(self.address, self.port, tls_client(self.tls_dir), timeout=30)
                self.longest_gap = max(self.longest_gap, time.monotonic() - last_ok)
                last_ok = time.monotonic()
            except (OSError, ssl.SSLError, RuntimeError) as e:
                why = " ".join((str(e) or type(e).__name__).split())[:160]
                self.failures.append(Failure(round(start - t0, 2), classify(e), why))
            self.sent += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def to_json(self) -> dict[str, Any]:
        kinds = [f.kind for f in self.failures]
        return {
            "sent": self.sent,
            "pause": kinds.count("pause"),
            "lockout": kinds.count("lockout"),
            "longest_gap_s": round(self.longest_gap, 2),
            "lockouts": [f.__dict__ for f in self.failures if f.kind == "lockout"][:5],
        }


def classify(e: BaseException) -> str:
    """``pause`` for a connection refused, reset or cut without a TLS alert; else
    ``lockout`` (a certificate refused by either side, a wrong answer)."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return "lockout"
    text = str(e).lower()
    if isinstance(e, ssl.SSLError) and ("alert" in text or "certificate" in text):
        return "lockout"
    if isinstance(e, ConnectionError | TimeoutError | socket.timeout | ssl.SSLEOFError):
        return "pause"
    if isinstance(e, ssl.SSLError) and "eof" in text:
        return "pause"
    if isinstance(e, RuntimeError) and str(e) == "answer b''":
        return "pause"  # the session was set up, then closed unanswered: dockerd stopping
    return "lockout"


@dataclass
class Timeline:
    """When each step ran (seconds since ``t0``) and what its ``--json`` said."""

    t0: float = field(default_factory=time.monotonic)
    steps: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def run(self, name: str, run: Runner, argv: list[str]) -> Any:
        start = time.monotonic()
        out = run(argv)
        end = time.monotonic()
        self.steps.append(
            {"step": name, "start_s": round(start - self.t0, 2), "seconds": round(end - start, 2)}
        )
        self.outputs[name] = out
        return out


def documented_rotation(
    run: Runner, inventory: str, clients: list[str], timeline: Timeline
) -> Timeline:
    """The fleet rotation of docs/renewal.md, step by step, with ``rotate-ca status``
    after each step (in ``timeline.outputs`` as ``status after STEP``)."""
    apply = ["fleet", "apply", inventory, "--restart"]
    steps: list[tuple[str, list[str]]] = [
        ("rotate-ca start", ["rotate-ca", "start"]),
        ("fleet apply 1 (trust bundle)", apply),
        *[(f"renew client {c}", ["renew", "client", c]) for c in clients],
        ("fleet apply 2 (fleet contexts, servers)", apply),
        ("rotate-ca finish", ["rotate-ca", "finish"]),
        ("fleet apply 3 (old CA dropped)", apply),
    ]
    for name, argv in steps:
        timeline.run(name, run, argv)
        timeline.outputs[f"status after {name}"] = run(["rotate-ca", "status"])
    return timeline


def context_tls(docker_config: Path, name: str) -> Path:
    """The TLS directory of docker context ``name``."""
    for meta in (docker_config / "contexts/meta").rglob("meta.json"):
        if json.loads(meta.read_text())["Name"] == name:
            return docker_config / "contexts/tls" / meta.parent.name / "docker"
    raise LookupError(f"no docker context {name!r}")
