"""What a client sees while a server renewal restarts dockerd (issue 29).

:func:`poll_during` sends ``GET /version`` over mutual TLS every ``interval``
seconds from a background thread while the caller runs the renewal, and counts
what went wrong: a refused or reset connection is a failed request, a slow
answer only a pause.  No certkit import: it measures from the client's side.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PollResult:
    """Requests sent during the measured window: how many, how many failed, the pauses."""

    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the distinct reasons, first seen first
    longest: float = 0.0  # the longest time one request took to answer (or fail), in seconds
    longest_gap: float = 0.0  # the longest time between two successful answers

    def to_json(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "errors": self.errors,
            "longest_request_s": round(self.longest, 3),
            "longest_gap_s": round(self.longest_gap, 3),
        }


def tls_client(tls_dir: Path) -> ssl.SSLContext:
    """A client context from a docker context's ``ca.pem``, ``cert.pem``, ``key.pem``."""
    ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
    ctx.check_hostname = False  # the lab's address is in the certificate; not what is measured
    ctx.load_cert_chain(str(tls_dir / "cert.pem"), str(tls_dir / "key.pem"))
    return ctx


def version_request(address: str, port: int, ctx: ssl.SSLContext, timeout: float) -> None:
    """One ``GET /version`` over TLS on a new connection (as ``docker version`` makes);
    raises OSError/ssl.SSLError, or RuntimeError for an answer other than 200."""
    with (
        socket.create_connection((address, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        tls.sendall(
            f"GET /version HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
        )
        head = tls.recv(64)
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"answer {head[:20]!r}")


@contextmanager
def poll_during(request: Callable[[], None], interval: float = 0.05) -> Iterator[PollResult]:
    """Run ``request`` every ``interval`` seconds until the ``with`` block ends; the
    :class:`PollResult` is complete once the block has exited."""
    result = PollResult()
    stop = threading.Event()

    def loop() -> None:
        last_ok = time.monotonic()
        while not stop.is_set():
            start = time.monotonic()
            try:
                request()
                now = time.monotonic()
                result.longest_gap = max(result.longest_gap, now - last_ok)
                last_ok = now
            except (OSError, ssl.SSLError, RuntimeError) as e:
                result.failed += 1
                why = " ".join((str(e) or type(e).__name__).split())[:120]
                if why not in result.errors:
                    result.errors.append(why)
            took = time.monotonic() - start
            result.sent += 1
            result.longest = max(result.longest, took)
            stop.wait(max(0.0, interval - took))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        time.sleep(interval * 4)  # a few requests after the command returned
        stop.set()
        thread.join(60)
