"""Local checks of a Docker host's TLS setup and of the docker client (``certkit doctor``).

Nothing here touches the network or changes a file.  Host side: daemon.json
parses, the TLS files it names exist with safe modes and belong together, and
the systemd unit does not fight daemon.json over ``hosts``.  Client side: the
docker contexts' TLS files, and environment variables that silently change
which endpoint or which CA is used (docs/design.md, "Facts the code relies on").

With ``root`` every system path is read under that directory (the same
``--root`` as ``issue-server --install``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dockercli, paths
from .checks import FAIL, PASS, SKIP, WARN, Check, Checklist
from .errors import CertkitError, UsageError

if TYPE_CHECKING:
    from .expiry import Dates
    from .host.exposure import Finding
    from .host.hostfiles import HostFiles
    from .store import CAStore


@dataclass
class DoctorReport(Checklist):
    """Every local check, one line each; ``ok`` unless one FAILed."""

    root: str
    docker_config: str
    checks: list[Check] = field(default_factory=list)
    exposure: list[Finding] = field(default_factory=list)  # who can reach the Docker ports
    orphans: list[str] = field(default_factory=list)  # store directories with no record

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "root": self.root,
            "docker_config": self.docker_config,
            "checks": [c.to_json() for c in self.checks],
            "exposure": [f.to_json() for f in self.exposure],
            "orphans": self.orphans,
        }


# ---------------------------------------------------------------- files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _locate(value: str, sp: paths.SystemPaths) -> Path:
    """A path named in daemon.json, looked up as written, else under ``--root``."""
    path = Path(value)
    if path.exists() or not sp.sandboxed or not path.is_absolute():
        return path
    rerooted = Path(sp.at(value))
    return rerooted if rerooted.exists() else path


def _expiry(report: DoctorReport, name: str, d: Dates) -> None:
    """One expiry line: which certificate, and when expired or expiring the command that
    fixes it (:mod:`certkit.expiry`)."""
    if d.status != PASS:
        report.add(name, d.status, d.sentence("%Y-%m-%d"))
    else:
        date = d.not_after.strftime("%Y-%m-%d")
        report.add(name, PASS, f"{d.label} is valid until {date} ({int(d.days_left)} days)")


def _ca_expiry(report: DoctorReport, ca_path: Path, signed: Any, where: str) -> None:
    """A line for a CA in ``ca_path`` that expired or expires soon (none while it is fine)."""
    from .expiry import ca_dates

    try:
        found = ca_dates(ca_path, signed)
    except UsageError:
        return  # not a bundle: the check reading it says so
    for d in found:
        if d.status != PASS:
            _expiry(report, "ca-expiry", replace(d, label=f"{where}: {d.label}"))


# ---------------------------------------------------------------- daemon.json and TLS files


def _read_daemon_json(report: DoctorReport, sp: paths.SystemPaths) -> dict[str, Any] | None:
    from .host.daemonjson import parse_daemon_json

    path = Path(sp.daemon_json)
    try:
        text = path.read_text()
    except FileNotFoundError:
        report.add(
            "daemon-json",
            SKIP,
            f"no {path}: this is not a Docker host set up for TLS "
            "(on the host: certkit issue-server HOST --install)",
        )
        return None
    except OSError as e:
        report.add("daemon-json", FAIL, f"cannot read {path}: {e.strerror}")
        return None
    try:
        config = parse_daemon_json(text, path)
    except UsageError as e:
        report.add("daemon-json", FAIL, e.message)
        return None
    report.add("daemon-json", PASS, f"{path} parses")
    return config


def _check_tls_settings(report: DoctorReport, config: dict[str, Any]) -> bool:
    """Is TLS with client verification switched on?  False when there is no TLS at all."""
    tls_keys = {k for k in ("tls", "tlsverify", "tlscacert", "tlscert", "tlskey") if k in config}
    if not tls_keys:
        report.add(
            "tlsverify",
            SKIP,
            "daemon.json has no TLS settings (certkit issue-server HOST --install adds them)",
        )
        return False
    if config.get("tlsverify") is True:
        if "tlscacert" in config:
            report.add("tlsverify", PASS, "tlsverify is on: clients need a certificate of your CA")
        else:
            report.add(
                "tlsverify",
                FAIL,
                "tlsverify is on without tlscacert: add tlscacert or dockerd falls back to "
                "default paths (certkit issue-server HOST --install writes all three)",
            )
    else:
        report.add(
            "tlsverify",
            FAIL,
            "TLS is on but tlsverify is not true: any client can connect without a "
            'certificate; set "tlsverify": true and "tlscacert" in daemon.json',
        )
    return True


def _tls_file(
    report: DoctorReport, config: dict[str, Any], key: str, sp: paths.SystemPaths
) -> Path | None:
    value = config.get(key)
    if not value:
        report.add(key, FAIL, f"daemon.json does not set {key}: always write all three TLS paths")
        return None
    path = _locate(str(value), sp)
    if not path.is_file():
        report.add(key, FAIL, f"{key} {path} does not exist: dockerd will not start")
        return None
    mode = _mode(path)
    if key == "tlskey" and mode & 0o077:
        report.add(
            key,
            FAIL,
            f"the server key {path} is readable by others (mode {mode:04o}); run: chmod 600 {path}",
        )
    elif mode & 0o022:
        report.add(key, FAIL, f"{path} is writable by others (mode {mode:04o}); chmod 644 {path}")
    else:
        report.add(key, PASS, f"{path} exists, mode {mode:04o}")
    return path


def _check_tls_files(report: DoctorReport, config: dict[str, Any], sp: paths.SystemPaths) -> None:
    from . import certs

    ca_path = _tls_file(report, config, "tlscacert", sp)
    cert_path = _tls_file(report, config, "tlscert", sp)
    key_path = _tls_file(report, config, "tlskey", sp)
    if cert_path is None:
        return
    try:
        cert = certs.load_cert(cert_path.read_bytes())
    except (OSError, UsageError):
        report.add("server-cert", FAIL, f"{cert_path} is not a readable PEM certificate")
        return
    if key_path is not None:
        _check_key_pair(report, cert, key_path)
    if ca_path is not None:
        _check_issuer(report, cert, ca_path)
    from .expiry import dates, server_fix

    fix = server_fix(cert, next(iter(certs.san_names(cert)), None))
    _expiry(report, "server-cert-expiry", dates("server", "the server certificate", cert, fix))
    if ca_path is not None:
        _ca_expiry(report, ca_path, cert, "tlscacert")


def _check_key_pair(report: DoctorReport, cert: Any, key_path: Path) -> None:
    from . import certs

    try:
        data = key_path.read_bytes()
    except OSError as e:
        hint = "; run certkit doctor as root" if isinstance(e, PermissionError) else ""
        report.add("key-matches-cert", FAIL, f"cannot read {key_path}: {e.strerror}{hint}")
        return
    if certs.is_encrypted_pem(data):
        report.add(
            "key-matches-cert",
            FAIL,
            f"{key_path} is encrypted: dockerd cannot read it; write it unencrypted (mode 0600)",
        )
        return
    try:
        key = certs.load_key(data)
    except UsageError:
        report.add("key-matches-cert", FAIL, f"{key_path} is not a readable PEM private key")
        return
    if certs.key_matches_cert(key, cert):
        report.add("key-matches-cert", PASS, "tlskey belongs to tlscert")
    else:
        report.add(
            "key-matches-cert",
            FAIL,
            "tlskey does not belong to tlscert: dockerd will not start; install the pair "
            "again (certkit issue-server HOST --install)",
        )


def _check_issuer(report: DoctorReport, cert: Any, ca_path: Path) -> None:
    from . import certs

    try:
        cas = certs.load_certs(ca_path.read_bytes())
    except (OSError, UsageError):
        report.add("ca-signed-server", FAIL, f"{ca_path} is not a readable PEM bundle")
        return
    issuer = next((ca for ca in cas if certs.signed_by(cert, ca)), None)
    if issuer is None:
        report.add(
            "ca-signed-server",
            FAIL,
            f"no CA in tlscacert {ca_path} signed tlscert: clients that trust that CA "
            "reject this server; install a certificate from the same CA",
        )
        return
    known = _store_ca_named(certs.fingerprint(issuer))
    report.add(
        "ca-signed-server",
        PASS,
        "tlscacert holds the CA that signed tlscert"
        + (f" (certkit CA {known!r})" if known else ""),
    )


def _store_ca_named(fingerprint: str) -> str | None:
    """The name of the store CA with this fingerprint, if this machine holds it."""
    from .store import CAStore, list_ca_names

    for name in list_ca_names():
        try:
            if any(r.fingerprint == fingerprint for r in CAStore(name).inventory().find(kind="ca")):
                return name
        except CertkitError:  # an unreadable inventory: the "inventory" check says so
            continue
    return None


def _check_inventories(report: DoctorReport) -> None:
    """SQLite's own check of every CA's inventory database."""
    from .inventorydb import integrity_problems
    from .store import CAStore, list_ca_names

    for name in list_ca_names():
        store = CAStore(name)
        _check_ca_cert(report, store)
        problems = integrity_problems(store.dir)
        if problems:
            report.add(
                "inventory",
                FAIL,
                f"the inventory of CA {name!r} is damaged ({problems[0].rstrip('.')}); "
                "restore it from a backup (certkit ca backup makes them)",
            )
        else:
            report.add("inventory", PASS, f"the inventory of CA {name!r} passes integrity_check")


def _check_ca_cert(report: DoctorReport, store: CAStore) -> None:
    """The store's CA certificate parses and is a CA (a corrupt ca.pem breaks every issuance)."""
    from cryptography import x509

    from .expiry import ca_fix, dates

    try:
        cert = store.load_cert()
    except CertkitError as e:
        report.add("ca-cert", FAIL, f"{e.message.rstrip('.')}; restore it from a backup")
        return
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        report.add("ca-cert", FAIL, f"{store.cert_path} is not a CA certificate")
        return
    d = dates("ca", f"the store's CA {store.name!r}", cert, ca_fix(cert))
    if d.status != PASS:  # a healthy CA adds no line
        _expiry(report, "ca-cert", d)


