"""A Grafana dashboard for certkit's metrics: ``certkit metrics dashboard``.

Import it in Grafana (Dashboards > New > Import) and pick the Prometheus data
source that scrapes node_exporter: the ``__inputs`` block asks for it, as in
enix/x509-certificate-exporter's dashboard.  Every stat panel's query ends in
``or vector(0)``, so "nothing expired" shows 0, not "No data"; the ``ca``
variable narrows every panel to some CAs.
"""

from __future__ import annotations

from typing import Any

from .alerting import DAY, textfile_selector
from .metrics import CA_NOT_AFTER, CERT_NOT_AFTER, CERT_RENEW_AFTER, ROTATION, VERIFY_SUCCESS

UID = "certkit-docker-tls"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
CA = '{ca=~"$ca"}'


def _target(expr: str, *, instant: bool = False, legend: str = "", fmt: str = "") -> dict[str, Any]:
    target: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "refId": "A"}
    if instant:
        target["instant"], target["range"] = True, False
    if legend:
        target["legendFormat"] = legend
    if fmt:
        target["format"] = fmt
    return target


def _stat(title: str, expr: str, x: int, red_from: float, description: str) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}, {"color": "red", "value": red_from}]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 4, "w": 4, "x": x, "y": 0},
        "targets": [_target(expr, instant=True)],
        "fieldConfig": {
            "defaults": {"thresholds": {"mode": "absolute", "steps": steps}, "unit": "none"},
            "overrides": [],
        },
        "options": {"colorMode": "background", "reduceOptions": {"calcs": ["lastNotNull"]}},
    }


def _table(title: str, expr: str, y: int, unit: str, description: str) -> dict[str, Any]:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 9, "w": 24, "x": 0, "y": y},
        "targets": [_target(expr, instant=True, fmt="table")],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "transformations": [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True}}}
        ],
        "options": {"sortBy": [{"displayName": "Value", "desc": False}]},
    }


def panels(warn_days: float = 30, textfile: str = "certkit.prom") -> list[dict[str, Any]]:
    """The dashboard's panels: six counters, expiry over time, two tables."""
    left = f"{CERT_NOT_AFTER}{CA} - time()"
    stats = [
        ("Certificates in use", f"count({CERT_NOT_AFTER}{CA}) or vector(0)", 1e12,
         "Certificates not superseded, every kind."),
        ("Expired", f"count({left} <= 0) or vector(0)", 1,
         "In use and past notAfter: renew now."),
        (f"Expiring within {warn_days:g} days", f"count({left} < {warn_days:g} * {DAY} > 0) "
         "or vector(0)", 1, "certkit status lists them with their renew command."),
        ("Renewal overdue", f"count({CERT_RENEW_AFTER}{CA} < time()) or vector(0)", 1,
         "Two thirds of the lifetime passed without a renewal."),
        ("Endpoints failing verify", f"count({VERIFY_SUCCESS} == 0) or vector(0)", 1,
         "From status --format prometheus --verify."),
        ("CA rotations under way", f"sum({ROTATION}{CA}) or vector(0)", 1,
         "Between rotate-ca start and finish."),
    ]  # fmt: skip
    result = [_stat(t, e, 4 * n, red, d) for n, (t, e, red, d) in enumerate(stats)]
    result.append(
        {
            "type": "timeseries",
            "title": "Days left, soonest per CA and kind",
            "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": 16, "x": 0, "y": 4},
            "targets": [_target(f"min by (ca, kind) ({left}) / {DAY}", legend="{{ca}} {{kind}}")],
            "fieldConfig": {"defaults": {"unit": "d"}, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "right"}},
        }
    )
    result.append(
        {
            "type": "stat",
            "title": "Metrics file age",
            "description": f"When {textfile} was last written (node_textfile_mtime_seconds).",
            "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": 8, "x": 16, "y": 4},
            "targets": [
                _target(
                    f"time() - max(node_textfile_mtime_seconds{textfile_selector(textfile)})",
                    instant=True,
                )
            ],
            "fieldConfig": {"defaults": {"unit": "s"}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"]}},
        }
    )
    result.append(
        _table("Certificates by time left", f"sort({left})", 12, "s",
               "Every certificate in use, soonest expiry first.")
    )  # fmt: skip
    result.append(
        _table("CA certificates by time left", f"sort({CA_NOT_AFTER}{CA} - time())", 21, "s",
               "Each CA's current certificate.")
    )  # fmt: skip
    result.append(
        _table("Endpoint audits", f"{VERIFY_SUCCESS}", 30, "bool_yes_no",
               "1: certkit verify passed every check against the Docker endpoint.")
    )  # fmt: skip
    for n, panel in enumerate(result, start=1):
        panel["id"] = n
    return result


def dashboard(warn_days: float = 30, textfile: str = "certkit.prom") -> dict[str, Any]:
    """The dashboard document Grafana imports (schemaVersion 39)."""
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        "uid": UID,
        "title": "certkit: Docker TLS certificates",
        "description": "Expiry, renewal and endpoint audits from certkit's textfile metrics.",
        "tags": ["certkit", "docker", "tls", "x509"],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5m",
        "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "panels": panels(warn_days, textfile),
    }


def _variables() -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {"text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
        },
        {
            "name": "ca",
            "label": "CA",
            "type": "query",
            "datasource": DATASOURCE,
            "definition": f"label_values({CERT_NOT_AFTER}, ca)",
            "query": {"query": f"label_values({CERT_NOT_AFTER}, ca)", "refId": "ca"},
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
            "refresh": 2,
            "sort": 1,
        },
    ]


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every panel target: what a test runs against Prometheus."""
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
