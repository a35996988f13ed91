"""A Docker host reached through Ansible's connection: :class:`AnsibleTarget`.

The Ansible action plugin (``certkit.docker.daemon_tls``) hands this target
one callable, ``run(script) -> (rc, stdout, stderr)``, that runs ``sh -s``
on the host through Ansible's own connection (its inventory, SSH settings
and ``become``), with the script on standard input.  Reading and writing
then use the same two scripts as :class:`~certkit.host.remote.SSHTarget`
(:mod:`certkit.host.scripts`): one round trip reads daemon.json, the units,
the drop-ins and the certificate files; one writes the plan with backups
and, when asked, restarts dockerd with certkit's rollback rule
(``daemon-reload`` + ``reset-failed`` before each restart, the previous
files restored when Docker does not come back).  Nothing of certkit runs on
the host: only ``sh`` and coreutils, as for ``--ssh``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import OperationError
from ..host.firewall import with_rules
from ..host.hostfiles import HostFiles
from ..host.plan import InstallPlan
from ..host.remote import (
    host_files_from_dump,
    probe_for,
    remote_read_paths,
    remote_write_targets,
    with_firewall,
    write_job_for,
)
from ..host.scripts import WRITE_OK, WriteJob, parse_dump, read_script, write_script
from ..host.ssh import ERROR_PREFIX, START_MARKER
from ..paths import SystemPaths
from ..targets import AnsibleRef

# rc, stdout, stderr of ``sh -s`` run on the host with the script on stdin.
Runner = Callable[[str], tuple[int, str, str]]

_STATE = "CERTKIT-DOCKER "

# docker.service's state once it settles (Restart=on-failure shows "activating" for a
# moment before "failed": poll, don't read once; facts doc section 7).
_DOCKER_STATE = (
    "i=0; while :; do st=$(systemctl is-active docker.service 2>/dev/null); "
    'case "$st" in activating|deactivating|reloading) [ $i -lt 75 ] || break; '
    "i=$((i+1)); sleep 0.2;; *) break;; esac; done; "
    f'echo "{_STATE}${{st:-unknown}}"'
)


@dataclass
class AnsibleTarget:
    """A host as Ansible reaches it; implements :class:`~certkit.host.target.Target`."""

    run: Runner
    system: SystemPaths
    ref: AnsibleRef
    host: str  # the inventory name, for messages
    docker_state: str = "unknown"  # docker.service's state when the host was read
    _files: HostFiles | None = field(default=None, repr=False)

    def check(self, *, restart: bool) -> None:
        """Nothing to refuse: Ansible already connected, as root or with become."""

    def run_script(self, script: str) -> list[str]:
        """Run ``script`` on the host; its output lines after the start marker.

        OperationError with the script's own sentence when it reports one.
        """
        rc, out, err = self.run(f"echo {START_MARKER}\n{script}")
        lines = out.splitlines()
        if START_MARKER not in lines:
            last = (err.strip().splitlines() or ["no output"])[-1]
            raise OperationError(f"The script did not start on {self.host} (exit {rc}): {last}")
        lines = lines[lines.index(START_MARKER) + 1 :]
        if rc != 0:
            reported = [ln[len(ERROR_PREFIX) :] for ln in lines if ln.startswith(ERROR_PREFIX)]
            if reported:
                raise OperationError(reported[-1])
            last = (err.strip().splitlines() or ["no message"])[-1]
            raise OperationError(f"The remote step on {self.host} failed (exit {rc}): {last}.")
        return lines

    def read_files(self) -> HostFiles:
        """daemon.json, units, drop-ins and certificate files (read once, then kept);
        also notes docker.service's state in :attr:`docker_state`."""
        if self._files is None:
            singles, globs = remote_read_paths(self.system)
            written, cert_dir = remote_write_targets(self.system)  # refused when unsafe
            script = read_script(singles, globs, written, cert_dir) + probe_for(self.system)
            lines = self.run_script(_DOCKER_STATE + "\n" + script)
            states = [ln[len(_STATE) :] for ln in lines if ln.startswith(_STATE)]
            self.docker_state = states[0].strip() if states else "unknown"
            found = host_files_from_dump(parse_dump(lines), self.system, self.host)
            self._files = with_firewall(found, lines, self.system)
        return self._files

    def apply(self, plan: InstallPlan, *, restart: bool) -> bool:
        """Write ``plan`` (backups first) and, with ``restart``, restart dockerd, rolling
        back to the previous files when it does not come back."""

        def write() -> bool:
            if plan.changes or restart:
                job = write_job_for(plan, restart=restart)
                if WRITE_OK not in self.run_script(write_script(job, self.host)):
                    raise OperationError(
                        f"The install on {self.host} stopped before it finished; "
                        "check the files there."
                    )
            return restart

        self._files = None  # what was read is stale now
        return with_rules(plan.firewall, self.run_script, write)

    def restart_docker(self) -> None:
        """Restart dockerd with the same rule as an install's restart (nothing to roll back)."""
        job = WriteJob(writes=[], restart=True)
        if WRITE_OK not in self.run_script(write_script(job, self.host)):
            raise OperationError(f"The restart on {self.host} stopped before it finished.")
        self._files = None

    def where(self, path: str) -> str:
        return f"{self.ref.ssh or self.host}:{path}"
