"""A live audit of a remote Docker endpoint over mutual TLS (``certkit verify``).

Everything here speaks TLS with Python's :mod:`ssl` and raw HTTP/1.1 over the
socket: no docker SDK and no ``requests``, so ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` cannot swap the CA under our feet (docs/design.md, "docker-py")
and the CA given is the only one trusted.

Each check yields one :class:`Check` (PASS, WARN or FAIL).  Checks are kept
independent on purpose: a name mismatch must not hide whether the server
demands client certificates.  But nothing is believed from a server that was
not authenticated: the client certificate is shown only to a server whose
certificate chains to the CA, and the refusal probes (no certificate, a
stranger's certificate) verify the server first (the CA, and the name or the
very certificate already seen) and count only a TLS alert from that server as
a refusal.  A connection that just ends (EOF, reset: what anyone in the middle
can do) proves nothing: a WARN, and the report is not ``ok``.

Who can reach the ports is known only on the host itself: from a client,
verify probes the plain-HTTP port (2375) and FAILs when a Docker API answers
there without TLS; run on the host (HOST is one of its addresses),
:func:`add_exposure` adds the live listeners and the firewall's view
(:mod:`certkit.host.exposure`), as ``certkit doctor`` does.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dockercli, files
from .checks import FAIL, PASS, WARN, Check, Checklist
from .errors import CertkitError, UsageError
from .names import DOCKER_PLAIN_PORT, name_covered, parse_endpoint
from .tlsclient import Session, open_session, probe, request, tls_context, why

if TYPE_CHECKING:
    from .expiry import Dates
    from .host.exposure import Finding

PROBES = ("client-cert-required", "unknown-ca-refused")


@dataclass
class Credentials:
    """The CA bundle and client certificate/key used to talk to the endpoint."""

    ca: Path
    cert: Path
    key: Path
    source: str  # "context NAME" or "files"


@dataclass
class Report(Checklist):
    """The outcome of :func:`verify`: every check, plus what was learnt on the way."""

    host: str
    port: int
    source: str
    checks: list[Check] = field(default_factory=list)
    tls_version: str | None = None
    engine_version: str | None = None
    api_version: str | None = None
    min_api_version: str | None = None  # /version's MinAPIVersion: older clients are refused
    server_names: list[str] = field(default_factory=list)
    server_der: bytes = b""  # the server certificate the first connection saw
    exposure: list[Finding] = field(default_factory=list)  # run on the host: who reaches it

    @property
    def proven(self) -> bool:
        """Did every refusal probe get an authenticated answer? (A WARN there is "not proven".)"""
        return all(c.status != WARN for c in self.checks if c.name in PROBES)

    @property
    def ok(self) -> bool:
        return super().ok and self.proven

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "proven": self.proven,
            "host": self.host,
            "port": self.port,
            "credentials": self.source,
            "tls_version": self.tls_version,
            "engine_version": self.engine_version,
            "api_version": self.api_version,
            "min_api_version": self.min_api_version,
            "server_names": self.server_names,
            "checks": [c.to_json() for c in self.checks],
            "exposure": [f.to_json() for f in self.exposure],
        }


# ---------------------------------------------------------------- inputs


def context_credentials(name: str, docker_config: str | None = None) -> tuple[str, Credentials]:
    """The ``tcp://`` host and TLS files of docker context ``name``."""
    info = dockercli.read_context(name, docker_config)
    return info.host, _context_credentials(info)


def _context_credentials(info: dockercli.ContextInfo) -> Credentials:
    ca, cert, key = (info.tls_file(f) for f in dockercli.TLS_FILES)
    return Credentials(ca, cert, key, f"context {info.name}")


def find_context_for(host: str, port: int, docker_config: str | None = None) -> str | None:
    """The name of the one context whose endpoint is ``tcp://host:port``, if any."""
    found = [
        info.name
        for info in dockercli.list_contexts(docker_config)
        if _endpoint_or_none(info.host) == (host, port)
    ]
    return found[0] if len(found) == 1 else None


def _endpoint_or_none(host: str) -> tuple[str, int] | None:
    try:
        return parse_endpoint(host)
    except UsageError:
        return None


