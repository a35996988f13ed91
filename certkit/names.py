"""Host names, IP addresses, ports and ``tcp://`` endpoints: parsed and checked in one place.

Every command that takes a host (``issue-server``, ``client-context``,
``ci export``, ``verify``) goes through these functions, so a name is
normalised the same way everywhere (lower case, IDN to A-labels, canonical
IP text) and compares equal to the names in a certificate.  Nothing here
imports cryptography: parsing stays cheap for the CLI.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .defaults import DOCKER_TLS_PORT as DOCKER_TLS_PORT  # re-exported: Docker's TLS port
from .errors import UsageError

DOCKER_PLAIN_PORT = 2375  # Docker's port for unencrypted TCP (deprecated)
CN_MAX = 64  # RFC 5280's upper bound for a common name


@dataclass(frozen=True)
class SubjectNames:
    """The DNS names and IP addresses a server certificate is valid for."""

    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()

    def all(self) -> list[str]:
        return [*self.dns, *self.ips]


def _to_a_label(label: str) -> str:
    if label.isascii():
        return label
    import idna

    try:
        return idna.encode(label).decode()
    except idna.IDNAError as e:
        raise UsageError(f"{label!r} is not a valid internationalized name: {e}.") from None


def _check_a_label(original: str, label: str) -> None:
    """Refuse an ``xn--`` label that is not valid Punycode (clients could not match it)."""
    if not label.startswith("xn--"):
        return
    import idna

    try:
        idna.decode(label)
    except (idna.IDNAError, UnicodeError):
        raise UsageError(
            f"{original!r} has {label!r}, which is not a valid internationalized label."
        ) from None


def normalize_dns_name(name: str) -> str:
    """Validate a DNS name (IDN to A-labels, wildcard only as the whole leftmost label)."""
    original = name
    name = name.strip().rstrip(".").lower()
    if not name or any(c.isspace() for c in original.strip()):
        raise UsageError(f"{original!r} is not a valid host name (empty or contains spaces).")
    labels = name.split(".")
    out: list[str] = []
    for i, label in enumerate(labels):
        if label == "":
            raise UsageError(f"{original!r} is not a valid host name: it has an empty label.")
        if "*" in label:
            if label != "*" or i != 0:
                raise UsageError(
                    f"{original!r} has '*' in the wrong place: a wildcard must be the whole "
                    "leftmost label, as in *.example.com."
                )
            if len(labels) < 3:
                raise UsageError(
                    f"{original!r} is too broad: a wildcard needs at least two labels after it."
                )
            out.append(label)
            continue
        a_label = _to_a_label(label)
        if len(a_label) > 63:
            raise UsageError(f"{original!r} has a label longer than 63 characters.")
        if not all(c.isalnum() or c in "-_" for c in a_label) or "-" in (a_label[0], a_label[-1]):
            raise UsageError(
                f"{original!r} is not a valid host name: use letters, digits, '_' and '-' "
                "('-' not at the start or end of a label)."
            )
        _check_a_label(original, a_label)
        out.append(a_label)
    if out[-1].isdigit():
        # 1.2.3 or 10.0.0.1. : a mistyped IP address, never a real host name.
        raise UsageError(f"{original!r} is neither a valid IP address nor a host name.")
    result = ".".join(out)
    if len(result) > 253:
        raise UsageError(f"{original!r} is longer than 253 characters.")
    return result


def looks_like_ip(value: str) -> bool:
    v = value.strip().strip("[]")
    if ":" in v:
        return True
    return all(part.isdigit() for part in v.split(".")) and v.count(".") == 3


def normalize_ip(value: str) -> str:
    """The canonical text of an IP address for a SAN; UsageError for anything else."""
    text = value.strip().strip("[]")
    if "%" in text:
        bare = ip_or_none(text.split("%")[0])
        fix = f"use {bare}" if bare is not None else "give the address alone"
        raise UsageError(
            f"{value!r} has an IPv6 zone ('%...'), which a certificate cannot hold: {fix}."
        )
    if "/" in text or "://" in text or text.count(":") == 1:
        raise UsageError(
            f"{value!r} is not a host name or IP address: give the name or address "
            "alone, without a scheme, port or prefix length."
        )
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError(f"{value!r} is not a valid IP address.") from None


def parse_names(values: list[str]) -> SubjectNames:
    """Sort host names and IP addresses into :class:`SubjectNames`, validating each.

    Duplicates are dropped, order is kept: the first name is the primary one.
    """
    dns: list[str] = []
    ips: list[str] = []
    for value in values:
        if looks_like_ip(value):
            ip = normalize_ip(value)
            if ip not in ips:
                ips.append(ip)
        else:
            name = normalize_dns_name(value)
            if name not in dns:
                dns.append(name)
    return SubjectNames(tuple(dns), tuple(ips))


# ---------------------------------------------------------------- endpoints


def format_host(host: str, port: int) -> str:
    """``tcp://HOST:PORT`` for a context endpoint; IPv6 addresses are bracketed.

    >>> format_host("::1", 2376)
    'tcp://[::1]:2376'
    """
    check_port(port)
    bare = host.strip().strip("[]")
    if "*" in bare or "/" in bare or "@" in bare:
        raise UsageError(f"{host!r} is not a host name: give only the name, as in docker1.lan.")
    # The one rule for a host: what a certificate can name (no IPv6 zone, no port).
    name = parse_names([bare]).all()[0]
    ip = ip_or_none(name)
    return f"tcp://[{ip}]:{port}" if ip is not None and ip.version == 6 else f"tcp://{name}:{port}"


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise UsageError(
            f"Port {port} is out of range: use 1-65535 (Docker's TLS port is {DOCKER_TLS_PORT})."
        )
    return port


def parse_endpoint(value: str, default_port: int = DOCKER_TLS_PORT) -> tuple[str, int]:
    """Split ``HOST``, ``HOST:PORT``, ``tcp://HOST[:PORT]`` or ``[IPv6]:PORT`` into (host, port).

    The host is validated and normalised (lower case, IDN to A-labels), so it
    compares equal to the names in a certificate.

    >>> parse_endpoint("tcp://Docker1.example.com:2376")
    ('docker1.example.com', 2376)
    """
    text = value.strip()
    for scheme in ("tcp://", "https://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
    text = text.rstrip("/")
    port = default_port
    if text.startswith("["):  # [IPv6] or [IPv6]:port
        host, _, rest = text[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"), value)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, value)
    else:
        host = text  # a name, an IPv4 address or a bare IPv6 address
    if not host or "/" in host or "*" in host:
        raise UsageError(
            f"{value!r} is not a Docker host: give HOST, HOST:PORT or tcp://HOST:PORT."
        )
    names = parse_names([host])
    return names.all()[0], check_port(port)


def _port(text: str, original: str) -> int:
    if not text.isdigit():
        raise UsageError(f"{original!r} has an invalid port; use a number from 1 to 65535.")
    return int(text)


def ip_or_none(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``value`` as an IP address, or None when it is a name."""
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def name_covered(host: str, sans: list[str]) -> bool:
    """Does a certificate with these SANs cover ``host`` (RFC 6125, wildcard = one label)?"""
    target = host.strip("[]")
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        ip = None
    if ip is not None:
        return any(ip_or_none(s) == ip for s in sans)
    name = target.rstrip(".").lower()
    if not name.isascii():
        import idna

        try:
            name = idna.encode(name).decode()
        except idna.IDNAError:
            return False
    for san in sans:
        s = san.lower()
        if s == name:
            return True
        first, _, rest = name.partition(".")
        if s.startswith("*.") and first and rest == s[2:] and "." in rest:
            return True
    return False


