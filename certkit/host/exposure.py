"""Who can reach this host's Docker ports: live listeners and the firewall (doctor, verify).

Read-only, on the host itself (``certkit doctor``, and ``certkit verify``
pointed at this machine):

* the listening TCP sockets, from ``/proc/net/tcp`` and ``/proc/net/tcp6``
  (what the kernel has open, whatever the configuration files say);
* the active firewall manager (:mod:`certkit.host.firewall`'s probe) and
  which sources it lets reach a port: ``ufw status verbose`` (default
  incoming policy, rules whose ``To`` covers the port; application profiles
  are not resolved), firewalld's active zone at runtime (``--list-all``:
  its target, ports and rich rules; services are not resolved), nftables'
  ``tcp dport`` accept rules.  Rule order (a deny before an allow) is not
  evaluated: an allow is taken as reaching the port.

Findings, one sentence and the next step each:

* ``plain-port``: something listens on 2375, Docker's plain-HTTP port, on a
  non-loopback address: FAIL (whoever reaches it is root on the host; a
  firewall in front of it is one command away from not being there).  On
  loopback only: WARN (every local user can drive dockerd through it).
* ``tls-port-exposure``: the TLS port listens on a non-loopback address and
  no firewall is active, or the firewall allows it from anywhere: WARN with
  the ``--allow-from`` advice (docker's default set-up, not a failure).
  Allowed from some sources only: PASS; blocked for everyone: WARN.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..checks import FAIL, PASS, SKIP, WARN, Check
from ..names import DOCKER_PLAIN_PORT, DOCKER_TLS_PORT
from .firewall import (
    ANY,
    PROBE,
    FirewallState,
    network_or_any,
    parse_probe,
    parse_ufw,
    ports_cover,
)
from .hostfiles import HostFiles

_TAG = "CERTKIT-EXPOSE "
_FW_TAG = "CERTKIT-FW "
# Read-only, after firewall.PROBE: what that probe does not print (defaults, runtime ports).
EXPOSURE_PROBE = PROBE + "\n".join(
    [
        'xtag() { while IFS= read -r l; do printf \'CERTKIT-EXPOSE %s %s\\n\' "$1" "$l"; done; }',
        "if command -v ufw >/dev/null 2>&1; then ufw status verbose 2>/dev/null | xtag ufw; fi",
        # PROBE leaves firewalld's state in $st (firewall-cmd takes 0.2 s: asked again only
        # when unset) and its active zone in $z (else the default zone is listed).
        "if command -v firewall-cmd >/dev/null 2>&1 && "
        '[ "${st-$(firewall-cmd --state 2>/dev/null)}" = running ]; then',
        '  firewall-cmd ${z:+"--zone=$z"} --list-all 2>/dev/null | xtag firewalld',
        "fi",
        "",
    ]
)
PROC_NET = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"
ADVICE = "certkit issue-server HOST --install --allow-from CIDR"


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket: its local address and port (the socket's inode, and the
    name of the process holding it once :func:`with_processes` looked)."""

    address: str
    port: int
    inode: int = 0
    process: str = ""

    @property
    def loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_loopback
        return ip.is_loopback


def _hex_address(value: str) -> str:
    raw = bytes.fromhex(value)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def parse_proc_net_tcp(text: str) -> list[Listener]:
    """The listening sockets in a ``/proc/net/tcp`` or ``tcp6`` table."""
    found: list[Listener] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != _LISTEN or ":" not in parts[1]:
            continue
        addr, _, port = parts[1].partition(":")
        try:
            inode = int(parts[9]) if len(parts) > 9 else 0
            found.append(Listener(_hex_address(addr), int(port, 16), inode))
        except ValueError:
            continue
    return found


def with_processes(found: Sequence[Listener], ports: Iterable[int]) -> list[Listener]:
    """``found``, the listeners on ``ports`` named after the process holding their socket
    (``/proc/PID/comm`` of the PID whose ``fd`` links to it; as root, every process)."""
    wanted = {f"socket:[{x.inode}]": x.inode for x in found if x.inode and x.port in ports}
    names: dict[int, str] = {}
    for proc in Path("/proc").iterdir() if wanted else ():
        if not proc.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            hits = [wanted[link] for link in links if link in wanted]
            if hits:
                comm = (proc / "comm").read_text().strip()
                names.update(dict.fromkeys(hits, comm))
        except OSError:  # the process ended, or is not ours to read
            continue
    return [replace(x, process=names.get(x.inode, x.process)) for x in found]


def listeners(tables: Sequence[str] = PROC_NET) -> list[Listener]:
    """This machine's listening TCP sockets (a table that cannot be read is skipped)."""
    found: list[Listener] = []
    for table in tables:
        try:
            found += parse_proc_net_tcp(Path(table).read_text())
        except OSError:
            continue
    return found


# ---------------------------------------------------------------- who the firewall lets in


