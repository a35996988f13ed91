"""Putting certkit's authorization plugin on a Docker host, and its policy after each change.

:func:`push` converges one host in two round trips through its
:class:`~certkit.host.target.Target` (``run_script``, as root): it reads what is
there, then writes only what differs —

* the plugin program (:mod:`certkit.authz.plugin`, one file) and the policy,
  both root-owned 0644, each written to a temporary file and renamed over;
* ``certkit-authz.socket`` (on ``/run/docker/plugins/NAME.sock``) and a
  hardened ``certkit-authz.service``, enabled and started (on a host run by
  systemd; in a ``--root`` sandbox they are only written);
* ``"authorization-plugins"`` in daemon.json, then SIGHUP to dockerd, which
  reloads that option: dockerd is never restarted, no container stops.

The order matters: dockerd denies every request, on its unix socket too, while
a registered plugin cannot be reached, so the policy is checked with the
host's own python3 and the plugin's socket must answer before daemon.json
names it.  Hosts are reached through :func:`reach` alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OperationError, UsageError
from ..host.daemonjson import dump_daemon_json, edit_daemon_json, parse_daemon_json
from ..host.options import HostRef
from ..host.target import Target, open_target
from ..paths import DOCKER_PIDFILE, DOCKER_PLUGIN_DIR, SystemPaths
from . import plugin as plugin_module

PLUGIN = "certkit-authz"
DAEMON_KEY = "authorization-plugins"


def check_plugin_name(name: str) -> str:
    """``name`` when it can name a plugin socket; UsageError otherwise."""
    if not re.match(r"^[a-z0-9][a-z0-9_.-]{0,63}$", name):
        raise UsageError(f"--plugin {name!r}: use lower-case letters, digits, '-', '_' or '.'.")
    return name


def reach(ref: HostRef, *, identity: str | None = None, ssh_options: Sequence[str] = ()) -> Target:
    """The host ``ref`` names.  The one place this package opens a host (a target registry
    can replace it without touching the rest)."""
    return open_target(ref, identity=identity, ssh_options=ssh_options)


def socket_path(plugin: str = PLUGIN) -> str:
    """Where dockerd looks for the plugin ``plugin`` (fixed by dockerd: never re-rooted)."""
    return str(DOCKER_PLUGIN_DIR / f"{plugin}.sock")


def units(system: SystemPaths, plugin: str = PLUGIN) -> dict[str, str]:
    """The socket and service units (file name -> text) for ``plugin`` on ``system``."""
    socket_unit = f"""[Unit]
Description=certkit authorization plugin for dockerd (socket)
Documentation=https://github.com/certkit/certkit/blob/main/docs/revocation.md
Before=docker.service

[Socket]
ListenStream={socket_path(plugin)}
SocketMode=0600
DirectoryMode=0755

[Install]
WantedBy=sockets.target
"""
    # Root without any capability: the policy lives in /etc/docker/certkit (0700, root's),
    # which no other user can enter.  Everything else is taken away.
    service_unit = f"""[Unit]
Description=certkit authorization plugin for dockerd (revocation and roles)
Documentation=https://github.com/certkit/certkit/blob/main/docs/revocation.md
Requires={plugin}.socket
After={plugin}.socket
StartLimitIntervalSec=0

