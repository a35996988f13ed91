"""Installing on this machine: the engine's scripts run with the local ``sh``.

:class:`LocalTarget` is the :class:`~certkit.host.target.Target` for the
machine certkit runs on (or a sandbox root under it, ``--root``).  It reads,
writes and restarts exactly as a host over SSH or through Ansible does
(:class:`~certkit.host.remote.ScriptTarget`): only the transport differs,
``sh -s`` here instead of over a connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import CertkitError, UsageError
from ..paths import SystemPaths
from ..targets import LocalRef
from . import engine
from .hostfiles import HostFiles
from .plan import InstallPlan
from .remote import ScriptTarget, host_files_from_lines, read_host_script
from .scripts import SUDO_HINT

HERE = "this machine"  # how messages from the local scripts name the host


def run_sh(script: str) -> list[str]:
    """Run ``script`` with sh on this machine through the engine; its output lines.  A
    script's hint to connect as root or pass --sudo (options of SSH) says to run as root."""
    try:
        return engine.run(engine.local_sh, script, HERE)
    except CertkitError as e:
        if SUDO_HINT not in e.message:
            raise
        raise type(e)(e.message.replace(SUDO_HINT, "run certkit as root (sudo)")) from None


def read_host_files(paths: SystemPaths, *, install: bool = True) -> HostFiles:
    """Read daemon.json, the docker units, drop-ins, /etc/default/docker and the cert files
    (with the checks every target makes before anything is issued); without ``install``
    (doctor) only the configuration, as any user can read it."""
    script = read_host_script(paths, install=install)
    return host_files_from_lines(run_sh(script), paths, HERE)


def apply_plan_locally(plan: InstallPlan, paths: SystemPaths | None = None) -> None:
    """Write the plan here with the engine's write script (no restart); when ``paths`` are
    given, the host is read first so followed links are written where they lead."""
    target = LocalTarget(paths or SystemPaths(PurePosixPath("/")))
    if paths is not None:
        target.read_files()
    target.apply(plan, restart=False)


def _writable_dir(path: Path, what: str) -> None:
    """Refuse (UsageError) when ``path``, or the directory it would be created in, cannot
    be written: a read-only filesystem, no permission, a file or dangling link standing there."""
    cur = path
    while not os.path.lexists(cur) and cur != cur.parent:
        cur = cur.parent
    if os.path.islink(cur) and not cur.exists():
        raise UsageError(
            f"{cur} is a symbolic link to a missing directory ({os.readlink(cur)}): "
            f"fix or remove the link, then run again ({what})."
        )
    if not cur.is_dir():
        raise UsageError(f"{cur} is not a directory, so {what} cannot go there; move it aside.")
    if not os.access(cur, os.W_OK | os.X_OK):
        raise UsageError(
            f"{cur} is not writable ({'read-only' if _read_only(cur) else 'permission denied'})"
            f", so {what} cannot be written; run as root or choose another --root."
        )


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def check_install_paths(paths: SystemPaths) -> None:
    """What only this machine can say before anything is issued: each directory an install
    writes into can be written (not read-only, not a file or a dangling link).  Links,
    ownership and the certificate directory are the read script's checks, as on any host."""
    _writable_dir(Path(paths.daemon_json).parent, "daemon.json")
    _writable_dir(Path(paths.dropin_dir), "the docker.service drop-in")
    _writable_dir(Path(paths.cert_dir), "the certificate files")


@dataclass
class LocalTarget(ScriptTarget):
    """This machine (or ``system.root`` standing in for ``/``), through the local ``sh``."""

    system: SystemPaths
    _files: HostFiles | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return HERE

    @property
    def ref(self) -> LocalRef:
        return LocalRef(str(self.system.root) if self.system.sandboxed else None)

    def check(self, *, restart: bool, dry_run: bool = False) -> None:
        """Refuse, before anything is issued, what this machine cannot do; a dry run writes
        nothing, so any user may make one (it says what it could not read)."""
        if restart and self.system.sandboxed:
            raise UsageError("--restart restarts the real dockerd, so it cannot go with --root.")
        if dry_run:
            return
        if not self.system.sandboxed and hasattr(os, "geteuid") and os.geteuid() != 0:
            raise UsageError(
                "--install writes /etc/docker and the docker unit: run as root (sudo), "
                "or use --root DIR to install under a sandbox directory."
            )
        check_install_paths(self.system)

    def run_script(self, script: str) -> list[str]:
        return run_sh(script)

    def probe_host(self) -> str | None:
        return None

    def where(self, path: str) -> str:
        return path