def _check_orphans(report: DoctorReport) -> None:
    """Store directories (``issued/<serial>``) no inventory record names: what an
    interrupted issuance leaves (files are written before the record commits)."""
    from .store import CAStore, list_ca_names

    for name in list_ca_names():
        store = CAStore(name)
        issued = store.dir / "issued"
        try:
            serials = store.inventory().serials()
            dirs = sorted(p for p in issued.iterdir() if p.is_dir() and p.name[:1] != ".")
        except FileNotFoundError:
            continue
        except CertkitError:  # an unreadable inventory: the "inventory" check says so
            continue
        orphans = [str(p) for p in dirs if p.name not in serials]
        report.orphans += orphans
        if not orphans:  # the usual case: no line (the inventory check stands for the store)
            continue
        shown = " ".join(Path(p).name for p in orphans[:3])
        more = f" (and {len(orphans) - 3} more: doctor --json lists them)" if orphans[3:] else ""
        report.add(
            "store-orphans",
            WARN,
            f"CA {name!r}: {len(orphans)} director{'y' if len(orphans) == 1 else 'ies'} in "
            f"{issued} with no inventory record (left by an interrupted issuance; no "
            "certificate certkit tracks is among them); unless a certkit run is under way, "
            f"remove them by hand: cd {issued} && rm -r {shown}{more}",
        )


