"""The part of an install plan only a rootless dockerd has: RootlessKit's port forward.

A rootless dockerd runs inside RootlessKit's own network namespace, so the TCP
port it listens on is reachable from outside only when RootlessKit publishes
it: ``dockerd-rootless.sh`` passes ``$DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS`` to
``rootlesskit``, and certkit's drop-in for the user's ``docker.service`` sets it
with ``-p 0.0.0.0:PORT:PORT/tcp`` (keeping any other flag the unit already
passes).  Pure: no I/O, called by :func:`certkit.host.plan.plan_install`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from ..errors import UsageError
from ..install_options import InstallOptions
from ..paths import RootlessPaths, SystemPaths
from .hostfiles import HostFiles
from .systemd import is_ours, service_values

FLAGS_VAR = "DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS"
FIRST_UNPRIVILEGED_PORT = 1024  # net.ipv4.ip_unprivileged_port_start's default
WILDCARDS = ("0.0.0.0", "::", "[::]")

HEADER = (
    "# Written by certkit (certkit issue-server --rootless --install): RootlessKit publishes\n"
    "# the daemon's TLS port on the host. Edit with care.\n"
    "[Service]\n"
)


def check_rootless_listen(listen: str, port: int) -> None:
    """Refuse, with the reason, what a rootless daemon cannot listen on."""
    if port < FIRST_UNPRIVILEGED_PORT:
        raise UsageError(
            f"Port {port} is below {FIRST_UNPRIVILEGED_PORT}: RootlessKit binds it on the host as "
            "the daemon's user, which needs root's help (setcap cap_net_bind_service=ep on "
            "rootlesskit, or sysctl net.ipv4.ip_unprivileged_port_start); use --port 2376 "
            "(or any port from 1024), then run again."
        )
    if listen not in WILDCARDS:
        raise UsageError(
            f"--listen {listen} cannot go with --rootless: the daemon listens inside "
            "RootlessKit's network namespace and certkit publishes its port on every address "
            "of the host; drop --listen (and narrow who connects with the host's firewall)."
        )


def _unit_flags(files_: HostFiles) -> str:
    """``$DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS`` as the unit and the other drop-ins set it."""
    value = ""
    for path, text in [*files_.units, *(d for d in files_.dropins if not is_ours(d[0]))]:
        del path
        for env in service_values(text, "Environment"):
            for item in shlex.split(env):
                name, eq, rest = item.partition("=")
                if eq and name == FLAGS_VAR:
                    value = rest
    return value


def _without_port(flags: list[str], port: int) -> list[str]:
    """``flags`` without any ``-p``/``--publish`` of the child port ``port``."""
    out: list[str] = []
    skip = False
    for i, flag in enumerate(flags):
        if skip:
            skip = False
            continue
        spec = None
        if flag in ("-p", "--publish") and i + 1 < len(flags):
            spec, skip = flags[i + 1], True
        elif flag.startswith("--publish="):
            spec = flag.split("=", 1)[1]
        if spec is not None and spec.split("/")[0].rsplit(":", 1)[-1] == str(port):
            continue
        if spec is not None:
            out += [flag] if "=" in flag else [flag, spec]
            continue
        out.append(flag)
    return out


def port_forward(listen: str, port: int) -> str:
    """RootlessKit's ``-p`` value for the daemon's TLS port."""
    parent = "[::]" if listen in ("::", "[::]") else listen
    return f"{parent}:{port}:{port}/tcp"


def _kept_ports(hosts: Sequence[str], port: int) -> list[int]:
    """The other TCP ports of daemon.json's ``hosts`` (kept by the install): still published."""
    found = (re.match(r"^tcp://[^/]*:(\d+)$", h) for h in hosts)
    return sorted({int(m.group(1)) for m in found if m and int(m.group(1)) != port})


def rootless_dropin(
    dropin: str | None,
    files_: HostFiles,
    listen: str,
    options: InstallOptions,
    hosts: Sequence[str] = (),
) -> str:
    """certkit's drop-in for the user's docker.service: ``dropin`` (its ExecStart, when the
    plan needs one) plus the Environment line publishing through RootlessKit the port and
    every other TCP port daemon.json's ``hosts`` keeps."""
    port = options.port
    check_rootless_listen(listen, port)
    if options.allow_from:
        raise UsageError(
            "--allow-from cannot go with --rootless: the host's firewall is root's, and "
            "certkit connects as the daemon's user; open the port there as root instead."
        )
    flags = shlex.split(_unit_flags(files_))
    for published in [*_kept_ports(hosts, port), port]:
        flags = _without_port(flags, published)
        flags += ["-p", port_forward(listen, published)]
    value = " ".join(shlex.quote(f) for f in flags)
    if '"' in value or "\\" in value:
        raise UsageError(
            f"{FLAGS_VAR} in the user's docker.service holds quotes certkit cannot carry over: "
            "simplify it, then run again."
        )
    return (dropin or HEADER) + f'Environment="{FLAGS_VAR}={value}"\n'


def restart_command(paths: SystemPaths) -> str:
    """The command that restarts the daemon ``paths`` belong to, for "restart needed" lines."""
    if isinstance(paths, RootlessPaths):
        return "systemctl --user restart docker (as the daemon's user)"
    return "sudo systemctl restart docker"
