"""The docker systemd unit: ExecStart as systemd computes it, -H flags, certkit's drop-in.

Read-only parsing of unit text (``[Service]`` values with continuations, drop-ins
replayed in order, ``$DOCKER_OPTS`` from ``/etc/default/docker``), plus the text
of the one drop-in certkit writes.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

from ..errors import UsageError
from ..names import ip_or_none
from ..paths import DROPIN_NAME, SystemPaths
from .hostfiles import HostFiles


def service_values(text: str, key: str, section_name: str = "Service") -> list[str]:
    """Every ``key=`` value of the unit's [Service] section (or ``section_name``), in order,
    continuations joined."""
    values: list[str] = []
    section = ""
    logical: list[str] = []
    lines: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not logical and (stripped.startswith("#") or stripped.startswith(";")):
            continue
        if stripped.endswith("\\"):
            logical.append(stripped[:-1])
            continue
        logical.append(stripped)
        lines.append(" ".join(part for part in logical if part))
        logical = []
    if logical:
        lines.append(" ".join(logical))
    for line in lines:
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != section_name or "=" not in line:
            continue
        k, _, v = line.partition("=")
        if k.strip() == key:
            values.append(v.strip())
    return values


def _split_execstart(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError:
        return value.split()


def _execstart_of(sources: list[tuple[str, str]]) -> list[str] | None:
    """Replay ExecStart= lines over ``sources``: the last one wins, an empty one resets."""
    current: list[str] | None = None
    for _, text in sources:
        for value in service_values(text, "ExecStart"):
            current = _split_execstart(value) if value else None
    return current


def effective_execstart(files_: HostFiles) -> list[str] | None:
    """The command systemd would run for docker.service (None: no unit or no ExecStart)."""
    return _execstart_of([*files_.units, *files_.dropins])


def is_ours(path: str) -> bool:
    return PurePosixPath(path).name == DROPIN_NAME


def base_execstart(files_: HostFiles) -> list[str] | None:
    """ExecStart without certkit's own drop-in: what an install starts from."""
    return _execstart_of([*files_.units, *(d for d in files_.dropins if not is_ours(d[0]))])


_H_FLAG = re.compile(r"^(?:-H|--host)(?:=(.*))?$")


def flag_hosts(args: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, host)`` of every -H/--host flag in ``args`` (end exclusive)."""
    found: list[tuple[int, int, str]] = []
    i = 1
    while i < len(args):
        arg = args[i]
        m = _H_FLAG.match(arg)
        if m and m.group(1) is not None:
            found.append((i, i + 1, m.group(1)))
        elif m and i + 1 < len(args):
            found.append((i, i + 2, args[i + 1]))
            i += 1
        elif arg.startswith("-H") and len(arg) > 2 and not arg.startswith("-H="):
            found.append((i, i + 1, arg[2:]))
        i += 1
    return found


# dockerd flags whose daemon.json key has another name (dockerd's "named options").
_NAMED = {
    "host": "hosts",
    "label": "labels",
    "insecure-registry": "insecure-registries",
    "registry-mirror": "registry-mirrors",
    "storage-opt": "storage-opts",
    "log-opt": "log-opts",
    "exec-opt": "exec-opts",
    "dns-opt": "dns-opts",
    "authorization-plugin": "authorization-plugins",
    "default-ulimit": "default-ulimits",
    "add-runtime": "runtimes",
    "node-generic-resource": "node-generic-resources",
    "default-address-pool": "default-address-pools",
    "feature": "features",
    "cdi-spec-dir": "cdi-spec-dirs",
}
_SHORT = {"H": "hosts", "D": "debug", "G": "group", "b": "bridge", "l": "log-level",
          "p": "pidfile", "s": "storage-driver", "g": "graph"}  # fmt: skip
# Flags that take no separate value (``--name`` alone, or ``--name=false``).
_BOOL = {"debug", "tls", "tlsverify", "live-restore", "icc", "ip-forward", "ip-masq",
         "iptables", "ip6tables", "ipv6", "userland-proxy", "selinux-enabled", "experimental",
         "init", "no-new-privileges", "raw-logs", "validate", "rootless", "help", "version",
         "ip-forward-no-drop", "userns-remap-disabled"}  # fmt: skip

# The daemon.json keys an install sets; the same flags in the unit are moved out of it.
TLS_KEYS = ("tlsverify", "tlscacert", "tlscert", "tlskey")


def flag_keys(args: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, daemon.json key)`` of every dockerd flag in ``args`` (``args[0]`` is
    the binary; end exclusive): the key dockerd compares with daemon.json's (a key set both
    ways stops dockerd: "specified both as a flag and in the configuration file")."""
    found: list[tuple[int, int, str]] = []
    i = 1
    while i < len(args):
        arg = args[i]
        name, has_value = "", False
        if arg.startswith("--") and len(arg) > 2:
            name, has_value = arg[2:].split("=", 1)[0], "=" in arg
            key = _NAMED.get(name, name)
        elif arg.startswith("-") and len(arg) > 1 and arg[1] in _SHORT:
            name, has_value = arg[1], len(arg) > 2
            key = _SHORT[name]
        if not name:
            i += 1
            continue
        takes = not has_value and key not in _BOOL and i + 1 < len(args)
        found.append((i, i + 2 if takes else i + 1, key))
        i += 2 if takes else 1
    return found


