"""Every target's install through the engine (:class:`ScriptTarget`), and SSH's: :class:`SSHTarget`.

The CA stays on the administrator's machine; only the server's files travel.
An install is two round trips on every target: one script reads the host's
files, the other writes the plan (see :mod:`certkit.host.scripts`); with a
restart, a third keeps the change once dockerd serves the new certificate
over TLS, or puts the previous files back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from .. import certs, files
from ..errors import OperationError, UsageError
from ..paths import SystemPaths
from ..targets import SSHRef
from . import engine
from .firewall import PROBE, parse_probe, with_rules
from .hostfiles import HostFiles
from .plan import InstallPlan, write_steps
from .scripts import (
    DOCKER_INFO_PROBE,
    LINK_PREFIX,
    MADE_PREFIX,
    UNREADABLE_PREFIX,
    WRITE_OK,
    RemoteFile,
    Write,
    WriteJob,
    WriteTargets,
    commit_script,
    parse_docker_info,
    parse_dump,
    read_script,
    rollback_script,
    write_script,
)
from .ssh import SSH


def remote_paths(root: str | None = None, cert_dir: str | None = None) -> SystemPaths:
    """The host's system paths, as the host sees them; ``root`` re-roots them (tests).

    Unlike :func:`certkit.paths.system_paths`, ``root`` is a path on the host,
    so it must be absolute: it cannot be resolved against the local directory.
    """
    for flag, value in (("--root", root), ("--cert-dir", cert_dir)):
        if value is not None and not PurePosixPath(value).is_absolute():
            raise UsageError(
                f"{flag} must be an absolute path on the host with --ssh, got {value!r}."
            )
    return SystemPaths(
        PurePosixPath(root) if root else PurePosixPath("/"),
        PurePosixPath(cert_dir) if cert_dir else None,
    )


def remote_read_paths(
    paths: SystemPaths,
) -> tuple[list[PurePosixPath], list[PurePosixPath]]:
    """What the read script dumps: the single files, and the drop-in glob."""
    singles = [
        paths.daemon_json,
        *paths.unit_files,
        paths.default_docker,
        *paths.cert_files.values(),
        *paths.socket_unit_files,
    ]
    return singles, [
        PurePosixPath(paths.dropin_dir) / "*.conf",
        PurePosixPath(paths.socket_dropin_dir) / "*.conf",
    ]


def remote_write_targets(paths: SystemPaths) -> WriteTargets:
    """What an install writes, as the read script checks it before anything is issued:
    daemon.json and the drop-in (links followed only in safe directories), the certificate
    files (never links) in the certificate directory (certkit's own, under safe parents)."""
    cert_files = list(paths.cert_files.values())
    names = [PurePosixPath(p).name for p in cert_files]
    if PurePosixPath(paths.authz_policy).parent == PurePosixPath(paths.cert_dir):
        names.append(PurePosixPath(paths.authz_policy).name)  # the authz plugin's policy
    return WriteTargets(
        followed=[
            PurePosixPath(paths.daemon_json),
            PurePosixPath(paths.dropin),
            PurePosixPath(paths.socket_dropin),
        ],
        never_links=[PurePosixPath(p) for p in cert_files],
        private_dir=PurePosixPath(paths.cert_dir),
        private_names=names,
    )


def read_host_script(paths: SystemPaths, *, install: bool = True, partial: bool = False) -> str:
    """The read script for a host with these paths (and the firewall probe on a real root);
    without ``install``, only its configuration (no write checks, certificates or probe);
    with ``partial`` (a dry run), files this user cannot read are named, not fatal."""
    singles, globs = remote_read_paths(paths)
    if not install:
        cert_files = set(map(PurePosixPath, paths.cert_files.values()))
        return read_script([p for p in singles if p not in cert_files], globs)
    checks = remote_write_targets(paths)
    return read_script(singles, globs, checks, partial=partial) + probe_for(paths)


def read_remote_host_files(ssh: SSH, paths: SystemPaths) -> HostFiles:
    """Read the host's daemon.json, units, drop-ins and cert files in one SSH session."""
    return host_files_from_lines(ssh.run_script(read_host_script(paths)), paths, ssh.target.host)


def host_files_from_lines(lines: list[str], paths: SystemPaths, host: str) -> HostFiles:
    """The :class:`HostFiles` the read script printed: files, followed links, firewall."""
    found = host_files_from_dump(parse_dump(lines), paths, host)
    followed = remote_write_targets(paths).followed
    for line in lines:
        if line.startswith(UNREADABLE_PREFIX):
            found.unreadable.append(line[len(UNREADABLE_PREFIX) :])
        if line.startswith(LINK_PREFIX):
            index, _, resolved = line[len(LINK_PREFIX) :].partition(" ")
            if index.isdigit() and int(index) < len(followed) and resolved.startswith("/"):
                found.links[str(followed[int(index)])] = resolved
    return with_firewall(found, lines, paths)


def probe_for(paths: SystemPaths) -> str:
    """The firewall probe to append to the read script (none under a --root sandbox)."""
    return PROBE + DOCKER_INFO_PROBE if str(paths.root) == "/" else ""


def with_firewall(hf: HostFiles, lines: list[str], paths: SystemPaths) -> HostFiles:
    """``hf`` with the firewall state the probe printed in ``lines`` (see :func:`probe_for`)."""
    if str(paths.root) == "/":
        hf.firewall = parse_probe(lines)
        info = parse_docker_info(lines)
        if info is not None:
            hf.swarm, hf.running, hf.live_restore = info
    return hf


def host_files_from_dump(
    found: dict[PurePosixPath, RemoteFile], paths: SystemPaths, host: str
) -> HostFiles:
    """The :class:`HostFiles` in what the read script printed (see :func:`parse_dump`)."""

    def text(path: PurePosixPath) -> str | None:
        f = found.get(PurePosixPath(path))
        return None if f is None else f.data.decode("utf-8", errors="replace")

    hf = HostFiles()
    dj = found.get(PurePosixPath(paths.daemon_json))
    if dj is not None:
        try:
            hf.daemon_json = dj.data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(
                f"{dj.path} on {host} is not UTF-8 text: fix or remove it, then run again."
            ) from None
        hf.daemon_json_mode = dj.mode
    for unit in paths.unit_files:
        unit_text = text(unit)
        if unit_text is not None:
            hf.units.append((str(unit), unit_text))
    dropins = sorted(
        (p for p in found if p.parent == PurePosixPath(paths.dropin_dir) and p.suffix == ".conf"),
        key=lambda p: p.name,
    )
    hf.dropins = [(str(p), text(p) or "") for p in dropins]
    for unit in paths.socket_unit_files:
        unit_text = text(unit)
        if unit_text is not None:
            hf.socket_units.append((str(unit), unit_text))
    socket_dir = PurePosixPath(paths.socket_dropin_dir)
    hf.socket_dropins = [
        (str(p), text(p) or "")
        for p in sorted(found, key=lambda p: p.name)
        if p.parent == socket_dir and p.suffix == ".conf"
    ]
    hf.default_docker = text(paths.default_docker)
    for p in paths.cert_files.values():
        if p in found:
            hf.cert_files[str(p)] = found[p].data
    return hf


def _missing_dirs(plan: InstallPlan, links: dict[str, str]) -> list[tuple[PurePosixPath, int]]:
    """Every directory the plan's files need, parents first: the file's own dir gets its
    ``dir_mode``, the ancestors 0755 (only those that turn out to be missing are made)."""
    wanted: dict[PurePosixPath, int] = {}
    for change in plan.changes:
        parent = PurePosixPath(links.get(change.path, change.path)).parent
        for ancestor in reversed(parent.parents[:-1]):  # not "/" itself
            wanted.setdefault(ancestor, files.PUBLIC_DIR)
        wanted[parent] = (
            change.dir_mode if parent not in wanted else min(wanted[parent], change.dir_mode)
        )
    return sorted(wanted.items(), key=lambda item: len(item[0].parts))


def write_job_for(
    plan: InstallPlan, *, restart: bool = False, links: dict[str, str] | None = None
) -> WriteJob:
    """The write job that carries out ``plan`` (see :func:`write_script`); a path in
    ``links`` (a followed link: see :class:`WriteTargets`) is written where it leads."""
    steps = write_steps(plan)

    def at(path: str) -> PurePosixPath:
        return PurePosixPath((links or {}).get(path, path))

    return WriteJob(
        writes=[Write(at(c.path), c.content, c.mode) for c in steps.writes],
        dirs=_missing_dirs(plan, links or {}),
        backups=[(at(plan.backup[0]), PurePosixPath(plan.backup[1]))] if plan.backup else [],
        expected={at(p): v for p, v in steps.previous.items()},
        restart=restart,
        cleanup=[at(p) for p in steps.cleanup],
        socket=plan.restarts_socket,
        live_restore=plan.reload_first,
    )


class ScriptTarget:
    """A Docker host reached by running the engine's scripts there: the reading, writing
    and restarting every target shares (:class:`SSHTarget`, Ansible's target, this
    machine's :class:`~certkit.host.local.LocalTarget`); only ``run_script`` differs."""

    system: SystemPaths
    _files: HostFiles | None = None  # what was read last: followed links are written there

    @property
    def label(self) -> str:
        """The host, as messages from its scripts name it."""
        raise NotImplementedError

    def run_script(self, script: str) -> list[str]:
        raise NotImplementedError

    def read_files(self) -> HostFiles:
        """daemon.json, units, drop-ins and certificate files, in one round trip."""
        return self._read(partial=False)

    def read_for_dry_run(self) -> HostFiles:
        """:meth:`read_files` for a dry run: what this user cannot read is listed in
        ``unreadable`` (the dry run says so), not fatal."""
        return self._read(partial=True)

    def _read(self, *, partial: bool) -> HostFiles:
        script = read_host_script(self.system, partial=partial)
        self._files = host_files_from_lines(self.run_script(script), self.system, self.label)
        return self._files

    def probe_host(self) -> str | None:
        """Where this host is reached for the TLS check (None: this machine)."""
        raise NotImplementedError

    def apply(self, plan: InstallPlan, *, restart: bool) -> bool:
        """Write ``plan`` on the host in one round trip; with ``restart`` restart Docker
        there, and keep the change only once dockerd serves the new certificate over TLS
        (:func:`~certkit.host.engine.served_serial`), else roll back.

        The host is left as it was when anything fails (the error says so, or
        says which files could not be restored), and also when a file changed on
        the host since it was read.
        """
        read = self._files or HostFiles()

        def write() -> bool:
            if plan.changes or restart:
                job = write_job_for(plan, restart=restart, links=read.links)
                job.keep = restart
                lines = self.run_script(write_script(job, self.label))
                if WRITE_OK not in lines:
                    raise engine.HostStateUnknown(
                        f"The install on {self.label} stopped before it finished; "
                        "check the files there."
                    )
                if restart:
                    self._until_serving(plan, read, job, lines)
            return restart

        self._files = None  # what was read is stale now
        return with_rules(plan.firewall, self.run_script, write)

    def _until_serving(
        self, plan: InstallPlan, read: HostFiles, job: WriteJob, lines: list[str]
    ) -> None:
        """dockerd is back when docker.service is active on the host (the write script's
        check) and, where certkit reaches its TLS port, it serves the plan's certificate
        over TLS: then drop the kept copies; else put them back and restart
        (OperationError saying so).  A port no TCP connection reaches from here (a
        firewall between) leaves the host's own check as the word."""
        new = {c.path: c.content for c in plan.changes}
        ca, cert = (
            new.get(plan.cert_paths[k], read.cert_files.get(plan.cert_paths[k]))
            for k in ("ca", "cert")
        )
        address = engine.probe_address(plan.listen, self.probe_host())
        reaches = address is not None and engine.tcp_reaches_after_restart(address, plan.port)
        if address is not None and ca and cert and reaches:
            want = certs.serial_hex(certs.load_cert(cert))
            serial, why = engine.served_serial(address, plan.port, ca, None, engine.BACK_SECONDS)
            if serial != want:
                seen = f"it serves certificate {serial}" if serial else f"no TLS session: {why}"
                made = [int(ln[len(MADE_PREFIX) :]) for ln in lines if ln.startswith(MADE_PREFIX)]
                why = f"{address}:{plan.port} does not serve the new certificate {want}; {seen}"
                self.run_script(rollback_script(job, self.label, made, why))
        try:
            self.run_script(commit_script(job))
        except OperationError as e:  # dockerd serves the new certificate: the host decides
            raise engine.HostStateUnknown(str(e)) from e

    def restart_docker(self) -> None:
        """Restart dockerd with the same rule as an install's restart (nothing to roll back)."""
        if WRITE_OK not in self.run_script(write_script(WriteJob([], restart=True), self.label)):
            raise OperationError(f"The restart on {self.label} stopped before it finished.")
        self._files = None


@dataclass
class SSHTarget(ScriptTarget):
    """A Docker host over SSH: read in one session, written (and restarted) in another."""

    ssh: SSH
    system: SystemPaths

    @property
    def label(self) -> str:
        return self.ssh.target.host

    def probe_host(self) -> str | None:
        return self.ssh.hostname()

    @property
    def ref(self) -> SSHRef:
        root = str(self.system.root)
        sandbox = None if root == "/" else root
        ssh = self.ssh
        return SSHRef(str(ssh.target), ssh.sudo, sandbox, ssh.identity, ssh.options)

    def check(self, *, restart: bool) -> None:
        if restart and str(self.system.root) != "/":
            raise UsageError("--restart restarts the real dockerd, so it cannot go with --root.")

    def where(self, path: str) -> str:
        """Recorded as scp writes it, so nobody mistakes it for a local path."""
        return f"{self.ssh.target}:{path}"

    def run_script(self, script: str) -> list[str]:
        return self.ssh.run_script(script)