def _source(value: str) -> str:
    """A rule's source as a network or ``any`` (ufw's ``Anywhere``; a whole address family,
    ``0.0.0.0/0`` or ``::/0``, is everyone on it); unknown text as is."""
    words = value.replace("(v6)", "").split()
    if not words or words[0].lower() == "anywhere":
        return ANY
    net = network_or_any(words[0])
    return ANY if net in ("0.0.0.0/0", "::/0") else (net or words[0])


def ufw_sources(lines: Iterable[str], port: int) -> list[str]:
    """Sources ``ufw status verbose`` lets reach ``port``/tcp (``any``: everyone)."""
    default_allows, rules = parse_ufw(lines)
    out = [ANY] if default_allows else []
    out += [
        _source(r.source)
        for r in rules
        if r.action.startswith(("ALLOW", "LIMIT")) and r.covers(port)
    ]
    return sorted(set(out))


def firewalld_sources(lines: Iterable[str], port: int) -> list[str]:
    """Sources firewalld's ``--list-all`` (the active zone, runtime) lets reach ``port``/tcp."""
    out: list[str] = []
    for line in lines:
        s = line.strip()
        key, _, value = s.partition(":")
        everyone = key == "target" and value.strip() == "ACCEPT"
        if everyone or (key == "ports" and any(ports_cover(p, port) for p in value.split())):
            out.append(ANY)
        elif s.startswith("rule ") and s.endswith("accept"):
            m = re.search(r'port port="([^"]+)" protocol="tcp"', s)
            if m and ports_cover(m.group(1), port):
                src = re.search(r'source address="([^"]+)"', s)
                out.append(_source(src.group(1)) if src and " NOT " not in s else ANY)
    return sorted(set(out))


def nft_sources(lines: Iterable[str], port: int) -> list[str]:
    """Sources nftables accept rules (``tcp dport … accept``) let reach ``port``."""
    out: list[str] = []
    for line in lines:
        s = line.strip()
        m = re.search(r"\btcp dport (\{[^}]*\}|\S+)", s)
        if not m or not re.search(r"\baccept\b", s):
            continue
        specs = m.group(1).strip("{}").replace(" ", "").split(",")
        if any(ports_cover(p, port) for p in specs):
            src = re.search(r"\bip6? saddr (\S+)", s)
            out.append(_source(src.group(1)) if src and src.group(1) != "!=" else ANY)
    return sorted(set(out))


@dataclass(frozen=True)
class Exposure:
    """The firewall as the exposure findings need it: the manager and its tagged output."""

    state: FirewallState | None  # None: not read (not root)
    lines: dict[str, list[str]] = field(default_factory=dict)

    def sources(self, port: int) -> list[str]:
        """Who may reach ``port``/tcp: ``["any"]`` for everyone, [] for nobody."""
        manager = self.state.manager if self.state else "none"
        if manager == "none":
            return [ANY]
        if manager == "ufw":
            return ufw_sources(self.lines.get("ufw", []), port)
        if manager == "firewalld":
            return firewalld_sources(self.lines.get("firewalld", []), port)
        return nft_sources(self.lines.get("nft", []), port)


def parse_exposure(lines: Sequence[str]) -> Exposure:
    """:data:`EXPOSURE_PROBE`'s output as an :class:`Exposure`."""
    tagged: dict[str, list[str]] = {}
    nft = _FW_TAG + "nft "
    for line in lines:
        if line.startswith(nft):
            tagged.setdefault("nft", []).append(line[len(nft) :])
        elif line.startswith(_TAG):
            tool, _, rest = line[len(_TAG) :].partition(" ")
            tagged.setdefault(tool, []).append(rest)
    return Exposure(parse_probe(lines), tagged)


def read_exposure() -> Exposure:
    """This machine's firewall, read with :data:`EXPOSURE_PROBE` (never changes a rule)."""
    from .local import run_sh

    return parse_exposure(run_sh(EXPOSURE_PROBE))


# ---------------------------------------------------------------- findings


@dataclass(frozen=True)
class Finding:
    """One exposure finding: a sentence, the next step, and the facts behind it."""

    name: str  # plain-port | tls-port-exposure
    status: str
    port: int
    message: str
    next_step: str = ""
    addresses: tuple[str, ...] = ()  # where it listens (non-loopback first)
    manager: str | None = None  # the active firewall manager; None: not read
    sources: tuple[str, ...] = ()  # who the firewall lets in ("any": everyone)
    processes: tuple[str, ...] = ()  # who holds the listening sockets, when known

    def check(self) -> Check:
        return Check(self.name, self.status, f"{self.message}; {self.next_step}".rstrip("; "))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "port": self.port,
            "message": self.message,
            "next": self.next_step,
            "addresses": list(self.addresses),
            "firewall": self.manager,
            "allowed_from": list(self.sources),
            "processes": list(self.processes),
        }


def _split(found: Sequence[Listener], port: int) -> tuple[list[str], list[str]]:
    """(non-loopback, loopback) addresses listening on ``port``."""
    here = [x for x in found if x.port == port]
    return (
        sorted({x.address for x in here if not x.loopback}),
        sorted({x.address for x in here if x.loopback}),
    )