# ---------------------------------------------------------------- systemd vs daemon.json


def _check_hosts(report: DoctorReport, sp: paths.SystemPaths, tls_on: bool) -> None:
    from .host import local, plan

    try:
        files = local.read_host_files(sp, install=False)
    except CertkitError as e:
        report.add("hosts-conflict", FAIL, e.message)
        return
    dockerd_here = bool(files.daemon_json or files.units or files.dropins or files.default_docker)
    _check_exposure(report, sp, files if dockerd_here else None)
    if not dockerd_here:
        # A laptop: nothing configures a dockerd here, so there is nothing to pass.
        for name in ("hosts-conflict", "insecure-listener"):
            report.add(name, SKIP, "no docker.service, drop-in or daemon.json: no dockerd here")
        return
    conflict = plan.hosts_conflict(files)
    if conflict:
        report.add("hosts-conflict", FAIL, conflict)
    else:
        report.add(
            "hosts-conflict", PASS, "no option is set both as a dockerd flag and in daemon.json"
        )
    _check_restart_impact(report, files, tls_on)
    insecure = plan.insecure_listeners(files)
    if not insecure:
        report.add("insecure-listener", PASS, "no TCP listener without TLS is configured")
    elif tls_on:
        report.add(
            "insecure-listener",
            WARN,
            f"{', '.join(insecure)} configured: with TLS on it serves TLS too, so plain-HTTP "
            "users of it break; remove it so that 2376 is the one TLS port",
        )
    else:
        report.add(
            "insecure-listener",
            FAIL,
            f"{', '.join(insecure)} serves the Docker API without TLS: anyone who reaches it "
            "is root on this host; remove it and use certkit issue-server HOST --install",
        )


