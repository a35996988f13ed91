"""PASS/WARN/FAIL reports: what ``certkit verify`` and ``certkit doctor`` both print.

A report is a list of :class:`Check` lines; it is ``ok`` unless one of them
FAILed.  WARN never fails a report, SKIP says a check did not apply here.
"""

from __future__ import annotations

from dataclasses import dataclass

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclass
class Check:
    """One line of a report."""

    name: str
    status: str
    message: str

    def __post_init__(self) -> None:
        # A message quotes what hosts and certificates say (daemon.json values, SANs): a
        # line break there would print a line of its own, e.g. a forged "PASS ...".
        from .untrusted import escape_controls

        self.message = escape_controls(self.message, keep="\t")

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message}


class Checklist:
    """What every PASS/WARN/FAIL report shares (``verify`` and ``doctor``)."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.checks)

    def add(self, name: str, status: str, message: str) -> None:
        self.checks.append(Check(name, status, message))
