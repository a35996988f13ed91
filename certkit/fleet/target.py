"""A Docker host reached through Ansible's connection: :class:`AnsibleTarget`.

The Ansible action plugin (``certkit.docker.daemon_tls``) hands this target
one callable, ``run(script) -> (rc, stdout, stderr)``, that runs ``sh -s``
on the host through Ansible's own connection (its inventory, SSH settings
and ``become``), with the script on standard input.  Reading and writing
then use the same engine as every target (:class:`~certkit.host.remote.ScriptTarget`,
:mod:`certkit.host.engine`): one round trip reads daemon.json, the units, the
drop-ins and the certificate files; one writes the plan with backups
and, when asked, restarts dockerd with certkit's rollback rule
(``daemon-reload`` + ``reset-failed`` before each restart, the previous
files restored when Docker does not come back).  Nothing of certkit runs on
the host: only ``sh`` and coreutils, as for ``--ssh``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CertkitError, OperationError
from ..host import engine
from ..host.engine import Transport
from ..host.firewall import PROBE
from ..host.hostfiles import HostFiles
from ..host.remote import (
    ScriptTarget,
    host_files_from_lines,
    read_host_script,
    remote_read_paths,
    remote_write_targets,
)
from ..host.scripts import DOCKER_INFO_PROBE, read_script
from ..host.ssh import sh_quote
from ..paths import SystemPaths
from ..targets import AnsibleRef

# rc, stdout, stderr of ``sh -s`` run on the host with the script on stdin.
Runner = Transport

_STATE = "CERTKIT-DOCKER "
_FIREWALL = "CERTKIT-FW "  # the tag of the firewall probe's lines (host.firewall.PROBE)

# docker.service's state once it settles (Restart=on-failure shows "activating" for a
# moment before "failed": poll, don't read once; facts doc section 7).
_DOCKER_STATE = (
    "i=0; while :; do st=$(systemctl is-active docker.service 2>/dev/null); "
    'case "$st" in activating|deactivating|reloading) [ $i -lt 75 ] || break; '
    "i=$((i+1)); sleep 0.2;; *) break;; esac; done; "
    f'echo "{_STATE}${{st:-unknown}}"'
)


class HostUnreachable(OperationError):
    """Ansible's connection to the host failed (refused, timed out, or its link went
    silent and the keep-alives gave up)."""

    def __init__(self, why: str) -> None:
        why = " ".join(why.split()) or "no message"
        super().__init__(f"The connection to the host failed: {why[:300]}")


@dataclass
class AnsibleTarget(ScriptTarget):
    """A host as Ansible reaches it; implements :class:`~certkit.host.target.Target`."""

    run: Runner
    system: SystemPaths
    ref: AnsibleRef
    host: str  # the inventory name, for messages
    docker_state: str = "unknown"  # docker.service's state when the host was read
    address: str = ""  # where its TLS port is reached (ansible_host); "": the inventory name
    # Probe ufw, firewalld and nftables in the read step: only when certkit_allow_from is
    # set (each probe costs 0.3-1.8 s a host, every run; without sources there is no rule
    # to add or remove).
    firewall_probe: bool = True
    unreachable: bool = False  # the connection failed (see :class:`HostUnreachable`)
    _files: HostFiles | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.host

    def probe_host(self) -> str | None:
        return self.address or self.host

    def check(self, *, restart: bool) -> None:
        """Nothing to refuse: Ansible already connected, as root or with become."""

    def run_script(self, script: str) -> list[str]:
        """Run ``script`` on the host through the engine (the same frame, cap, time limit
        and reading of its output as every other target)."""
        try:
            return engine.run(self.run, script, self.host)
        except HostUnreachable:
            self.unreachable = True
            raise
        except CertkitError as e:
            # The host scripts speak to --ssh users; the fleet has no --sudo: its way to
            # become root is the inventory's ansible_become.
            if "pass --sudo" not in e.message:
                raise
            fleet_words = e.message.replace(
                "pass --sudo", "set ansible_become=true for this host in the inventory"
            )
            raise type(e)(fleet_words) from None

    def read_files(self) -> HostFiles:
        """daemon.json, units, drop-ins and certificate files (read once, then kept);
        also notes docker.service's state in :attr:`docker_state`."""
        if self._files is None:
            script = read_host_script(self.system)
            if not self.firewall_probe and str(self.system.root) == "/":
                # read_host_script with the firewall probe only on a first install (no
                # certificate there yet: its warning about an open port is worth the
                # cost once), docker info's always (it tells a restart's cost).
                singles, globs = remote_read_paths(self.system)
                cert = sh_quote(str(self.system.cert_files["cert"]))
                script = read_script(singles, globs, remote_write_targets(self.system))
                script += f"if [ ! -e {cert} ]; then\n{PROBE}fi\n{DOCKER_INFO_PROBE}"
            lines = self.run_script(_DOCKER_STATE + "\n" + script)
            states = [ln[len(_STATE) :] for ln in lines if ln.startswith(_STATE)]
            self.docker_state = states[0].strip() if states else "unknown"
            self._files = host_files_from_lines(lines, self.system, self.host)
            if not any(ln.startswith(_FIREWALL) for ln in lines):
                self._files.firewall = None  # not read: the plan leaves the firewall alone
        return self._files

    def where(self, path: str) -> str:
        return f"{self.ref.ssh or self.host}:{path}"
