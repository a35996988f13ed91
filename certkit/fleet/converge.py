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
from ..rotation import lockout_warning
from ..server import issue_server
from ..store import CAStore
from .target import AnsibleTarget

NOT_CURRENT_CA = "not issued by the current CA"
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
    rotation: str = ""  # why a certificate of the old CA is kept for now (CA rotation)

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
        problems.append(NOT_CURRENT_CA)
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


def check_renew_within(spec: HostSpec) -> None:
    """Refuse a renewal window as long as the certificate's lifetime: every run would
    re-issue it (and restart dockerd), never converging."""
    if spec.renew_within >= spec.days:
        raise UsageError(
            f"renew_within {spec.renew_within:g} days is not below the {spec.days}-day lifetime "
            f"of {spec.name}'s certificate (certkit_days): every run would re-issue it and "
            f"restart dockerd; give fewer days ({spec.days // 3} renews it at 2/3 of its lifetime)."
        )


def rotation_stage(
    store: CAStore, target: AnsibleTarget, problems: list[str]
) -> tuple[tuple[bytes, bytes] | None, str]:
    """During a CA rotation, whether a host whose only problem is a certificate of the old
    CA keeps it for now (its PEMs, and why), so that no client is locked out:

    1. it does not trust the new CA yet: the trust bundle is installed, the certificate kept;
    2. some client or CI certificate trusts only the old CA: the certificate is kept until
       they are renewed (they would refuse a server certificate of the new CA);

    else ``(None, "")``: re-issue it under the new CA now."""
    if problems != [NOT_CURRENT_CA] or not store.rotation_under_way():
        return None, ""
    from .. import rotation
    from ..renew import bundle_fingerprints, ca_flag

    installed = target.system.cert_files
    files_ = target.read_files().cert_files
    cert_pem, key_pem = files_[str(installed["cert"])], files_[str(installed["key"])]
    prev = store.previous_dir / "ca.pem"
    if not certs.signed_by(certs.load_cert(cert_pem), certs.load_cert(prev.read_bytes())):
        return None, ""
    new_fp = certs.fingerprint(store.load_cert())
    try:
        host_trust = bundle_fingerprints(files_.get(str(installed["ca"])) or b"")
    except UsageError:
        host_trust = []
    if new_fp not in host_trust:
        return (cert_pem, key_pem), (
            "servers keep their certificate of the old CA and now trust both CAs; next: renew "
            f"the clients that `certkit rotate-ca status{ca_flag(store)}` lists, then run "
            "`certkit fleet apply --restart` again (it renews the fleet's contexts, then the "
            "servers)"
        )
    stuck = rotation.server_reissue_hazards(store)
    if not stuck:
        return None, ""
    names = ", ".join(f"{r.kind} {r.name}" for r in stuck)
    commands = "; ".join(dict.fromkeys(rotation.command_for(store, r) for r in stuck))
    return (cert_pem, key_pem), (
        f"servers keep their certificate of the old CA while {names} "
        f"{'trusts' if len(stuck) == 1 else 'trust'} only the old CA (a server certificate "
        f"of the new CA would lock them out); renew first: {commands}; then run "
        "`certkit fleet apply --restart` again"
    )


def record_trust(store: CAStore, serial: str, ca_pem: bytes) -> None:
    """Record which CAs dockerd trusts with certificate ``serial`` (it serves it now): the
    rotation's bookkeeping reads it (nothing written when it is already recorded)."""
    from ..renew import bundle_fingerprints

    try:
        trust = bundle_fingerprints(ca_pem)
    except UsageError:
        return
    record = store.inventory().get(serial)
    if record is None or record.kind != "server" or list(record.leaf_origin.trust) == trust:
        return
    placement.installed(store, serial, [], trust=trust)


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
    _ca_pem: bytes | None = None  # the ca.pem the host has after the write

    def run(self) -> HostOutcome:
        out = HostOutcome(self.target.host, address=self.address, port=self.spec.options.port)
        self.target.address = self.target.address or self.address  # the engine's TLS check
        try:
            check_port(self.spec.options.port)
            self._converge(out)
        except CertkitError as e:
            out.failed, out.msg = True, e.message
        out.docker = self.target.docker_state
        return out

    def _converge(self, out: HostOutcome) -> None:
        check_renew_within(self.spec)
        if not self.check:  # what a killed run left installing, settled from the host first
            placement.settle(self.store, self.spec.name, self.target)
        host_files = self.target.read_files()
        out.docker = self.target.docker_state
        problems, pems = certificate_problems(self.store, self.target, self.spec)
        if problems:
            pems, note = rotation_stage(self.store, self.target, problems)
            if note:
                out.rotation, problems = note, []
            elif problems == [NOT_CURRENT_CA]:
                out.warnings += (
                    lockout_warning(self.store) if self.store.rotation_under_way() else []
                )
        out.reasons = problems
        outcome: InstallOutcome | None
        if problems:
            outcome = self._issue(out)
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
        ca_path = plan.cert_paths["ca"]
        self._ca_pem = new.get(ca_path, host_files.cert_files.get(ca_path))
        self._make_it_serve(out, files_changed=plan.changed)
        if out.serving and out.serial and self._ca_pem:
            record_trust(self.store, out.serial, self._ca_pem)
        if not problems and out.serving and out.serial:  # served: its record is in use
            placed = [self.target.where(p) for p in plan.cert_paths.values()]
            placement.adopted(self.store, out.serial, placed)

    def _issue(self, out: HostOutcome) -> InstallOutcome | None:
        """A new certificate, installed; a failed attempt still counts as issued (its record
        says it was never installed)."""
        primary = parse_names([self.spec.name]).all()[0]
        before = {r.serial for r in self.store.inventory().find("server", primary)}
        try:
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
        except CertkitError as e:
            after = {r.serial for r in self.store.inventory().find("server", primary)}
            fresh = sorted(after - before)
            if fresh:
                out.issued = fresh[-1]
                e.message += f" (certificate {fresh[-1]} was issued and recorded as not installed)"
            raise
        out.issued = result.serial
        return result.install

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
        if serial is None and not out.restarted and self._listens():
            # dockerd is up and listening on the host: the way here is blocked, and a
            # restart would stop its containers and change nothing (issue 34, item 4).
            out.failed = True
            out.msg = (
                f"dockerd on {self.target.host} listens on port {self.spec.options.port}, but "
                f"{self.address}:{self.spec.options.port} is not reachable from this machine "
                f"({why}): check the firewall on the host and on the way (ufw, firewalld, "
                "nftables, security groups); dockerd was not restarted (if it hangs, "
                "restart it: systemctl restart docker)."
            )
            return
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

    def _listens(self) -> bool:
        """Whether something listens on the TLS port on the host itself, with docker.service
        active (read from /proc/net/tcp*: no tool needed on the host)."""
        if self.target.docker_state != "active":
            return False
        port = f"{self.spec.options.port:04X}"
        script = (
            'for f in /proc/net/tcp /proc/net/tcp6; do [ -r "$f" ] || continue; '
            'while read -r _ local _ st _; do case "$local" in '
            f'*:{port}) [ "$st" = 0A ] && echo CERTKIT-LISTEN;; esac; done < "$f"; done; true'
        )
        try:
            return "CERTKIT-LISTEN" in self.target.run_script(script)
        except CertkitError:
            return False

    def _probe(self, timeout: float) -> tuple[str | None, str]:
        bundle = self.store.trust_bundle_pem()
        return served_serial(self.address, self.spec.options.port, bundle, self.client, timeout)
