"""Installing on a remote Docker host over SSH: :class:`SSHTarget`.

The CA stays on the administrator's machine; only the server's files travel.
An install is two round trips: one script reads the host's files, the other
writes the plan (see :mod:`certkit.host.scripts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from .. import files
from ..errors import UsageError
from ..paths import SystemPaths
from ..targets import SSHRef
from .firewall import PROBE, parse_probe, with_rules
from .hostfiles import HostFiles
from .plan import InstallPlan, write_steps
from .scripts import RemoteFile, Write, WriteJob, parse_dump, read_script, run_write_job
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
    ]
    return singles, [PurePosixPath(paths.dropin_dir) / "*.conf"]


def remote_write_targets(paths: SystemPaths) -> tuple[list[PurePosixPath], PurePosixPath]:
    """What an install writes (never through a link) and the private certificate directory:
    the read script refuses them, before anything is issued, when unsafe."""
    return [paths.daemon_json, paths.dropin, *paths.cert_files.values()], PurePosixPath(
        paths.cert_dir
    )


def read_remote_host_files(ssh: SSH, paths: SystemPaths) -> HostFiles:
    """Read the host's daemon.json, units, drop-ins and cert files in one SSH session.

    Gives exactly what :func:`certkit.daemon.read_host_files` gives on the
    host itself, so planning is the same for a local and a remote install.
    """
    singles, globs = remote_read_paths(paths)
    written, cert_dir = remote_write_targets(paths)
    lines = ssh.run_script(read_script(singles, globs, written, cert_dir) + probe_for(paths))
    found = host_files_from_dump(parse_dump(lines), paths, ssh.target.host)
    return with_firewall(found, lines, paths)


def probe_for(paths: SystemPaths) -> str:
    """The firewall probe to append to the read script (none under a --root sandbox)."""
    return PROBE if str(paths.root) == "/" else ""


def with_firewall(hf: HostFiles, lines: list[str], paths: SystemPaths) -> HostFiles:
    """``hf`` with the firewall state the probe printed in ``lines`` (see :func:`probe_for`)."""
    if str(paths.root) == "/":
        hf.firewall = parse_probe(lines)
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
    hf.default_docker = text(paths.default_docker)
    for p in paths.cert_files.values():
        if p in found:
            hf.cert_files[str(p)] = found[p].data
    return hf


def _missing_dirs(plan: InstallPlan) -> list[tuple[PurePosixPath, int]]:
    """Every directory the plan's files need, parents first: the file's own dir gets its
    ``dir_mode``, the ancestors 0755 (only those that turn out to be missing are made)."""
    wanted: dict[PurePosixPath, int] = {}
    for change in plan.changes:
        parent = PurePosixPath(change.path).parent
        for ancestor in reversed(parent.parents[:-1]):  # not "/" itself
            wanted.setdefault(ancestor, files.PUBLIC_DIR)
        wanted[parent] = (
            change.dir_mode if parent not in wanted else min(wanted[parent], change.dir_mode)
        )
    return sorted(wanted.items(), key=lambda item: len(item[0].parts))


def write_job_for(plan: InstallPlan, *, restart: bool = False) -> WriteJob:
    """The remote write job that carries out ``plan`` (see :func:`write_script`)."""
    steps = write_steps(plan)
    return WriteJob(
        writes=[Write(PurePosixPath(c.path), c.content, c.mode) for c in steps.writes],
        dirs=_missing_dirs(plan),
        backups=[(PurePosixPath(plan.backup[0]), PurePosixPath(plan.backup[1]))]
        if plan.backup
        else [],
        expected={PurePosixPath(p): v for p, v in steps.previous.items()},
        restart=restart,
        cleanup=[PurePosixPath(p) for p in steps.cleanup],
    )


@dataclass
class SSHTarget:
    """A Docker host over SSH: read in one session, written (and restarted) in another."""

    ssh: SSH
    system: SystemPaths

    @property
    def ref(self) -> SSHRef:
        root = str(self.system.root)
        sandbox = None if root == "/" else root
        ssh = self.ssh
        return SSHRef(str(ssh.target), ssh.sudo, sandbox, ssh.identity, ssh.options)

    def check(self, *, restart: bool) -> None:
        if restart and str(self.system.root) != "/":
            raise UsageError("--restart restarts the real dockerd, so it cannot go with --root.")

    def read_files(self) -> HostFiles:
        return read_remote_host_files(self.ssh, self.system)

    def apply(self, plan: InstallPlan, *, restart: bool) -> bool:
        """Write ``plan`` on the host in one SSH session; with ``restart`` restart Docker
        there, rolling back if it does not come back.

        The host is left as it was when anything fails (the error says so, or
        says which files could not be restored), and also when a file changed on
        the host since it was read.
        """

        def write() -> bool:
            if plan.changes or restart:
                run_write_job(self.ssh, write_job_for(plan, restart=restart))
            return restart

        return with_rules(plan.firewall, self.ssh.run_script, write)

    def where(self, path: str) -> str:
        """Recorded as scp writes it, so nobody mistakes it for a local path."""
        return f"{self.ssh.target}:{path}"

    def run_script(self, script: str) -> list[str]:
        return self.ssh.run_script(script)