[Service]
ExecStart=/usr/bin/python3 -I {system.authz_program} --policy {system.authz_policy}
Restart=always
RestartSec=100ms
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
PrivateNetwork=yes
RestrictAddressFamilies=AF_UNIX
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
UMask=0077
"""
    return {f"{plugin}.socket": socket_unit, f"{plugin}.service": service_unit}


def program_text() -> bytes:
    """The plugin program as it is copied to hosts."""
    return Path(plugin_module.__file__).read_bytes()


@dataclass
class HostState:
    """What :func:`push` found on the host."""

    daemon_json: str | None
    sums: dict[str, str]  # path -> sha256 of the file there (missing: absent)
    systemd: bool  # PID 1 is systemd and the host is not a --root sandbox
    socket: bool  # the plugin's socket exists
    daemon_json_mode: str = "644"  # kept when daemon.json is rewritten


@dataclass
class Pushed:
    """What :func:`push` did on one host."""

    host: str
    digest: str
    written: list[str] = field(default_factory=list)
    registered: bool = False  # daemon.json changed to name the plugin (and SIGHUP sent)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "digest": self.digest,
            "written": self.written,
            "registered": self.registered,
        }


def _q(path: object) -> str:
    return shlex.quote(str(path))


def _read_state(target: Target, paths: list[str], plugin: str) -> HostState:
    system = target.system
    lines = [
        "set -u",
        f"dj={_q(system.daemon_json)}",
        'if [ -f "$dj" ]; then printf "DJ "; base64 < "$dj" | tr -d "\\n"; echo; fi',
        '[ -f "$dj" ] && echo DJMODE $(stat -c %a "$dj")',
        *(
            f"[ -f {_q(p)} ] && echo SUM $(sha256sum < {_q(p)} | cut -d' ' -f1) {_q(p)}"
            for p in paths
        ),
        f"[ -S {_q(socket_path(plugin))} ] && echo SOCKET",
        "[ -d /run/systemd/system ] && echo SYSTEMD",
        "true",
    ]
    state = HostState(None, {}, False, False)
    for line in target.run_script("\n".join(lines) + "\n"):
        word, _, rest = line.partition(" ")
        if word == "DJ":
            state.daemon_json = base64.b64decode(rest).decode("utf-8")
        elif word == "DJMODE" and rest.isdigit():
            state.daemon_json_mode = rest
        elif word == "SUM":
            digest, _, path = rest.partition(" ")
            state.sums[path] = digest
        elif word == "SOCKET":
            state.socket = True
        elif word == "SYSTEMD":
            state.systemd = not system.sandboxed
    return state


def _write_file(path: str, data: bytes, mode: str = "0644") -> list[str]:
    encoded = base64.b64encode(data).decode()
    tmp = f"{path}.certkit-tmp"
    return [
        f"mkdir -p {_q(Path(path).parent)}",
        f"printf '%s' {_q(encoded)} | base64 -d > {_q(tmp)}",
        f"chmod {mode} {_q(tmp)}",
        f"mv -f {_q(tmp)} {_q(path)}",
    ]


def _fail(message: str) -> str:
    return f"{{ echo {_q('CERTKIT-ERROR ' + message)}; exit 3; }}"


def _registered(text: str | None, path: str, plugin: str) -> tuple[str | None, dict[str, Any]]:
    """daemon.json's new text naming ``plugin`` (None: it already does), and its settings."""
    config = parse_daemon_json(text or "", path)
    current = config.get(DAEMON_KEY) or []
    if not isinstance(current, list):
        raise OperationError(f"{path}: {DAEMON_KEY!r} is not a list; fix it, then push again.")
    if plugin in current:
        return None, config
    new = {**config, DAEMON_KEY: [*current, plugin]}
    return (edit_daemon_json(text, config, new) if text else dump_daemon_json(new)), config


def push(target: Target, host: str, policy_text: str, *, plugin: str = PLUGIN) -> Pushed:
    """Converge ``host`` to run ``plugin`` with ``policy_text``; what was written.

    OperationError (nothing registered) when the plugin's socket does not
    answer or the host's python3 refuses the policy.
    """
    system = target.system
    program, policy = str(system.authz_program), str(system.authz_policy)
    wanted: dict[str, bytes] = {program: program_text(), policy: policy_text.encode()}
    wanted.update({str(system.unit_dir / n): t.encode() for n, t in units(system, plugin).items()})
    state = _read_state(target, list(wanted), plugin)
    changed = [p for p, d in wanted.items() if state.sums.get(p) != hashlib.sha256(d).hexdigest()]
    dj = str(system.daemon_json)
    new_dj, config = _registered(state.daemon_json, dj, plugin)
    script = ["set -u"]
    for path in changed:
        script += _write_file(path, wanted[path])
    if state.systemd and any(p.startswith(str(system.unit_dir)) for p in changed):
        script += [
            "systemctl daemon-reload",
            f"systemctl enable --now {plugin}.socket >/dev/null 2>&1 || "
            + _fail(f"systemctl could not start {plugin}.socket; see journalctl -u {plugin}."),
        ]
    if state.systemd and program in changed:
        script.append(f"systemctl try-restart {plugin}.service")
    script += [
        f"python3 -I {_q(program)} --check --policy {_q(policy)} >/dev/null 2>&1 || "
        + _fail(f"the host's python3 refused {policy}: run python3 {program} --check there."),
        f"[ -S {_q(socket_path(plugin))} ] || "
        + _fail(
            f"the plugin socket {socket_path(plugin)} is missing, so dockerd was not told to "
            f"use it (it would deny every request): start {plugin}.socket and push again."
        ),
    ]
    if new_dj is not None:
        pidfile = str(config.get("pidfile") or system.at(DOCKER_PIDFILE))
        script += [
            *_write_file(dj, new_dj.encode(), state.daemon_json_mode),
            f'kill -HUP "$(cat {_q(pidfile)})" 2>/dev/null || '
            + _fail(f"{dj} names {plugin} now, but dockerd could not be sent SIGHUP ({pidfile})."),
        ]
    target.run_script("\n".join(script) + "\n")
    digest = str(json.loads(policy_text).get("digest", ""))
    return Pushed(host, digest, changed + ([dj] if new_dj else []), new_dj is not None)