def flag_conflicts(args: list[str], config_keys: set[str]) -> list[str]:
    """The daemon.json keys among ``config_keys`` that ``args`` also sets as flags."""
    return sorted({key for _, _, key in flag_keys(args) if key in config_keys})


def _default_docker_opts(text: str | None) -> list[str]:
    """DOCKER_OPTS from /etc/default/docker, split as systemd's $VAR expansion does."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        if line.startswith("DOCKER_OPTS="):
            value = line[len("DOCKER_OPTS=") :]
            try:
                parts = shlex.split(value)
            except ValueError:
                return value.split()
            return " ".join(parts).split()
    return []


def is_opts_var(arg: str) -> bool:
    return arg in ("$DOCKER_OPTS", "${DOCKER_OPTS}")


def expanded(args: list[str], files_: HostFiles) -> list[str]:
    out: list[str] = []
    for arg in args:
        out.extend(_default_docker_opts(files_.default_docker) if is_opts_var(arg) else [arg])
    return out


def flag_value(args: list[str], name: str) -> str | None:
    """Value of a boolean-ish ``--name`` flag (``"true"`` when bare), else None."""
    for arg in args[1:]:
        if arg == f"--{name}":
            return "true"
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _quote_arg(arg: str) -> str:
    if is_opts_var(arg) or re.fullmatch(r"[A-Za-z0-9_@%+=:,./$-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dropin_text(args: list[str]) -> str:
    return (
        "# Written by certkit (certkit issue-server --install): the docker unit's own\n"
        "# command line, with the listeners certkit manages. Edit with care.\n"
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart={' '.join(_quote_arg(a) for a in args)}\n"
    )


# ---------------------------------------------------------------- docker.socket (--method socket)


def socket_listens(files_: HostFiles, *, ours: bool = True) -> list[str]:
    """Every ``ListenStream=`` of docker.socket as systemd computes it: the units, then the
    drop-ins in order (an empty value resets the list); without ``ours``, certkit's own
    drop-in is left out (what an install starts from)."""
    dropins = [d for d in files_.socket_dropins if ours or not is_ours(d[0])]
    units = files_.socket_units[-1:]  # a unit file in a later directory replaces the earlier
    listens: list[str] = []
    for _, text in [*units, *dropins]:
        for value in service_values(text, "ListenStream", "Socket"):
            listens = [*listens, value] if value else []
    return listens


def socket_activated(args: list[str] | None) -> bool:
    """True when dockerd takes its listeners from systemd: ``-H fd://`` is its only host."""
    hosts = [h for _, _, h in flag_hosts(args or [])]
    return bool(hosts) and all(h.startswith("fd://") for h in hosts)


def socket_listen(listen: str, port: int) -> str:
    """``ListenStream=``'s spelling of a TCP address (``[::]:2376`` for IPv6)."""
    addr = listen.strip("[]")
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def socket_dropin_text(listen: str) -> str:
    """certkit's docker.socket drop-in: one more TCP listener (TLS: dockerd wraps the
    sockets it gets from systemd with daemon.json's tls* settings); the unit's own
    ``ListenStream=`` (the unix socket) is kept, as the list is not reset."""
    return (
        "# Written by certkit (certkit issue-server --install --method socket): the Docker\n"
        "# API over TLS on this TCP port; systemd holds it while dockerd restarts.\n"
        "[Socket]\n"
        f"ListenStream={listen}\n"
    )


def plan_socket_dropin(
    files_: HostFiles,
    base: list[str] | None,
    json_hosts: list[str],
    sp: SystemPaths,
    address: tuple[str, int],
    method: str,
) -> tuple[str | None, str | None]:
    """certkit's docker.socket drop-in, before and after, for an install listening on
    ``address`` (``--method socket``; other methods leave an existing one as it is).
    Refuses, before anything is issued, a host whose dockerd is not socket-activated (the
    TCP socket would never reach dockerd) and anything that would make it plaintext."""
    old = next((t for p, t in files_.socket_dropins if is_ours(p)), None)
    if method != "socket":
        return old, None
    args = expanded(base or [], files_)
    if not files_.socket_units:
        raise UsageError(
            f"--method socket needs docker.socket ({', '.join(map(str, sp.socket_unit_files))})"
            ", which this host does not have: use --method systemd or daemon-json."
        )
    if not socket_activated(args):
        hosts = ", ".join(h for _, _, h in flag_hosts(args)) or "no -H"
        raise UsageError(
            f"--method socket needs a docker.service whose only -H is fd:// (socket "
            f"activation), and this one has {hosts}: use --method systemd or daemon-json."
        )
    if json_hosts:
        raise UsageError(
            f'{sp.daemon_json} sets "hosts", which dockerd refuses beside -H fd://: remove it '
            "(docker.socket keeps the unix socket), then run again."
        )
    listen, port = address
    if ip_or_none(listen.strip("[]")) is None:
        raise UsageError(
            f"--listen {listen!r} is a name, and systemd's ListenStream= takes an IP address: "
            "pass one with --method socket."
        )
    ours = socket_listen(listen, port)
    taken = [a for a in socket_listens(files_, ours=False) if a.endswith(f":{port}")]
    if taken:
        raise UsageError(
            f"docker.socket already listens on {', '.join(taken)}: remove that ListenStream=, "
            "then run again."
        )
    return old, socket_dropin_text(ours)