def _check_restart_impact(report: DoctorReport, files: HostFiles, tls_on: bool) -> None:
    """What a renewal's restart does here (dockerd never reloads its certificate): refused
    connections unless docker.socket holds the TLS port, stopped containers unless
    live-restore is on; the method and the flag that avoid each."""
    from .host import plan, systemd

    base = systemd.expanded(systemd.base_execstart(files) or [], files)
    socket_ready = systemd.socket_activated(base) and bool(files.socket_units)
    ours = any(systemd.is_ours(p) for p, _ in files.socket_dropins)
    advice = []
    if tls_on and socket_ready and not ours:
        advice.append(
            "the TLS port refuses connections while dockerd restarts: this unit is "
            "socket-activated (-H fd://), so issue-server HOST --install --method socket lets "
            "systemd hold the port"
        )
    if tls_on and not plan.live_restore_on(files):
        advice.append(
            "live-restore is off, so a renewal's restart stops running containers: "
            "renew server HOST --restart --keep-containers turns it on"
        )
    if advice:
        report.add("restart-impact", WARN, "; ".join(advice))
    elif tls_on:
        report.add("restart-impact", PASS, "a renewal's restart keeps connections and containers")


def _check_exposure(report: DoctorReport, sp: paths.SystemPaths, files: HostFiles | None) -> None:
    """Who can reach the Docker ports: the live listeners and the firewall (not under --root:
    those are this machine's, not the sandbox's).  Without a configured dockerd, only 2375."""
    from .host import exposure

    if sp.sandboxed:
        for name in ("plain-port", "tls-port-exposure"):
            report.add(name, SKIP, "--root: the live listeners and firewall are not the sandbox's")
        return
    ports = exposure.configured_tls_ports(files) if files is not None else []
    try:
        report.exposure = exposure.findings(ports)
    except CertkitError as e:  # the read-only firewall probe could not run
        report.add("tls-port-exposure", FAIL, f"the firewall could not be read: {e.message}")
        return
    report.checks += [f.check() for f in report.exposure]


# ---------------------------------------------------------------- docker client side


def _check_context(report: DoctorReport, info: dockercli.ContextInfo) -> None:
    from . import certs

    name, host, tls_dir = info.name, info.host, info.tls_dir
    check = f"context {name}"
    if info.skip_tls_verify:
        report.add(
            check,
            FAIL,
            f"{host or 'no host'} with SkipTLSVerify: true: the docker CLI trusts any server "
            f"there; recreate it: certkit client-context {name} --host HOST --force",
        )
        return
    if not host.startswith(("tcp://", "https://")):
        report.add(check, SKIP, f"{host or 'no host'}: not a TCP endpoint, no TLS needed")
        return
    try:
        dockercli.check_endpoint(host.replace("https://", "tcp://", 1), name)
    except UsageError as e:
        fix = f"recreate it: certkit client-context {name} --host HOST --force"
        report.add(check, FAIL, f"{e.message.rstrip('.')}; {fix}")
        return
    missing = [f for f in dockercli.TLS_FILES if not (tls_dir / f).is_file()]
    if missing:
        report.add(
            check,
            FAIL,
            f"{host} but {', '.join(missing)} missing in {tls_dir}: the docker CLI would not "
            f"use mutual TLS; recreate it: certkit client-context {name} --host HOST --force",
        )
        return
    loose = [
        f"{f} {_mode(tls_dir / f):04o}" for f in dockercli.TLS_FILES if _mode(tls_dir / f) & 0o077
    ]
    if loose:
        status = FAIL if any(x.startswith("key.pem") for x in loose) else WARN
        report.add(
            check,
            status,
            f"TLS files readable by others ({', '.join(loose)}); run: chmod 600 {tls_dir}/*.pem",
        )
        return
    try:
        cert = certs.load_cert((tls_dir / "cert.pem").read_bytes())
    except UsageError:
        report.add(check, FAIL, f"{tls_dir / 'cert.pem'} is not a readable PEM certificate")
        return
    from .expiry import client_fix, dates

    label = f"{host}: files present, 0600; the client certificate"
    _expiry(report, check, dates("client", label, cert, client_fix(cert, name)))
    _ca_expiry(report, tls_dir / "ca.pem", cert, check)


