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
from ..host.target import Target
from ..paths import DOCKER_PIDFILE, DOCKER_PLUGIN_DIR, SystemPaths
from . import plugin as plugin_module

PLUGIN = "certkit-authz"
DAEMON_KEY = "authorization-plugins"


def check_plugin_name(name: str) -> str:
    """``name`` when it can name a plugin socket; UsageError otherwise."""
    if not re.match(r"^[a-z0-9][a-z0-9_.-]{0,63}$", name):
        raise UsageError(f"--plugin {name!r}: use lower-case letters, digits, '-', '_' or '.'.")
    return name


def reach(ref: Any, *, identity: str | None = None, ssh_options: Sequence[str] = ()) -> Target:
    """The host ``ref`` (a :mod:`certkit.targets` reference) names, reopened through the
    target registry; ``identity`` and ``ssh_options`` override an SSH reference's."""
    from .. import targets

    ref = targets.from_reach(targets.Reach(identity=identity, ssh_options=tuple(ssh_options)), ref)
    target: Target = targets.open_target(ref)
    return target


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


def _fail(message: str) -> str:
    return f"{{ echo {_q('CERTKIT-ERROR ' + message)}; exit 3; }}"


# Writes $1 (mode $2) from the base64 $3 through a temporary file renamed over it.
_PUT = (
    'put() { mkdir -p "$(dirname "$1")" && printf "%s" "$3" | base64 -d > "$1.certkit-tmp" '
    '&& chmod "$2" "$1.certkit-tmp" && mv -f "$1.certkit-tmp" "$1" && echo "WROTE $1"; }'
)
# Exit 0 when daemon.json ($1) already lists the plugin ($2) in authorization-plugins.
_LISTED = (
    "python3 -I -c 'import json, sys; c = json.load(open(sys.argv[1])); "
    'sys.exit(0 if sys.argv[2] in (c.get("authorization-plugins") or []) else 1)\''
)


def _converge_script(system: SystemPaths, wanted: dict[str, bytes], plugin: str) -> str:
    """Round one: write what differs (compared on the host), start the units, check the
    policy and the socket; then say whether daemon.json already names the plugin."""
    program, policy = str(system.authz_program), str(system.authz_policy)
    lines = ["set -u", _PUT, "units=0", "prog=0"]
    for path, data in wanted.items():
        digest = hashlib.sha256(data).hexdigest()
        flag = (
            "prog=1"
            if path == program
            else "units=1"
            if path.endswith((".socket", ".service"))
            else ":"
        )
        lines.append(
            f'if [ "$(sha256sum < {_q(path)} 2>/dev/null | cut -d" " -f1)" != {digest} ]; then '
            f"put {_q(path)} 644 {_q(base64.b64encode(data).decode())} || "
            + _fail(f"cannot write {path} on the host.")
            + f"; {flag}; fi"
        )
    if not system.sandboxed:  # a --root sandbox has no systemd of its own
        lines += [
            'if [ -d /run/systemd/system ] && [ "$units" = 1 ]; then systemctl daemon-reload; '
            f"systemctl enable --now {plugin}.socket >/dev/null 2>&1 || "
            + _fail(f"systemctl could not start {plugin}.socket; see journalctl -u {plugin}.")
            + "; fi",
            'if [ -d /run/systemd/system ] && [ "$prog" = 1 ]; then '
            f"systemctl try-restart {plugin}.service; fi",
        ]
    dj = _q(system.daemon_json)
    lines += [
        f"python3 -I {_q(program)} --check --policy {_q(policy)} >/dev/null 2>&1 || "
        + _fail(f"the host's python3 refused {policy}: run python3 {program} --check there."),
        f"[ -S {_q(socket_path(plugin))} ] || "
        + _fail(
            f"the plugin socket {socket_path(plugin)} is missing, so dockerd was not told to "
            f"use it (it would deny every request): start {plugin}.socket and push again."
        ),
        f"if [ -f {dj} ] && {_LISTED} {dj} {_q(plugin)} 2>/dev/null; then echo LISTED; else",
        f'  if [ -f {dj} ]; then printf "DJ "; base64 < {dj} | tr -d "\\n"; echo; '
        f"echo DJMODE $(stat -c %a {dj}); fi",
        "fi",
    ]
    return "\n".join(lines) + "\n"


def _registered(text: str | None, path: str, plugin: str) -> tuple[str, dict[str, Any]]:
    """daemon.json's new text naming ``plugin``, and its current settings."""
    config = parse_daemon_json(text or "", path)
    current = config.get(DAEMON_KEY) or []
    if not isinstance(current, list):
        raise OperationError(f"{path}: {DAEMON_KEY!r} is not a list; fix it, then push again.")
    new = {**config, DAEMON_KEY: [*current, plugin]}
    return (edit_daemon_json(text, config, new) if text else dump_daemon_json(new)), config


def push(target: Target, host: str, policy_text: str, *, plugin: str = PLUGIN) -> Pushed:
    """Converge ``host`` to run ``plugin`` with ``policy_text``; what was written.

    One round trip when the plugin is registered already (every revocation
    after the first push), two when daemon.json must name it.  OperationError
    (nothing registered) when the plugin's socket is missing or the host's
    python3 refuses the policy.
    """
    system = target.system
    wanted: dict[str, bytes] = {
        str(system.authz_program): program_text(),
        str(system.authz_policy): policy_text.encode(),
    }
    wanted.update({str(system.unit_dir / n): t.encode() for n, t in units(system, plugin).items()})
    digest = str(json.loads(policy_text).get("digest", ""))
    out = target.run_script(_converge_script(system, wanted, plugin))
    done = Pushed(host, digest, [ln[6:] for ln in out if ln.startswith("WROTE ")])
    if "LISTED" in out:
        return done
    text = next((base64.b64decode(ln[3:]).decode() for ln in out if ln.startswith("DJ ")), None)
    mode = next((ln[7:] for ln in out if ln.startswith("DJMODE ") and ln[7:].isdigit()), "644")
    dj = str(system.daemon_json)
    new_dj, config = _registered(text, dj, plugin)
    pidfile = str(config.get("pidfile") or system.at(DOCKER_PIDFILE))
    script = [
        "set -u",
        _PUT,
        f"put {_q(dj)} {mode} {_q(base64.b64encode(new_dj.encode()).decode())} || "
        + _fail(f"cannot write {dj} on the host."),
        f'kill -HUP "$(cat {_q(pidfile)})" 2>/dev/null || '
        + _fail(f"{dj} names {plugin} now, but dockerd could not be sent SIGHUP ({pidfile})."),
    ]
    target.run_script("\n".join(script) + "\n")
    done.written.append(dj)
    done.registered = True
    return done
