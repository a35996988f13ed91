"""Installing on this machine: read the host's files, write a plan, restart dockerd.

:class:`LocalTarget` is the :class:`~certkit.host.target.Target` for the
machine certkit runs on (or a sandbox root under it, ``--root``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import files
from ..errors import OperationError, UsageError
from ..paths import SERVER_FILES, SystemPaths
from ..targets import LocalRef
from .firewall import PROBE, parse_probe, with_rules
from .hostfiles import HostFiles
from .plan import InstallPlan, write_steps


def read_host_files(paths: SystemPaths) -> HostFiles:
    """Read daemon.json, the docker units, drop-ins, /etc/default/docker and the cert files."""
    hf = HostFiles()
    dj = Path(paths.daemon_json)
    try:
        hf.daemon_json = dj.read_text(encoding="utf-8")
        hf.daemon_json_mode = dj.stat().st_mode & 0o7777
    except FileNotFoundError:
        pass
    except UnicodeDecodeError:
        raise UsageError(f"{dj} is not UTF-8 text: fix or remove it, then run again.") from None
    except OSError as e:
        raise OperationError(f"cannot read {dj}: {e.strerror}; run as root.") from None
    for unit in paths.unit_files:
        text = files.read_text(unit)
        if text is not None:
            hf.units.append((str(unit), text))
    dropin_dir = Path(paths.dropin_dir)
    if dropin_dir.is_dir():
        for conf in sorted(dropin_dir.glob("*.conf"), key=lambda p: p.name):
            hf.dropins.append((str(conf), conf.read_text(encoding="utf-8", errors="replace")))
    hf.default_docker = files.read_text(paths.default_docker)
    for cert_file in paths.cert_files.values():
        p = Path(cert_file)
        with contextlib.suppress(OSError):
            hf.cert_files[str(p)] = p.read_bytes()
    return hf


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
    """Everything an install writes, checked before a certificate is issued.

    daemon.json may be a link to a file a configuration manager owns (it is
    written through), but never a dangling one; the certificate directory is
    an output directory (no link, yours or root's, writable by nobody else)
    and its files are never links.
    """
    dj = Path(paths.daemon_json)
    if dj.is_symlink() and not dj.exists():
        raise UsageError(
            f"{dj} is a symbolic link to a missing file ({os.readlink(dj)}): fix or remove "
            "the link, then run again; nothing was issued."
        )
    if dj.exists() and not dj.is_file():
        raise UsageError(f"{dj} is not a regular file: move it aside, then run again.")
    _writable_dir(dj.parent, "daemon.json")
    _writable_dir(Path(paths.dropin_dir), "the docker.service drop-in")
    _writable_dir(Path(paths.cert_dir), "the certificate files")
    files.check_output_dir(paths.cert_dir, SERVER_FILES, force=True, flag="--cert-dir")


def _restore(previous: dict[str, bytes | None], modes: dict[str, int]) -> None:
    """Put every file back as it was (None: remove it)."""
    for path, content in previous.items():
        # Best effort, file by file: one that cannot be restored must not stop the others.
        with contextlib.suppress(OSError):
            if content is None:
                Path(path).unlink(missing_ok=True)
            else:
                files.atomic_write(path, content, modes.get(path, files.PUBLIC_FILE))


def apply_plan_locally(plan: InstallPlan) -> None:
    """Write the plan: directories, the daemon.json backup, then every file atomically.

    All new files are staged next to their targets before the first rename;
    if anything fails, the files already replaced are put back, so the host
    is left as it was.
    """
    if not plan.changes:
        return
    steps = write_steps(plan)
    for change in plan.changes:
        files.ensure_dir(PurePosixPath(change.path).parent, change.dir_mode)
    if plan.backup and plan.backup_content is not None:
        files.atomic_write(plan.backup[1], plan.backup_content, plan.backup_mode)
    modes = {c.path: c.mode for c in steps.writes}
    try:
        files.atomic_write_many((c.path, c.content, c.mode) for c in steps.writes)
        for path in steps.cleanup:
            Path(path).unlink(missing_ok=True)
    except BaseException:
        _restore(steps.previous, modes)
        for path in steps.cleanup:
            with contextlib.suppress(OSError):
                Path(path).unlink(missing_ok=True)
        raise


Runner = Callable[[list[str]], int]


PortWaiter = Callable[[str, int, float], bool]


def _run(cmd: list[str]) -> int:
    try:
        return subprocess.run(cmd, check=False).returncode
    except FileNotFoundError:  # no systemctl: not a systemd host
        return 127


def run_sh(script: str) -> list[str]:
    """Run ``script`` with sh on this machine; its output lines (OperationError if it fails)."""
    done = subprocess.run(["sh", "-s"], input=script.encode(), capture_output=True, check=False)
    lines = done.stdout.decode(errors="replace").splitlines()
    if done.returncode != 0:
        reported = [ln.split(" ", 1)[-1] for ln in lines if ln.startswith("CERTKIT-ERROR ")]
        raise OperationError(
            reported[-1] if reported else f"a firewall step failed here (exit {done.returncode})."
        )
    return lines


def _port_opens(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _probe_address(listen: str) -> str:
    """Where to check a listener locally: a wildcard address is reached on loopback."""
    addr = listen.strip("[]")
    if addr in ("0.0.0.0", ""):
        return "127.0.0.1"
    if addr == "::":
        return "::1"
    return addr


def restart_docker(
    plan: InstallPlan,
    *,
    run: Runner = _run,
    wait_port: PortWaiter = _port_opens,
    timeout: float = 60,
) -> None:
    """``systemctl daemon-reload`` + ``restart docker``, then wait for the TLS port.

    If Docker does not come back, the previous daemon.json, drop-in and
    certificate files are restored, Docker is restarted with them, and an
    OperationError says so.  ``run`` and ``wait_port`` are injectable: tests
    cannot run systemctl here, so they check this logic with fakes (the
    configuration itself is proven against a real dockerd).
    """

    def restart() -> bool:
        if run(["systemctl", "daemon-reload"]) != 0:
            return False
        # Debian's unit allows 3 starts per 60 s (the boot's included), and one failed start
        # uses up the rest through Restart=on-failure; daemon-reload resets that count only
        # on systemd < 255. reset-failed clears it on every version (its status is not ours).
        run(["systemctl", "reset-failed", "docker.service", "docker.socket"])
        return run(["systemctl", "restart", "docker"]) == 0

    if restart() and wait_port(_probe_address(plan.listen), plan.port, timeout):
        return
    steps = write_steps(plan)
    _restore(steps.previous, {c.path: c.mode for c in steps.writes})
    back = restart()
    raise OperationError(
        f"Docker did not come back on port {plan.port} after the restart; the previous "
        + (
            "configuration was restored and Docker restarted with it"
            if back
            else "configuration was restored but Docker failed to restart with it too"
        )
        + ": see journalctl -u docker for why."
    )


@dataclass
class LocalTarget:
    """This machine (or ``system.root`` standing in for ``/``): files written directly.

    ``run`` and ``wait_port`` replace ``systemctl`` and the port check in tests
    that cannot run a real systemd.
    """

    system: SystemPaths
    run: Runner | None = None
    wait_port: PortWaiter | None = None

    @property
    def ref(self) -> LocalRef:
        return LocalRef(str(self.system.root) if self.system.sandboxed else None)

    def check(self, *, restart: bool) -> None:
        """Refuse, before anything is issued, what this machine cannot do."""
        if restart and self.system.sandboxed:
            raise UsageError("--restart restarts the real dockerd, so it cannot go with --root.")
        if not self.system.sandboxed and hasattr(os, "geteuid") and os.geteuid() != 0:
            raise UsageError(
                "--install writes /etc/docker and the docker unit: run as root (sudo), "
                "or use --root DIR to install under a sandbox directory."
            )
        check_install_paths(self.system)

    def read_files(self) -> HostFiles:
        hf = read_host_files(self.system)
        if not self.system.sandboxed:
            hf.firewall = parse_probe(run_sh(PROBE))
        return hf

    def apply(self, plan: InstallPlan, *, restart: bool) -> bool:
        return with_rules(plan.firewall, run_sh, lambda: self._apply(plan, restart=restart))

    def run_script(self, script: str) -> list[str]:
        return run_sh(script)

    def _apply(self, plan: InstallPlan, *, restart: bool) -> bool:
        try:
            apply_plan_locally(plan)
        except PermissionError as e:
            raise OperationError(
                f"permission denied writing {e.filename}: run as root (sudo), or use --root DIR."
            ) from None
        except OSError as e:
            raise OperationError(
                f"cannot write {e.filename or 'the install'} ({e.strerror}); the files already "
                "replaced were put back."
            ) from None
        if not restart:
            return False
        kwargs: dict[str, Any] = {}
        if self.run is not None:
            kwargs["run"] = self.run
        if self.wait_port is not None:
            kwargs["wait_port"] = self.wait_port
        restart_docker(plan, **kwargs)
        return True

    def where(self, path: str) -> str:
        return path