def _check_files(creds: Credentials) -> None:
    fix = (
        "check the --ca, --cert and --key paths"
        if creds.source == "files"
        else f"{creds.source} lacks its TLS files; re-create it with certkit client-context"
    )
    for label, path in (("CA", creds.ca), ("client certificate", creds.cert), ("key", creds.key)):
        try:
            found = path.is_file()
        except OSError as e:  # EACCES: a directory or a link we may not follow
            raise UsageError(f"The {label} file {path} cannot be read ({e.strerror}).") from None
        if not found:
            raise UsageError(f"The {label} file {path} does not exist: {fix}.")


# ---------------------------------------------------------------- names and dates


def _expiry(report: Report, name: str, d: Dates) -> None:
    """One expiry line: the PASS as before, a FAIL/WARN saying which one and the fix."""
    if d.status == PASS:
        date = d.not_after.strftime("%Y-%m-%d %H:%M UTC")
        report.add(
            name, PASS, f"{d.label} is valid for {int(d.days_left)} more days (until {date})"
        )
    else:
        report.add(name, d.status, d.sentence())


def _context_name(creds: Credentials) -> str | None:
    return creds.source.removeprefix("context ") if creds.source.startswith("context ") else None


def _local_dates(report: Report, host: str, creds: Credentials, client_cert: Any) -> Dates:
    """Before connecting: the client certificate, its CA and the server's certificate as the
    store knows it; an expired or expiring one is said first, with the command that fixes it.
    Returns the client's dates (its PASS line keeps its place after the live checks)."""
    from .expiry import ca_dates, client_fix, dates, server_record_dates

    label = "the client certificate"
    client = dates("client", label, client_cert, client_fix(client_cert, _context_name(creds)))
    if client.status != PASS:
        _expiry(report, "client-cert-expiry", client)
    try:
        cas = ca_dates(creds.ca, client_cert)
    except UsageError:
        cas = []  # not PEM: the chain check says so
    for d in cas:
        if d.status != PASS:
            _expiry(report, "ca-expiry", d)
    server = server_record_dates(host)
    if server is not None and server.status == FAIL:
        _expiry(report, "server-cert-expiry", server)
    return client


@contextlib.contextmanager
def _stranger_credentials() -> Iterator[tuple[Path, Path]]:
    """A client certificate and key from a throwaway CA no server should trust.

    Made in memory, written to a private temp dir only because
    :meth:`ssl.SSLContext.load_cert_chain` reads files; removed afterwards.
    """
    from . import certs

    ca_key = certs.generate_key()
    ca_cert = certs.make_ca(ca_key, "certkit verify throwaway CA", days=1)
    key = certs.generate_key()
    cert = certs.make_leaf(ca_cert, ca_key, key.public_key(), "client", "stranger", days=1)
    with tempfile.TemporaryDirectory(prefix="certkit-verify-") as d:
        cert_path, key_path = Path(d) / "cert.pem", Path(d) / "key.pem"
        files.atomic_write_many(
            [
                (cert_path, certs.cert_pem(cert), files.PUBLIC_FILE),
                (key_path, certs.key_pem(key), files.PRIVATE_FILE),
            ]
        )
        yield cert_path, key_path


def _load_cert_file(path: Path) -> Any:
    from . import certs

    try:
        return certs.load_cert(path.read_bytes())
    except (OSError, UsageError):
        raise UsageError(f"{path} is not a readable PEM certificate.") from None


