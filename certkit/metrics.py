"""Prometheus metrics of the store: what ``certkit status --format prometheus`` writes.

The text is the exposition format node_exporter's textfile collector reads
(``*.prom`` files in its ``--collector.textfile.directory``), rendered by
``prometheus_client`` and written atomically (0644) so the collector never
reads half a file.  Expiry is exported as timestamps, not "days left", in the
style of enix/x509-certificate-exporter: the values stay constant between
renewals, and alert rules subtract ``time()`` themselves (``certkit metrics rules``)::

    certkit_cert_not_after_timestamp_seconds - time() < 21 * 86400

Only active certificates are exported (superseded ones are no longer in use).
With ``endpoints`` (``--verify``) every installed server endpoint is audited
live with :func:`certkit.verify.verify` and gets a success sample and the
time of the audit.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dockercli, files
from .errors import OperationError, UsageError
from .inventory import Item, status
from .names import format_host, parse_endpoint
from .origins import ServerOrigin
from .store import CAStore

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

CERT_NOT_AFTER = "certkit_cert_not_after_timestamp_seconds"
CERT_NOT_BEFORE = "certkit_cert_not_before_timestamp_seconds"
CERT_RENEW_AFTER = "certkit_cert_renew_after_timestamp_seconds"
CERT_EXPIRED = "certkit_cert_expired"
CERT_REVOKED = "certkit_cert_revoked"
CA_NOT_AFTER = "certkit_ca_not_after_timestamp_seconds"
ROTATION = "certkit_rotation_in_progress"
VERIFY_SUCCESS = "certkit_endpoint_verify_success"
VERIFY_TIME = "certkit_endpoint_verify_timestamp_seconds"


@dataclass
class EndpointAudit:
    """One installed server endpoint and what the live audit said about it."""

    host: str
    port: int
    ok: bool
    timestamp: float
    message: str  # the first failed check, or "all N checks passed"

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "ok": self.ok,
            "timestamp": self.timestamp,
            "message": self.message,
        }


@dataclass
class Metrics:
    """The rendered exposition text and what went into it."""

    text: str
    certificates: list[Item]
    cas: list[str]
    endpoints: list[EndpointAudit] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "cas": self.cas,
            "certificates": len(self.certificates),
            "endpoints": [e.to_json() for e in self.endpoints],
        }


def timestamp(iso: str) -> float:
    """Seconds since the epoch of an inventory date (ISO 8601, UTC)."""
    when = dt.datetime.fromisoformat(iso)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def installed_endpoints(items: list[Item]) -> list[tuple[str, str, int]]:
    """``(ca, host, port)`` of every active server certificate installed on a Docker host."""
    found: dict[tuple[str, str, int], None] = {}
    for item in items:
        if item.kind != "server" or not item.installed:
            continue
        record = CAStore(item.ca).inventory().get(item.serial)
        origin = record.origin if record is not None else None
        if isinstance(origin, ServerOrigin) and origin.install is not None:
            found[(item.ca, item.name, origin.install.port)] = None
    return list(found)


def context_for(
    ca: str, host: str, port: int, items: list[Item], docker_config: str | None
) -> str | None:
    """The docker context to audit ``host:port`` with: one pointing there, preferably one
    holding a client certificate of ``ca`` (per ``items``), else None."""
    ours = {p for i in items if i.kind == "client" and i.ca == ca for p in i.installed}
    here = []
    for info in dockercli.list_contexts(docker_config):
        try:
            if parse_endpoint(info.host) == (host, port):
                here.append(info)
        except UsageError:  # not a tcp:// endpoint
            continue
    here.sort(key=lambda info: str(info.tls_dir) not in ours)
    return here[0].name if here else None


def audit(
    host: str, port: int, context: str | None, timeout: float, docker_config: str | None
) -> EndpointAudit:
    """Run ``certkit verify`` against ``host:port`` with ``context``; never raises."""
    from .verify import context_credentials, verify

    started = time.time()
    if context is None:
        why = f"no docker context points at {format_host(host, port)}"
        return EndpointAudit(host, port, False, started, why)
    try:
        report = verify(host, port, context_credentials(context, docker_config)[1], timeout)
    except UsageError as e:
        return EndpointAudit(host, port, False, started, e.message)
    failed = [c for c in report.checks if c.status == "FAIL"]
    message = (
        f"{failed[0].name}: {failed[0].message}"
        if failed
        else f"all {len(report.checks)} checks passed (context {context})"
    )
    return EndpointAudit(host, port, report.ok, started, message)


def collect(
    ca: str | None = None,
    *,
    verify: bool = False,
    timeout: float = 10.0,
    docker_config: str | None = None,
    now: dt.datetime | None = None,
) -> Metrics:
    """The metrics of ``ca`` (default: every CA), rendered; with ``verify`` audit endpoints.

    Raises :class:`UsageError` for an empty store, as ``certkit status`` does:
    a cron job reading the wrong ``$HOME`` must not export an empty, happy file.
    """
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    report = status(ca=ca, now=now)
    active = report.active
    now_ts = (now or dt.datetime.now(dt.UTC)).timestamp()
    registry = CollectorRegistry(auto_describe=True)
    labels = ["ca", "kind", "name", "serial"]
    not_after = Gauge(
        CERT_NOT_AFTER, "notAfter of each certificate in use.", labels, registry=registry
    )
    not_before = Gauge(
        CERT_NOT_BEFORE, "notBefore of each certificate in use.", labels, registry=registry
    )
    renew_after = Gauge(
        CERT_RENEW_AFTER,
        "When two thirds of the certificate's lifetime have passed: renewal is overdue after.",
        labels,
        registry=registry,
    )
    expired = Gauge(
        CERT_EXPIRED,
        "1 when the certificate in use has expired, else 0.",
        labels,
        registry=registry,
    )
    starts = _not_befores(report.cas)
    revoked = Gauge(
        CERT_REVOKED, "1 when `certkit revoke` revoked it, else 0.", labels, registry=registry
    )
    for item in active:
        when = timestamp(item.not_after)
        values = (item.ca, item.kind, item.name, item.serial)
        not_after.labels(*values).set(when)
        start = starts.get((item.ca, item.serial))
        if start is not None:
            not_before.labels(*values).set(start)
            renew_after.labels(*values).set(start + (when - start) * 2 / 3)
        expired.labels(*values).set(1 if when <= now_ts else 0)
        revoked.labels(*values).set(1 if item.revoked_at else 0)
    _ca_metrics(registry, report.cas, active)
    endpoints: list[EndpointAudit] = []
    if verify:
        endpoints = [
            audit(h, p, context_for(c, h, p, active, docker_config), timeout, docker_config)
            for c, h, p in installed_endpoints(active)
        ]
        _endpoint_metrics(registry, endpoints)
    text = generate_latest(registry).decode()
    return Metrics(text, active, report.cas, endpoints)


def _not_befores(cas: list[str]) -> dict[tuple[str, str], float]:
    """``(ca, serial)`` -> notBefore of every certificate in use (one query per CA)."""
    found: dict[tuple[str, str], float] = {}
    for name in cas:
        for record in CAStore(name).inventory().find(active=True):
            found[(name, record.serial)] = timestamp(record.not_before)
    return found


def _ca_metrics(registry: CollectorRegistry, cas: list[str], active: list[Item]) -> None:
    from prometheus_client import Gauge

    ca_not_after = Gauge(
        CA_NOT_AFTER, "notAfter of each CA's current certificate.", ["ca"], registry=registry
    )
    rotation = Gauge(
        ROTATION,
        "1 between `certkit rotate-ca start` and `finish`, else 0.",
        ["ca"],
        registry=registry,
    )
    for name in cas:
        current = [i for i in active if i.ca == name and i.kind == "ca"]
        if current:
            ca_not_after.labels(name).set(max(timestamp(i.not_after) for i in current))
        rotation.labels(name).set(1 if CAStore(name).rotation_under_way() else 0)


def _endpoint_metrics(registry: CollectorRegistry, endpoints: list[EndpointAudit]) -> None:
    from prometheus_client import Gauge

    success = Gauge(
        VERIFY_SUCCESS,
        "1 when `certkit verify` passed every check against the endpoint, else 0.",
        ["host", "port"],
        registry=registry,
    )
    when = Gauge(
        VERIFY_TIME, "When the endpoint was last audited.", ["host", "port"], registry=registry
    )
    for e in endpoints:
        success.labels(e.host, str(e.port)).set(1 if e.ok else 0)
        when.labels(e.host, str(e.port)).set(e.timestamp)


def check_out(out: str) -> Path:
    """The ``--out`` file, checked before any work: its directory must exist."""
    path = Path(out).expanduser().absolute()
    if path.is_dir():
        raise UsageError(f"--out {out} is a directory: give a file name, e.g. {path}/certkit.prom.")
    if not path.parent.is_dir():
        raise UsageError(
            f"--out {out}: the directory {path.parent} does not exist; create it or choose "
            "node_exporter's --collector.textfile.directory."
        )
    return path


def write(path: Path, metrics: Metrics) -> Path:
    """Write the text atomically, 0644 (the collector runs as another user).

    Replacing the previous run's file is the point (cron), but never through a
    link or into a directory someone else controls (:func:`files.write_output_file`).
    """
    try:
        return files.write_output_file(path, metrics.text, files.PUBLIC_FILE, force=True)
    except OSError as e:
        raise OperationError(f"cannot write {path}: {e.strerror}.") from None
