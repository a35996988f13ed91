"""What ``certkit doctor`` says about authorization plugins on this host and policies behind.

dockerd denies every request, on its unix socket too, while an authorization
plugin it was told to use cannot be reached.  The check names that state and
the one-line recovery that needs no restart.
"""

from __future__ import annotations

import socket
from pathlib import Path

from ..checks import FAIL, PASS, WARN, Checklist
from ..host.daemonjson import config_or_empty
from ..paths import DOCKER_PIDFILE, SystemPaths
from .install import DAEMON_KEY, socket_path


def answers(path: str, timeout: float = 2.0) -> bool:
    """True when a plugin on the unix socket ``path`` answers ``/Plugin.Activate``."""
    request = b"POST /Plugin.Activate HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(request)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return False
    return data.startswith(b"HTTP/1.") and b'"authz"' in data


def recovery(system: SystemPaths, plugin: str, pidfile: object = None) -> str:
    """The command line that lets dockerd serve again without the plugin (no restart)."""
    dj, pid = system.daemon_json, pidfile or system.at(DOCKER_PIDFILE)
    return (
        f"remove {plugin!r} from {DAEMON_KEY} in {dj}, then kill -HUP $(cat {pid}) "
        "(a reload, not a restart)"
    )


def add_checks(report: Checklist, system: SystemPaths) -> None:
    """An ``authz-plugin`` line per plugin daemon.json names, then policies behind."""
    try:
        text: str | None = Path(system.daemon_json).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    config = config_or_empty(text)
    plugins = config.get(DAEMON_KEY) or []
    for plugin in plugins if isinstance(plugins, list) else []:
        path = socket_path(str(plugin))
        if answers(path):
            report.add("authz-plugin", PASS, f"{plugin} answers on {path}")
            continue
        report.add(
            "authz-plugin",
            FAIL,
            f"dockerd denies every request (its unix socket too) while {plugin} does not "
            f"answer on {path}: start it (systemctl start {plugin}.socket), or recover: "
            + recovery(system, str(plugin), config.get("pidfile")),
        )
    from ..revoke import all_hosts_behind

    for ca, hosts in all_hosts_behind(skip_unreadable=True).items():
        flag = "" if ca == "default" else f" --ca {ca}"
        for host in hosts:
            report.add(
                "authz-policy",
                WARN,
                f"host {host} enforces an older policy of CA {ca!r}: "
                f"certkit policy push {host}{flag}",
            )
