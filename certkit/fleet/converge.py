"""Converging one Docker host to "serves mutual TLS with a good certificate" (the fleet's step).

Runs on the Ansible controller, inside the action plugin
``certkit.docker.daemon_tls``, once per host.  The host is *converged* when

* its installed certificate was signed by the current CA, covers every name
  the inventory gives, is not due within ``renew_within`` days, and its key
  matches it;
* certkit's own :func:`~certkit.host.plan.plan_install` finds nothing to
  change (daemon.json, the drop-in, ``ca.pem`` = the trust bundle);
* docker.service is active and serves that very certificate on the TLS port.

Then nothing is issued and nothing written.  Otherwise a certificate is
issued only when the installed one is not good (through the one pipeline,
:func:`certkit.server.issue_server`), the plan is written with backups, and
dockerd restarted with rollback; a host whose docker is down is restarted
(with ``restart``) or reported failed, never called converged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .. import certs, defaults, placement
from ..errors import CertkitError, UsageError
from ..host.engine import BACK_SECONDS, served_serial
from ..host.firewall import FirewallPlan
from ..host.target import InstallOutcome, install
from ..install_options import InstallOptions
from ..names import DOCKER_TLS_PORT, check_port, parse_names
from ..origins import ServerOrigin
from ..server import issue_server
from ..store import CAStore
from .target import AnsibleTarget

PROBE_SECONDS = BACK_SECONDS  # how long dockerd may take to serve again after a restart
RENEW_WITHIN = defaults.RENEW_WINDOW_DAYS  # fleet apply --renew-within


@dataclass(frozen=True)
class HostSpec:
    """What the inventory says about one host."""

    name: str  # the certificate's primary name (ansible_host, or the inventory name)
    sans: tuple[str, ...] = ()
    options: InstallOptions = field(default_factory=InstallOptions)
    renew_within: float = RENEW_WITHIN
    days: int = defaults.SERVER_DAYS
    key_type: str = defaults.DEFAULT_KEY_TYPE
    names_moved: bool = False  # fleet apply --force: take names other hosts held

    def names(self) -> list[str]:
        return parse_names([self.name, *self.sans]).all()


@dataclass
class HostOutcome:
    """What converging one host did (or, in check mode, would do)."""

    host: str
    changed: bool = False
    failed: bool = False
    msg: str = ""
    issued: str | None = None  # the serial of a new certificate
    reasons: list[str] = field(default_factory=list)  # why a certificate is (to be) issued
    written: list[str] = field(default_factory=list)
    restarted: bool = False
    restart_needed: bool = False
    serving: bool = False  # dockerd serves the installed certificate on the port
    docker: str = "unknown"
    diff: str = ""
    warnings: list[str] = field(default_factory=list)
    address: str = ""
    port: int = DOCKER_TLS_PORT
    serial: str | None = None  # of the installed certificate
    firewall: dict[str, Any] | None = None  # the rules added (or, in check mode, to add)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def certificate_problems(
    store: CAStore, target: AnsibleTarget, spec: HostSpec
) -> tuple[list[str], tuple[bytes, bytes] | None]:
    """Why the installed certificate must be replaced ([] when it is good), and its
    (cert, key) PEMs when it is."""
    files_ = target.read_files().cert_files
    installed = target.system.cert_files
    cert_pem = files_.get(str(installed["cert"]))
    key_pem = files_.get(str(installed["key"]))
    if not cert_pem or not key_pem:
        return ["no certificate installed"], None
    try:
        cert = certs.load_cert(cert_pem)
        key = certs.load_key(key_pem)
    except UsageError:
        return ["the installed certificate or key is unreadable"], None
    problems = []
    if not certs.signed_by(cert, store.load_cert()):
        problems.append("not issued by the current CA")
    missing = [n for n in spec.names() if n not in certs.san_names(cert)]
    if missing:
        problems.append(f"does not name {', '.join(missing)}")
    left = certs.days_left(cert)
    if left <= spec.renew_within:
        problems.append(f"expires in {max(left, 0):.0f} days (renewal at {spec.renew_within:g})")
    if not certs.key_matches_cert(key, cert):
        problems.append("the key does not match the certificate")
    return problems, None if problems else (cert_pem, key_pem)


def recorded_install(store: CAStore, serial: str) -> InstallOptions | None:
    """How certificate ``serial`` was recorded as installed (None: no such server record)."""
    record = store.inventory().get(serial)
    origin = record.leaf_origin if record is not None else None
    return origin.install if isinstance(origin, ServerOrigin) else None


def recorded_firewall(store: CAStore, serial: str, options: InstallOptions) -> InstallOptions:
    """``options`` knowing the sources whose firewall rule certkit added for the installed
    certificate ``serial`` (its record), so that a source dropped from
    ``certkit_allow_from`` has its rule removed (firewalld's rules carry no mark)."""
    was = recorded_install(store, serial) if options.allow_from else None
    return options if was is None else replace(options, firewall_added=was.firewall_added)


def record_firewall(
    store: CAStore, serial: str, options: InstallOptions, firewall: FirewallPlan | None
) -> None:
    """Record on certificate ``serial`` the sources asked for and those whose rule certkit
    added, as issue-server records them (nothing when the firewall was left alone)."""
    if firewall is None:
        return
    wanted = (options.allow_from, firewall.recorded())
    was = recorded_install(store, serial)
    if was is None or (was.allow_from, was.firewall_added) == wanted:
        return  # not a record certkit installed, or a converged host: no write, no lock
    placement.record_firewall(store, serial, *wanted)


@dataclass
class Converge:
    """One host's convergence: inputs, and the outcome being filled in."""

    store: CAStore
    target: AnsibleTarget
    spec: HostSpec
    address: str
    restart: bool
    check: bool
    client: tuple[str, str] | None = None  # client cert and key files for the TLS probe
    probe_seconds: float = PROBE_SECONDS

    def run(self) -> HostOutcome:
        out = HostOutcome(self.target.host, address=self.address, port=self.spec.options.port)
        self.target.address = self.target.address or self.address  # the engine's TLS check
        try:
            check_port(self.spec.options.port)
            self._converge(out)
        except CertkitError as e:
            out.failed, out.msg = True, str(e)
        out.docker = self.target.docker_state
        return out

    def _converge(self, out: HostOutcome) -> None:
        if not self.check:  # what a killed run left installing, settled from the host first
            placement.settle(self.store, self.spec.name, self.target)
        host_files = self.target.read_files()
        out.docker = self.target.docker_state
        problems, pems = certificate_problems(self.store, self.target, self.spec)
        out.reasons = problems
        outcome: InstallOutcome | None
        if problems:
            result = issue_server(
                self.store,
                self.spec.name,
                self.target,
                sans=list(self.spec.sans),
                days=self.spec.days,
                key_type=self.spec.key_type,
                options=self.spec.options,
                restart=self.restart,
                dry_run=self.check,
                names_moved=self.spec.names_moved,
            )
            out.issued = result.serial
            outcome = result.install
        else:
            assert pems is not None
            trio = (self.store.trust_bundle_pem(), *pems)
            serial = certs.serial_hex(certs.load_cert(pems[0]))
            options = recorded_firewall(self.store, serial, self.spec.options)
            outcome = install(
                self.target, host_files, options, trio, dry_run=self.check, restart=self.restart
            )
            if not self.check:
                record_firewall(self.store, serial, options, outcome.plan.firewall)
        assert outcome is not None
        plan = outcome.plan
        # A firewall rule to add or to remove alone is a change too (without a restart).
        out.firewall = plan.firewall.to_json() if plan.firewall else None
        out.changed = plan.changed or bool(
            plan.firewall and (plan.firewall.rules or plan.firewall.drop)
        )
        out.written = plan.written
        out.warnings = plan.warnings
        out.diff = plan.diff()
        out.restarted = outcome.restarted
        out.restart_needed = plan.changed and not outcome.restarted
        if self.check:
            self._check_docker(out)
            return
        cert_path = plan.cert_paths["cert"]
        new = {c.path: c.content for c in plan.changes}
        installed = new.get(cert_path, host_files.cert_files.get(cert_path))
        out.serial = certs.serial_hex(certs.load_cert(installed)) if installed else None
        self._make_it_serve(out, files_changed=plan.changed)
        if not problems and out.serving and out.serial:  # served: its record is in use
            placed = [self.target.where(p) for p in plan.cert_paths.values()]
            placement.adopted(self.store, out.serial, placed)

    def _check_docker(self, out: HostOutcome) -> None:
        """Check mode: a host whose docker is down would be restarted (a pending change)."""
        if self.target.docker_state != "active":
            out.changed = True
            out.restart_needed = True
            out.msg = f"docker.service is {self.target.docker_state}: it would be restarted"

    def _make_it_serve(self, out: HostOutcome, *, files_changed: bool) -> None:
        """After the write: dockerd must serve the installed certificate (restarting it when
        it is down and ``restart`` allows), or the host failed."""
        installed = out.serial
        if files_changed and not out.restarted:
            out.msg = "written; dockerd reads it at its next restart (run with restart)"
            return
        timeout = self.probe_seconds if out.restarted else 2.0
        serial, why = self._probe(timeout)
        if serial != installed and not out.restarted and self.restart:
            # Down, failed, or running an older configuration: restart it (rollback rule).
            self.target.restart_docker()
            out.restarted = out.changed = True
            serial, why = self._probe(self.probe_seconds)
        out.serving = serial is not None and serial == installed
        if not out.serving:
            out.failed = True
            seen = f"serves certificate {serial}" if serial else f"no TLS session ({why})"
            hint = "" if self.restart else "; run with restart to restart it"
            out.msg = (
                f"dockerd on {self.address}:{self.spec.options.port} does not serve the "
                f"installed certificate {installed}: {seen}; docker.service was "
                f"{self.target.docker_state}{hint}."
            )

    def _probe(self, timeout: float) -> tuple[str | None, str]:
        bundle = self.store.trust_bundle_pem()
        return served_serial(self.address, self.spec.options.port, bundle, self.client, timeout)
