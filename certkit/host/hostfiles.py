"""What an install reads from a Docker host: the raw texts, wherever they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .firewall import FirewallState


@dataclass
class HostFiles:
    """The raw files of a Docker host that an install reads.

    ``units`` are the docker.service files that exist, lowest precedence
    first; ``dropins`` the existing ``docker.service.d/*.conf``, sorted by
    name; ``cert_files`` the current contents of the certificate files an
    install would write (path -> bytes, only those that exist; may be left
    empty, then they simply count as changed); ``links`` the written paths that
    are symbolic links certkit follows, and where each leads.
    """

    daemon_json: str | None = None
    daemon_json_mode: int | None = None
    units: list[tuple[str, str]] = field(default_factory=list)
    dropins: list[tuple[str, str]] = field(default_factory=list)
    default_docker: str | None = None
    # docker.socket's unit files and ``docker.socket.d/*.conf`` drop-ins, as for the service.
    socket_units: list[tuple[str, str]] = field(default_factory=list)
    socket_dropins: list[tuple[str, str]] = field(default_factory=list)
    # What the running dockerd says (``docker info``; None: not asked, or no answer):
    # swarm's LocalNodeState, how many containers run, whether live-restore is on.
    swarm: str | None = None
    running: int | None = None
    live_restore: bool | None = None
    cert_files: dict[str, bytes] = field(default_factory=dict)
    firewall: FirewallState | None = None  # the active firewall manager; None: not read
    # Written paths that are symbolic links certkit follows (safe directories only): the
    # file each leads to, where the install writes (see certkit.host.scripts.WriteTargets).
    links: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # a dry run's user could not read these