def _check_contexts(report: DoctorReport, config_dir: Path) -> list[str]:
    contexts = dockercli.list_contexts(config_dir)
    if not contexts:
        report.add("contexts", SKIP, f"no docker context in {config_dir}")
    for info in contexts:
        _check_context(report, info)
    return [info.name for info in contexts]


def _check_env(report: DoctorReport, config_dir: Path, contexts: list[str]) -> None:
    docker_host = os.environ.get("DOCKER_HOST", "")
    current = dockercli.selected_context(config_dir)
    if docker_host and (contexts or current):
        which = f"context {current!r}" if current else "your docker contexts"
        report.add(
            "DOCKER_HOST",
            WARN,
            f"DOCKER_HOST={docker_host} overrides {which} (it wins over DOCKER_CONTEXT and "
            "currentContext); run: unset DOCKER_HOST",
        )
    elif docker_host:
        report.add("DOCKER_HOST", PASS, f"DOCKER_HOST={docker_host} (no context to override)")
    else:
        report.add("DOCKER_HOST", PASS, "DOCKER_HOST is not set: docker contexts apply")
    advice = dockercli.docker_py_advice(current)
    if advice:
        report.add("ca-bundle-env", WARN, " ".join(advice))
    else:
        report.add("ca-bundle-env", PASS, f"{' and '.join(dockercli.CA_BUNDLE_VARS)} are not set")


# ---------------------------------------------------------------- entry point


def doctor(root: str | None = None, docker_config: str | None = None) -> DoctorReport:
    """Run every local check; ``root`` re-roots system paths, ``docker_config`` the client's.

    >>> report = doctor(root="/tmp/sandbox")  # doctest: +SKIP
    >>> [c.name for c in report.checks if c.status == "FAIL"]  # doctest: +SKIP
    """
    if root is not None and not Path(root).is_dir():
        raise UsageError(
            f"--root {root} is not a directory; give the directory holding etc/docker."
        )
    # A user with a rootless dockerd here: its daemon.json and user unit (docs/rootless.md).
    sp = (None if root else paths.own_rootless_paths()) or paths.system_paths(root)
    config_dir = paths.docker_config_dir(docker_config)
    report = DoctorReport(str(sp.root), str(config_dir))
    config = _read_daemon_json(report, sp)
    tls_on = False
    if config is not None:
        tls_on = _check_tls_settings(report, config)
        if tls_on:
            _check_tls_files(report, config, sp)
    _check_hosts(report, sp, tls_on)
    contexts = _check_contexts(report, config_dir)
    _check_env(report, config_dir, contexts)
    _check_ca_keys(report)
    _check_inventories(report)
    _check_orphans(report)
    from .openbao.readout import doctor_checks

    doctor_checks(report)  # an OpenBao-backed CA, login contexts: nothing otherwise
    return report


def _check_ca_keys(report: DoctorReport) -> None:
    """Each store CA's key, as its backend checks it (a token: there, with the key?)."""
    from . import keys
    from .store import CAStore, list_ca_names

    for name in list_ca_names():
        store = CAStore(name)
        try:
            held = keys.held_in(store.dir)
            ok, message = keys.backend_of(held).check(held, store.load_cert())
        except UsageError as e:
            ok, message = False, e.message
        report.add("ca-key", PASS if ok else FAIL, f"CA {name!r}: {message}")
