"""The TLS client ``certkit verify`` talks through: Python's :mod:`ssl` and raw HTTP/1.1.

No docker SDK and no ``requests``, so ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` cannot swap the CA under our feet (facts doc section 3)
and the CA given is the only one trusted.  :func:`probe` is the one place
that decides whether a server refused a connection: only a TLS alert from the
server already authenticated counts.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

MAX_RESPONSE = 1 << 20  # /_ping and /version answers are tiny
REFUSAL_WAIT = 2.0  # seconds a refusal may take to arrive after the handshake


def tls_context(
    ca: Path | None, cert: Path | None = None, key: Path | None = None, check_name: bool = True
) -> ssl.SSLContext:
    """A client context as strict as Python 3.13's default; ``ca=None`` verifies nothing."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(ca))  # this CA only, never the system store
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        ctx.check_hostname = check_name
    if cert is not None:
        try:
            # An empty password: an encrypted key fails here instead of OpenSSL
            # prompting on the terminal (which would hang a cron job).
            ctx.load_cert_chain(str(cert), str(key) if key else None, password="")
        except (ssl.SSLError, OSError) as e:
            raise UsageError(
                f"Cannot load the client certificate {cert} with key {key} ({why(e)}): "
                "they must be PEM files that belong together, the key unencrypted."
            ) from None
    return ctx


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def _read_all(sock: socket.socket) -> bytes:
    """Read until the server closes, at most :data:`MAX_RESPONSE` bytes."""
    data = b""
    while len(data) < MAX_RESPONSE:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def parse_response(data: bytes) -> Response:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP response")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return Response(int(parts[1]), headers, body)


def request(sock: socket.socket, host: str, path: str) -> Response:
    """One GET with ``Connection: close``; raises ValueError on a non-HTTP answer."""
    authority = f"[{host}]" if ":" in host else host
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: certkit-verify\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    return parse_response(_read_all(sock))


def server_hostname(host: str) -> str:
    return host.strip("[]")


@dataclass
class Session:
    """What one TLS connection learnt: version, server certificate, HTTP answers."""

    version: str | None = None
    peer_der: bytes | None = None
    responses: dict[str, Response] = field(default_factory=dict)


def open_session(
    host: str, port: int, ctx: ssl.SSLContext, timeout: float, paths: tuple[str, ...] = ()
) -> Session:
    """Handshake, then GET each path on its own connection; errors propagate."""
    out = Session()
    for i, path in enumerate(paths or ("",)):
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=server_hostname(host)) as s,
        ):
            if i == 0:
                out.version = s.version()
                out.peer_der = s.getpeercert(binary_form=True)
            if path:
                out.responses[path] = request(s, host, path)
    return out


def why(e: BaseException) -> str:
    """A short reason for a TLS or socket failure."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return str(e.verify_message or e.reason or e)
    if isinstance(e, ssl.SSLError):
        return str(e.reason or e).replace("_", " ").lower()
    if isinstance(e, TimeoutError):
        return "no answer before the timeout"
    if isinstance(e, ValueError):
        return "the answer was not HTTP"
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__


def is_alert(e: BaseException) -> bool:
    """A TLS alert the peer sent (bad certificate, certificate required, unknown CA, ...)."""
    closed = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLCertVerificationError)
    return (
        isinstance(e, ssl.SSLError)
        and not isinstance(e, closed)
        and "ALERT" in str(e.reason or "").upper()
    )


def _await_refusal(s: ssl.SSLSocket, wait: float) -> None:
    """Give the server ``wait`` seconds to refuse before the request is sent.

    With TLS 1.3 the client's handshake ends before the server has checked
    its certificate: the refusal comes as the next record.  Sending first
    races it (measured with dockerd 20.10: the request, then an EOF instead
    of the alert), so read first; silence means the server kept the connection.
    """
    timeout = s.gettimeout()
    s.settimeout(wait)
    try:
        data = s.recv(1)
    except TimeoutError:
        data = None  # nothing to say: the server accepted the handshake
    finally:
        s.settimeout(timeout)
    if data is not None:
        raise ValueError("the server spoke before the request" if data else "the server closed")


def probe(
    host: str, port: int, ctx: ssl.SSLContext, expected_der: bytes, timeout: float
) -> tuple[bool | None, str]:
    """Does the authenticated server answer ``/_ping`` here? True, False (refused), None (unknown).

    ``ctx`` verifies the server; it must also present ``expected_der``, the
    certificate already checked.  Only a TLS alert after that (TLS 1.3: the
    alert is encrypted under keys only that server has) is a refusal; an
    alert during the handshake, an EOF or a reset could come from anyone in
    the middle.
    """
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=server_hostname(host)) as s,
        ):
            if s.getpeercert(binary_form=True) != expected_der:
                return None, "another server certificate answered this connection"
            try:
                _await_refusal(s, min(timeout, REFUSAL_WAIT))
                resp = request(s, host, "/_ping")
            except (ssl.SSLError, OSError, ValueError) as e:
                if is_alert(e):
                    return False, f"TLS alert from the verified server: {why(e)}"
                return None, f"the connection ended without a TLS alert ({why(e)}): not proven"
    except ssl.SSLCertVerificationError as e:
        return None, f"the server did not verify on this connection ({why(e)}): not proven"
    except (ssl.SSLError, OSError) as e:
        when = "before the server was authenticated"
        return None, f"the connection failed {when} ({why(e)}): not proven"
    if resp.status == 200:
        return True, "HTTP 200"
    return False, f"the verified server answered HTTP {resp.status}"
