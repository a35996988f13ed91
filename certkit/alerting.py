"""Prometheus alerting rules and a Grafana dashboard for the metrics certkit exports.

``certkit status --format prometheus --out DIR/certkit.prom`` writes the
textfile that node_exporter's textfile collector serves (:mod:`certkit.metrics`);
:func:`rules` are the alerts built on it and :func:`dashboard` the panels, in
the style of enix/x509-certificate-exporter's PrometheusRule and dashboard:
expiry is a timestamp, and every expression subtracts ``time()`` itself, so an
alert stays right between two runs of the cron job.

Both are plain data (dicts): :func:`render_rules` turns the rules into the YAML
file ``promtool check rules`` and Prometheus's ``rule_files`` read.  Nothing
here imports more than the standard library.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .metrics import (
    CERT_NOT_AFTER,
    CERT_NOT_BEFORE,
    CERT_RENEW_AFTER,
    ROTATION,
    VERIFY_SUCCESS,
)

GROUP = "certkit.rules"
DAY = 86400
# Prometheus's model.ParseDuration, without the empty string.
_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")


@dataclass(frozen=True)
class RuleSettings:
    """The knobs of the rules: thresholds in days, Prometheus durations as text."""

    warn_days: float = 30  # certkit status's default window
    pending: str = "15m"  # each alert's `for:` (a cron job every 15 minutes)
    rotation_days: float = 14  # rotate-ca start ... finish should not take longer
    stale: str = "2h"  # the textfile is older than this: the cron job stopped
    textfile: str = "certkit.prom"  # its name in the collector's directory

    def check(self) -> RuleSettings:
        """Itself, or :class:`UsageError` naming the bad option."""
        for flag, value in (("--for", self.pending), ("--stale-after", self.stale)):
            if not value or not _DURATION.match(value):
                raise UsageError(
                    f"{flag} {value!r} is not a Prometheus duration; write e.g. 15m, 2h or 1d."
                )
        for flag, days in (
            ("--warn-days", self.warn_days),
            ("--rotation-days", self.rotation_days),
        ):
            if days <= 0:
                raise UsageError(f"{flag} must be a positive number of days, got {days:g}.")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+\.prom", self.textfile):
            raise UsageError(
                f"--textfile {self.textfile!r}: give the file's name as node_exporter's "
                "textfile collector reads it, e.g. certkit.prom."
            )
        return self


def _seconds(days: float) -> str:
    return f"{days:g} * {DAY}"


def textfile_selector(name: str) -> str:
    """``{file=~...}`` matching the collector's ``file`` label for ``name`` (a bare name in
    node_exporter 1.5, the whole path in later versions)."""
    return '{file=~"(.*/)?' + name.replace(".", "[.]") + '"}'


_ITEM = (
    "{{ $labels.kind }} certificate {{ $labels.name }} "
    "(CA {{ $labels.ca }}, serial {{ $labels.serial }})"
)
_NEXT = "Next: certkit status --ca {{ $labels.ca }} (prints the renew command)."


def _alert(
    name: str, expr: str, severity: str, pending: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": pending,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def rules(settings: RuleSettings | None = None) -> dict[str, Any]:
    """The rules file's content: one group of alerts on certkit's metrics.

    >>> [r["alert"] for r in rules()["groups"][0]["rules"]][:2]
    ['CertkitCertificateExpiringSoon', 'CertkitCertificateExpired']
    """
    s = (settings or RuleSettings()).check()
    left = f"{CERT_NOT_AFTER} - time()"
    started = f'max by (ca) ({CERT_NOT_BEFORE}{{kind="ca"}})'
    textfile = f"node_textfile_mtime_seconds{textfile_selector(s.textfile)}"
    alerts = [
        _alert(
            "CertkitCertificateExpiringSoon",
            f"{left} < {_seconds(s.warn_days)} > 0",
            "warning",
            s.pending,
            "Certificate expires soon",
            f"{_ITEM} expires in {{{{ $value | humanizeDuration }}}}. {_NEXT}",
        ),
        _alert(
            "CertkitCertificateExpired",
            f"{left} <= 0",
            "critical",
            s.pending,
            "Certificate has expired",
            f"{_ITEM} has expired: TLS clients refuse it. {_NEXT}",
        ),
        _alert(
            "CertkitRenewalOverdue",
            f"{CERT_RENEW_AFTER} < time()",
            "warning",
            s.pending,
            "Certificate renewal is overdue",
            f"Two thirds of the lifetime of {_ITEM} have passed and it was not renewed: is "
            "`certkit renew --expiring-within DAYS` still running from cron? " + _NEXT,
        ),
        _alert(
            "CertkitEndpointVerifyFailing",
            f"{VERIFY_SUCCESS} == 0",
            "critical",
            s.pending,
            "Docker endpoint fails certkit verify",
            "The Docker endpoint {{ $labels.host }}:{{ $labels.port }} failed the audit of "
            "`certkit status --format prometheus --verify`. Next: certkit verify "
            "{{ $labels.host }}:{{ $labels.port }}",
        ),
        _alert(
            "CertkitRotationTooLong",
            f"{ROTATION} == 1 and on (ca) (time() - {started} > {_seconds(s.rotation_days)})",
            "warning",
            s.pending,
            "CA rotation has been under way too long",
            f"A rotation of CA {{{{ $labels.ca }}}} started more than {s.rotation_days:g} days "
            "ago: clients trust both CAs until it is finished. Next: certkit rotate-ca status "
            "--ca {{ $labels.ca }}",
        ),
        _alert(
            "CertkitMetricsStale",
            f"time() - {textfile} > {_duration_seconds(s.stale)}",
            "warning",
            "0m",
            "certkit's metrics are not being refreshed",
            f"{{{{ $labels.file }}}} was last written {{{{ $value | humanizeDuration }}}} ago "
            f"(more than {s.stale}): the job running `certkit status --format prometheus "
            "--out ...` has stopped, so the other certkit alerts read old data.",
        ),
    ]
    return {"groups": [{"name": GROUP, "rules": alerts}]}


def _duration_seconds(text: str) -> int:
    units = {"y": 365 * DAY, "w": 7 * DAY, "d": DAY, "h": 3600, "m": 60, "s": 1, "ms": 0}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|[ywdhms])", text))


def alert_names(data: dict[str, Any]) -> list[str]:
    """The alerts of a rules document, in order."""
    return [r["alert"] for g in data["groups"] for r in g["rules"]]


def render_rules(data: dict[str, Any]) -> str:
    """The rules as YAML (block style, every string double-quoted: JSON's escapes are YAML's)."""
    lines = [
        "# Prometheus alerting rules for certkit's metrics (certkit metrics rules).",
        "groups:",
    ]
    for group in data["groups"]:
        lines.append(f"  - name: {json.dumps(group['name'])}")
        lines.append("    rules:")
        for rule in group["rules"]:
            lines.append(f"      - alert: {json.dumps(rule['alert'])}")
            lines.append(f"        expr: {json.dumps(rule['expr'])}")
            lines.append(f"        for: {json.dumps(rule['for'])}")
            for key in ("labels", "annotations"):
                lines.append(f"        {key}:")
                lines += [f"          {k}: {json.dumps(v)}" for k, v in rule[key].items()]
    return "\n".join(lines) + "\n"