def common_name_for(name: str) -> str:
    """The name itself, or its first label cut to 64 characters when longer (a CN's limit).

    Clients match the SAN, never the CN, so the cut loses nothing.
    """
    return name if len(name) <= CN_MAX else name.split(".", 1)[0][:CN_MAX]


# ---------------------------------------------------------------- listen addresses


def has_control(text: str) -> bool:
    """True when ``text`` holds a control character (a newline, an escape, NUL...)."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def tcp_host(listen: str, port: int) -> str:
    """``tcp://LISTEN:PORT``, with an IPv6 address in brackets."""
    addr = listen.strip("[]")
    if ":" in addr:
        return f"tcp://[{addr}]:{port}"
    return f"tcp://{addr}:{port}"


def check_listen(listen: str, port: int) -> str:
    """Validate ``--listen`` (an IP address or host name) and ``--port``; the normalized address."""
    check_port(port)
    addr = listen.strip().strip("[]")
    ip = ip_or_none(addr)
    if ip is not None and "%" in addr:
        raise UsageError(
            f"--listen {listen!r} has an IPv6 zone ('%...'), which dockerd's tcp:// address "
            f"cannot hold: use {str(ip).split('%')[0]} or ::."
        )
    if ip is not None and not has_control(listen):
        return str(ip)
    if has_control(listen) or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", addr):
        raise UsageError(
            f"--listen {listen!r} is not an IP address or host name: use e.g. 0.0.0.0 "
            "(every IPv4 address), :: or 10.0.0.5."
        )
    return addr