def _authority(host: str, port: int) -> str:
    """``HOST:PORT``, an IPv6 address in brackets (``[::1]:2376``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect_hint(e: BaseException, host: str, port: int) -> str:
    reason = why(e)
    if "wrong version number" in reason or "record layer" in reason or "packet length" in reason:
        where = _authority(host, port)
        return f"{reason}: {where} does not speak TLS (a plain-HTTP port such as 2375?)"
    if "unsupported protocol" in reason or "protocol version" in reason:
        return f"{reason}: the server offers nothing newer than TLS 1.1; TLS 1.2 is the minimum"
    if isinstance(e, ConnectionRefusedError):
        return f"{reason}: is dockerd listening on tcp://{_authority(host, port)}, the port open?"
    return reason


# ---------------------------------------------------------------- the audit


def _check_chain(report: Report, host: str, port: int, creds: Credentials, timeout: float) -> bool:
    # No client certificate: the client verifies the server before it would send one,
    # so any failure other than a verification error still means the chain verified.
    try:
        open_session(host, port, tls_context(creds.ca, check_name=False), timeout)
    except ssl.SSLCertVerificationError as e:
        report.add(
            "chain",
            FAIL,
            f"the server certificate does not verify against {creds.ca} under strict X.509 "
            f"rules: {why(e)}",
        )
        return False
    except (ssl.SSLError, OSError):
        pass
    report.add("chain", PASS, f"the server certificate chains to {creds.ca} (strict X.509)")
    return True


def _check_name(report: Report, host: str) -> bool:
    names = report.server_names
    target = host.strip("[]")
    if name_covered(target, names):
        report.add("name", PASS, f"the server certificate covers {target}")
        return True
    covered = ", ".join(names) if names else "no name at all (it has no subjectAltName)"
    report.add(
        "name",
        FAIL,
        f"the server certificate is valid for {covered}, not {target}; connect with one of "
        f"those names or reissue it with {target} among its names (--san {target})",
    )
    return False


def _check_client_session(
    report: Report, host: str, port: int, ctx: ssl.SSLContext, creds: Credentials, timeout: float
) -> None:
    try:
        session = open_session(host, port, ctx, timeout, ("/_ping", "/version"))
    except (ssl.SSLError, OSError, ValueError) as e:
        report.add(
            "handshake",
            FAIL,
            f"the TLS connection with the client certificate {creds.cert} failed: {why(e)}",
        )
        report.add("api", FAIL, "/_ping and /version not reached: the TLS connection failed")
        return
    strict = ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    report.add(
        "handshake",
        PASS,
        f"TLS handshake with the client certificate ({session.version})"
        + ("" if strict else "; server not fully verified, see above"),
    )
    ping, version = session.responses["/_ping"], session.responses["/version"]
    if ping.status != 200:
        report.add("api", FAIL, f"/_ping answered HTTP {ping.status}, not 200")
        return
    try:
        info = json.loads(version.body)
        report.engine_version = str(info["Version"])
        report.api_version = str(info.get("ApiVersion", "?"))
        report.min_api_version = str(info["MinAPIVersion"]) if "MinAPIVersion" in info else None
    except (ValueError, KeyError, TypeError):
        report.add("api", FAIL, f"/_ping is OK but /version answered HTTP {version.status}")
        return
    report.add(
        "api",
        PASS,
        f"/_ping OK; Docker Engine {report.engine_version} (API {report.api_version})",
    )
    floor = api_floor_problem(report.min_api_version, docker_cli_api_version())
    if floor:
        report.add("api-version", FAIL, floor)


def docker_cli_api_version() -> str | None:
    """The API version this machine's docker CLI speaks (``docker version``'s client half,
    read without reaching any daemon), or None without a docker CLI."""
    import shutil
    import subprocess

    docker = shutil.which("docker")
    if docker is None:
        return None
    env = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": "unix:///nonexistent/certkit.sock"}
    try:
        done = subprocess.run(
            [docker, "version", "--format", "{{.Client.APIVersion}}"],
            capture_output=True, text=True, timeout=10, env=env,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = done.stdout.strip().splitlines()
    return found[0] if found and _api_tuple(found[0]) else None


def _api_tuple(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(x) for x in version.split("."))
    except ValueError:
        return None


def api_floor_problem(min_api: str | None, client_api: str | None) -> str | None:
    """The sentence when the server's minimum API version is above the client's, else None.

    Docker 29.0-29.2 refused API versions below 1.44 (a docker CLI 20.10 speaks 1.41:
    "client version 1.41 is too old"); 29.3 lowered the floor to 1.40.
    """
    low, have = _api_tuple(min_api or ""), _api_tuple(client_api or "")
    if low is None or have is None or have >= low:
        return None
    return (
        f"the server refuses API versions below {min_api} (MinAPIVersion) and this docker CLI "
        f'speaks {client_api}: every docker command fails with "client version {client_api} '
        f'is too old"; upgrade the docker CLI, or lower the floor on the host '
        f"(DOCKER_MIN_API_VERSION={client_api} in dockerd's environment; Docker 29.3+ accepts 1.40)"
    )


def _probe_context(
    creds: Credentials, name_ok: bool, version: str | None, cert: Path | None, key: Path | None
) -> ssl.SSLContext:
    """Verify the server (CA, name when it matched) at the version first negotiated, or newer."""
    ctx = tls_context(creds.ca, cert, key, check_name=name_ok)
    if version == "TLSv1.3":  # no downgrade to TLS 1.2, whose handshake alerts are not signed
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def _check_refusals(
    report: Report, host: str, port: int, creds: Credentials, name_ok: bool, timeout: float
) -> None:
    version, expected = report.tls_version, report.server_der
    _add_refusal(
        report,
        "client-cert-required",
        probe(host, port, _probe_context(creds, name_ok, version, None, None), expected, timeout),
        refused="a client without a certificate is refused",
        accepted="the server answered /_ping WITHOUT a client certificate: anyone who reaches "
        "this port controls Docker; set tlsverify: true and tlscacert in daemon.json "
        "(certkit issue-server HOST --install does) and restart dockerd",
    )
    with _stranger_credentials() as (cert, key):
        ctx = _probe_context(creds, name_ok, version, cert, key)
        answer = probe(host, port, ctx, expected, timeout)
    _add_refusal(
        report,
        "unknown-ca-refused",
        answer,
        refused="a client certificate from another CA is refused",
        accepted="the server accepted a client certificate from a throwaway CA: it does not "
        "check client certificates against your CA only (tlsverify off, or tlscacert trusts "
        "more)",
    )


def _add_refusal(
    report: Report,
    name: str,
    answer: tuple[bool | None, str],
    *,
    refused: str,
    accepted: str,
) -> None:
    """PASS when the server refused the connection, FAIL when it accepted, WARN when unclear."""
    ok, reason = answer
    if ok:
        report.add(name, FAIL, accepted)
    elif ok is None:
        report.add(name, WARN, f"not proven, no authenticated answer: {reason}")
    else:
        report.add(name, PASS, f"{refused} ({reason})")


def _check_insecure_port(report: Report, host: str, port: int, timeout: float) -> None:
    name = "plain-http-closed"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            resp = request(s, host, "/_ping")
    except ConnectionRefusedError:
        report.add(name, PASS, f"port {port} is closed")
        return
    except TimeoutError:
        report.add(name, PASS, f"port {port} does not answer")
        return
    except (OSError, ValueError) as e:
        report.add(name, PASS, f"port {port} does not serve HTTP ({why(e)})")
        return
    if "api-version" in resp.headers or (resp.status == 200 and resp.body.strip() == b"OK"):
        report.add(
            name,
            FAIL,
            f"port {port} serves the Docker API in plain HTTP, without any certificate: "
            f"anyone who reaches it is root on {host}; remove tcp://...:{port} from the "
            "daemon's hosts (certkit doctor shows where it is set) and restart dockerd",
        )
    elif b"HTTPS server" in resp.body:
        report.add(name, PASS, f"port {port} speaks TLS only (plain HTTP is refused)")
    else:
        report.add(name, PASS, f"port {port} answers HTTP {resp.status}, but not as a Docker API")


def _first_session(
    host: str, port: int, creds: Credentials, timeout: float
) -> tuple[Session | None, BaseException | None]:
    """The first look at the server: without a client certificate, so nothing is shown to it.

    A TLS 1.2 server that demands a certificate ends that handshake; the
    retry sends the client certificate only after the server's chain verified.
    """
    error: BaseException | None = None
    for ctx in (tls_context(None), tls_context(creds.ca, creds.cert, creds.key, check_name=False)):
        try:
            return open_session(host, port, ctx, timeout), None
        except (ssl.SSLError, OSError) as e:
            error = error or e
            if isinstance(e, (TimeoutError, ConnectionRefusedError, socket.gaierror)):
                break  # the retry would fail the same way
    return None, error


def verify(
    host: str,
    port: int,
    creds: Credentials,
    timeout: float = 10.0,
    insecure_port: int | None = DOCKER_PLAIN_PORT,
) -> Report:
    """Audit the Docker endpoint ``host:port`` with ``creds``; one :class:`Check` per line.

    Never raises for what the endpoint does (that is a FAIL line); raises
    :class:`UsageError` for unusable local input (missing files, a key that
    does not match its certificate).  ``insecure_port=None`` skips the
    plain-HTTP probe.

    >>> report = verify("docker1.example.com", 2376, creds)  # doctest: +SKIP
    >>> report.ok, [c.status for c in report.checks]  # doctest: +SKIP
    """
    if timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout:g}.")
    _check_files(creds)
    tls_context(None, creds.cert, creds.key)  # fails early on a bad cert/key pair
    client_cert = _load_cert_file(creds.cert)
    report = Report(host, port, creds.source)
    client = _local_dates(report, host, creds, client_cert)
    first, error = _first_session(host, port, creds, timeout)
    if first is None or first.peer_der is None:
        assert error is not None
        report.add(
            "connect",
            FAIL,
            f"no TLS 1.2+ connection to {_authority(host, port)}: "
            + _connect_hint(error, host, port),
        )
    else:
        from cryptography import x509

        from . import certs

        server_cert = x509.load_der_x509_certificate(first.peer_der)
        report.server_names = certs.san_names(server_cert)
        report.tls_version, report.server_der = first.version, first.peer_der
        report.add("tls-version", PASS, f"{first.version} negotiated (TLS 1.2 is the minimum)")
        chain_ok = _check_chain(report, host, port, creds, timeout)
        name_ok = _check_name(report, host)
        if chain_ok:  # the client certificate goes only to a server that chains to the CA
            ctx = tls_context(creds.ca, creds.cert, creds.key, check_name=name_ok)
            _check_client_session(report, host, port, ctx, creds, timeout)
        else:
            report.add(
                "handshake",
                FAIL,
                "not attempted: the client certificate is shown "
                "only to a server whose certificate chains to the CA",
            )
            report.add("api", FAIL, "/_ping and /version not reached: the server is not verified")
        _check_refusals(report, host, port, creds, name_ok, timeout)
        _served_expiry(report, host, server_cert)
    if client.status == PASS:
        _expiry(report, "client-cert-expiry", client)
    if insecure_port:
        _check_insecure_port(report, host, insecure_port, timeout)
    return report


def _served_expiry(report: Report, host: str, server_cert: Any) -> None:
    """The served certificate's dates, unless the inventory's line already said the same."""
    from . import certs
    from .expiry import dates, server_fix

    said = next((c for c in report.checks if c.name == "server-cert-expiry"), None)
    if said is not None and f"serial {certs.serial_hex(server_cert)}," in said.message:
        return
    label = "the server certificate" + (" dockerd serves" if said is not None else "")
    fix = server_fix(server_cert, host.strip("[]"))
    _expiry(report, "server-cert-expiry", dates("server", label, server_cert, fix))


def add_exposure(report: Report, insecure_port: int | None) -> bool:
    """When ``report``'s host is this machine: add who can reach its ports (the live
    listeners and the firewall, as ``certkit doctor`` reads them).  False elsewhere: from
    a client, only the plain-HTTP probe can tell anything."""
    from .host import exposure

    if not exposure.is_this_machine(report.host):
        return False
    try:
        report.exposure = exposure.findings([report.port], insecure_port)
    except CertkitError as e:  # the read-only firewall probe could not run
        report.add("tls-port-exposure", WARN, f"the firewall could not be read: {e.message}")
        return True
    report.checks += [f.check() for f in report.exposure]
    return True


def resolve(
    endpoint: str | None,
    context: str | None = None,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    docker_config: str | None = None,
) -> tuple[str, int, Credentials]:
    """Turn the CLI's inputs into (host, port, credentials).

    ``--context`` gives both the endpoint and the files (an explicit
    ``endpoint`` overrides the context's host); ``--ca/--cert/--key`` give the
    files; with neither, the one context pointing at ``endpoint`` is used.
    """
    files_given = [x for x in (ca, cert, key) if x]
    if context and files_given:
        raise UsageError("Give either --context or --ca/--cert/--key, not both.")
    if files_given and len(files_given) != 3:
        raise UsageError("--ca, --cert and --key go together: give all three.")
    if context:
        ctx_host, creds = context_credentials(context, docker_config)
        host, port = parse_endpoint(endpoint or ctx_host)
        return host, port, creds
    if endpoint is None:
        raise UsageError(
            "Give HOST[:PORT] or --context NAME; example: certkit verify docker1:2376."
        )
    host, port = parse_endpoint(endpoint)
    if files_given:
        assert ca and cert and key
        return host, port, Credentials(Path(ca), Path(cert), Path(key), "files")
    found = find_context_for(host, port, docker_config)
    if found is None:
        raise UsageError(
            f"No docker context points at tcp://{_authority(host, port)}; give --context NAME or "
            "--ca FILE --cert FILE --key FILE."
        )
    return host, port, context_credentials(found, docker_config)[1]
