"""Name constraints on a CA: the DNS suffixes and IP networks it may vouch for.

``certkit init-ca --permit corp.example.com --permit 10.0.0.0/8`` puts a
critical NameConstraints extension (RFC 5280 section 4.2.1.10) in the CA
certificate; Go (the docker CLI, dockerd) and OpenSSL refuse any certificate
under it that names a host outside.  A name form with no ``--permit`` gets
no names at all (RFC 5280 would leave it open): with DNS suffixes only, every
IP address is excluded; with networks only, every DNS name is.

certkit applies the same rules before it signs (:func:`check`), so a name
outside is refused with one sentence instead of making a certificate every
client rejects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from cryptography import x509

from .errors import UsageError
from .names import SubjectNames, normalize_dns_name

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_ALL_IPS = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
_FORMS = (x509.DNSName, x509.IPAddress)  # the name forms certkit puts in certificates
_IPS = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def _parse_one(value: str) -> x509.GeneralName:
    text = value.strip()
    if "/" in text or ":" in text or text.replace(".", "").isdigit():
        try:
            return x509.IPAddress(ipaddress.ip_network(text, strict=True))
        except ValueError as e:
            raise UsageError(
                f"--permit {value!r} is not a network: give a CIDR such as 10.0.0.0/8 ({e})."
            ) from None
    if text.startswith("*"):
        raise UsageError(
            f"--permit {value!r}: give the DNS suffix itself (corp.example.com permits it "
            "and every name under it)."
        )
    dot = text.startswith(".")  # ".corp.example.com": only names under it, not itself
    return x509.DNSName(("." if dot else "") + normalize_dns_name(text[1:] if dot else text))


def build(values: Iterable[str]) -> x509.NameConstraints | None:
    """The NameConstraints for ``init-ca --permit VALUE...`` (None for no value)."""
    permitted: list[x509.GeneralName] = []
    for value in values:
        name = _parse_one(value)
        if name not in permitted:
            permitted.append(name)
    if not permitted:
        return None
    excluded: list[x509.GeneralName] = []
    if not any(isinstance(n, x509.IPAddress) for n in permitted):
        excluded += [x509.IPAddress(net) for net in _ALL_IPS]
    if not any(isinstance(n, x509.DNSName) for n in permitted):
        excluded.append(x509.DNSName(""))  # the empty suffix matches every DNS name
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded or None)


def of(cert: x509.Certificate) -> x509.NameConstraints | None:
    """The NameConstraints of a CA certificate, or None."""
    try:
        return cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None


def permitted(cert: x509.Certificate) -> list[str]:
    """What ``ca show`` lists: the permitted DNS suffixes and networks ([]: any name)."""
    nc = of(cert)
    if nc is None:
        return []
    return [str(n.value) for n in nc.permitted_subtrees or [] if isinstance(n, _FORMS)]


def _dns_matches(name: str, constraint: str) -> bool:
    """RFC 5280 / Go / OpenSSL: a suffix on label boundaries; a leading dot excludes itself."""
    constraint = constraint.lower()
    if constraint == "":
        return True
    if constraint.startswith("."):
        return name.endswith(constraint)
    return name == constraint or name.endswith("." + constraint)


def _matches(value: str, constraint: x509.GeneralName) -> bool:
    if isinstance(constraint, x509.DNSName) and not isinstance(_ip(value), _IPS):
        return _dns_matches(value.lower(), constraint.value)
    if isinstance(constraint, x509.IPAddress):
        ip, net = _ip(value), constraint.value
        return ip is not None and isinstance(net, IPNetwork) and ip in net
    return False


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def outside(nc: x509.NameConstraints, names: SubjectNames) -> list[str]:
    """The names that ``nc`` does not allow, in order."""
    bad = []
    for value, form in [(n, x509.DNSName) for n in names.dns] + [
        (n, x509.IPAddress) for n in names.ips
    ]:
        allowed = [c for c in nc.permitted_subtrees or [] if isinstance(c, form)]
        excluded = [c for c in nc.excluded_subtrees or [] if isinstance(c, form)]
        if (allowed and not any(_matches(value, c) for c in allowed)) or any(
            _matches(value, c) for c in excluded
        ):
            bad.append(value)
    return bad


def check(ca_cert: x509.Certificate, names: SubjectNames | None) -> None:
    """UsageError when the CA's name constraints do not allow one of ``names``."""
    nc = of(ca_cert)
    if nc is None or names is None:
        return
    bad = outside(nc, names)
    if bad:
        allowed = ", ".join(permitted(ca_cert)) or "no name"
        raise UsageError(
            f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} outside the names this CA may "
            f"sign for ({allowed}); nothing was signed."
        )