def _named(addresses: list[str], found: Sequence[Listener], port: int) -> str:
    """``0.0.0.0, :: (dockerd)``: the addresses, then who holds them when known."""
    procs = sorted({x.process for x in found if x.port == port and x.process})
    return ", ".join(addresses) + (f" ({', '.join(procs)})" if procs else "")


def plain_port_finding(found: Sequence[Listener], port: int = DOCKER_PLAIN_PORT) -> Finding:
    """Is anything listening on Docker's plain-HTTP port?"""
    public, local = _split(found, port)
    name, fix = (
        "plain-port",
        (
            f"remove tcp://…:{port} from dockerd's hosts (daemon.json or the docker.service -H "
            "flags; certkit issue-server HOST --install --remove-insecure does) and restart dockerd"
        ),
    )
    if public:
        return Finding(
            name, FAIL, port,
            f"port {port} (Docker's plain-HTTP API port) is listening on "
            f"{_named(public, found, port)}: "
            "whoever reaches it is root on this host",
            fix, tuple(public + local),
        )  # fmt: skip
    if local:
        return Finding(
            name, WARN, port,
            f"port {port} (Docker's plain-HTTP API port) is listening on "
            f"{_named(local, found, port)}: "
            "every local user can drive dockerd (root) through it",
            fix, tuple(local),
        )  # fmt: skip
    return Finding(name, PASS, port, f"nothing listens on port {port} (Docker's plain-HTTP port)")


def tls_port_finding(found: Sequence[Listener], fw: Exposure, port: int) -> Finding:
    """Who can reach the TLS port: everyone (WARN), some sources (PASS), nobody (WARN)."""
    name = "tls-port-exposure"
    public, local = _split(found, port)
    if not public:
        if local:
            return Finding(name, PASS, port, f"port {port} listens on loopback only", "",
                           tuple(local))  # fmt: skip
        return Finding(
            name, SKIP, port, f"nothing listens on port {port}",
            "is dockerd running with its TLS host? (systemctl status docker)",
        )  # fmt: skip
    if fw.state is None:
        return Finding(
            name, SKIP, port, f"port {port} listens on {', '.join(public)}, but the firewall "
            "was not read", "run certkit doctor as root to see who can reach it", tuple(public),
        )  # fmt: skip
    manager, sources = fw.state.manager, fw.sources(port)
    where = tuple(public)
    if manager == "none":
        return Finding(
            name, WARN, port,
            f"port {port}/tcp is open to every network: it listens on "
            f"{_named(public, found, port)} and no host firewall is active (ufw, firewalld, "
            "nftables checked)",
            f"limit it to your clients: activate ufw or firewalld, then run {ADVICE}",
            where, manager, (ANY,),
        )  # fmt: skip
    if ANY in sources:
        return Finding(
            name, WARN, port,
            f"port {port}/tcp is open to every network: {manager} allows it from anywhere",
            f"allow your clients only: run {ADVICE}, then remove {manager}'s rule that "
            f"allows {port} from anywhere",
            where, manager, (ANY,),
        )  # fmt: skip
    if sources:
        return Finding(
            name, PASS, port,
            f"port {port}/tcp is reachable only from {', '.join(sources)} ({manager})",
            "", where, manager, tuple(sources),
        )  # fmt: skip
    return Finding(
        name, WARN, port, f"port {port}/tcp is blocked by {manager}: no client can reach dockerd",
        f"open it to your clients: {ADVICE}", where, manager,
    )  # fmt: skip


def findings(
    tls_ports: Iterable[int] = (DOCKER_TLS_PORT,),
    plain_port: int | None = DOCKER_PLAIN_PORT,
    fw: Exposure | None = None,
    found: Sequence[Listener] | None = None,
) -> list[Finding]:
    """This machine's exposure findings: the plain port (None: not checked), then each
    TLS port (the firewall is read only for those)."""
    ports = sorted(set(tls_ports) - {plain_port})
    found = with_processes(listeners(), [*ports, plain_port or 0]) if found is None else found
    out = [plain_port_finding(found, plain_port)] if plain_port else []
    if ports:
        fw = read_exposure() if fw is None else fw
        out += [tls_port_finding(found, fw, p) for p in ports]
    return [
        replace(f, processes=tuple(sorted({x.process for x in found if x.port == f.port} - {""})))
        for f in out
    ]


def configured_tls_ports(files_: HostFiles) -> list[int]:
    """The TCP ports dockerd is configured to serve other than the plain one (-H flags and
    daemon.json ``hosts``); Docker's TLS port when none is."""
    from .plan import tcp_ports  # the install planner's reading of dockerd's hosts

    return [p for p in tcp_ports(files_) if p != DOCKER_PLAIN_PORT] or [DOCKER_TLS_PORT]


def is_this_machine(host: str) -> bool:
    """Does ``host`` name this machine (loopback, or an address bound to one of its
    interfaces)?  A socket binds only to a local address: that is the test."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    for family, _, _, _, addr in infos:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((addr[0], 0))
            except OSError:
                continue
            return True
    return False
