"""Reaching OpenBao: addresses, token and CA from the standard variables, one node after another.

``BAO_ADDR`` (else ``VAULT_ADDR``) may hold several addresses separated by commas: a
request goes to the first, and to the next when a node does not answer, is sealed, or
is a standby that cannot reach the active node (a leader election under way).  Rounds
over the list repeat until :data:`RETRY_SECONDS` have passed.  Every failure is one
sentence: :class:`~certkit.errors.UsageError` (exit 2) for bad settings,
:class:`~certkit.errors.OperationError` (exit 1) when OpenBao refuses or cannot be reached.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import OperationError, UsageError

ADDR_VARS = ("BAO_ADDR", "VAULT_ADDR")
TOKEN_VARS = ("BAO_TOKEN", "VAULT_TOKEN")
CACERT_VARS = ("BAO_CACERT", "VAULT_CACERT")
#: How long a request keeps trying the nodes in turn (an election takes ~10 s).
RETRY_SECONDS = float(os.environ.get("CERTKIT_BAO_RETRY_SECONDS", "30"))
TIMEOUT_SECONDS = 10


def _first_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def parse_addresses(text: str) -> tuple[str, ...]:
    """``https://a:8200,https://b:8200`` as a tuple of base URLs; UsageError when one is bad."""
    out = []
    for raw in text.split(","):
        addr = raw.strip().rstrip("/")
        if not addr:
            continue
        parts = urlsplit(addr)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise UsageError(
                f"{addr!r} is not an OpenBao address: use http(s)://HOST:PORT "
                "(several separated by commas)."
            )
        out.append(addr)
    if not out:
        raise UsageError("No OpenBao address given: set BAO_ADDR or pass --issuer URL.")
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    """Where OpenBao is and how to talk to it."""

    addresses: tuple[str, ...]
    token: str | None = None
    cacert: str | None = None

    def to_json(self) -> dict[str, Any]:  # never the token
        return {"addresses": list(self.addresses), "cacert": self.cacert}


def settings(
    addr: str | None = None, token: str | None = None, recorded: list[str] | None = None
) -> Settings:
    """Settings from ``addr``/``token`` when given, else ``BAO_*``/``VAULT_*`` variables,
    else the ``recorded`` addresses (those a CA's binding or a login kept)."""
    text = addr or _first_env(ADDR_VARS) or ",".join(recorded or [])
    if not text:
        raise UsageError("No OpenBao address: set BAO_ADDR (or VAULT_ADDR) or pass --issuer URL.")
    cacert = _first_env(CACERT_VARS)
    if cacert is not None and not os.path.isfile(cacert):
        raise UsageError(f"BAO_CACERT names {cacert}, which is not a readable file.")
    return Settings(parse_addresses(text), token or _first_env(TOKEN_VARS), cacert)


class _Retry(Exception):
    """This node cannot serve the request now: try the next one."""


class Bao:
    """A client for the OpenBao HTTP API that fails over between the configured nodes.

    ``cert`` (a client certificate and key file) is presented on every TLS connection:
    the ``cert`` auth method logs in with it.
    """

    def __init__(self, config: Settings, cert: tuple[str, str] | None = None) -> None:
        self.config = config
        self.token = config.token
        self.cert = cert
        self.tried: list[str] = []  # every address a request went to, for tests and reports
        self.retry_seconds = RETRY_SECONDS  # a read-out for list/doctor waits less: it reports
        self._clients: dict[tuple[str, str | None, Any], Any] = {}

    def clone(self) -> Bao:
        """The same settings, token and certificate, with connections of its own (a thread's)."""
        twin = Bao(self.config, self.cert)
        twin.token = self.token
        twin.retry_seconds = self.retry_seconds
        return twin

    def _client(self, addr: str) -> Any:
        """One hvac client (one HTTP session, kept alive) per node, token and certificate."""
        import hvac  # the openbao extra; only commands that talk to OpenBao import it

        key = (addr, self.token, self.cert)
        if key not in self._clients:
            verify: bool | str = self.config.cacert or True
            self._clients[key] = hvac.Client(
                url=addr, token=self.token, verify=verify, cert=self.cert, timeout=TIMEOUT_SECONDS
            )
        return self._clients[key]

    def request(self, method: str, path: str, data: dict[str, Any] | None = None) -> Any:
        """``METHOD /v1/PATH`` on the first node able to answer; the JSON body (or None)."""
        return self._with_failover(lambda client: _call(client, method, path, data), path)

    def read(self, path: str) -> Any:
        return self.request("GET", path)

    def write(self, path: str, data: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, data or {})

    def exists(self, path: str) -> bool:
        """True when ``GET path`` answers; False on 404."""
        try:
            self.read(path)
        except Missing:
            return False
        return True

    def _with_failover(self, call: Callable[[Any], Any], path: str) -> Any:
        deadline = time.monotonic() + self.retry_seconds
        problems: dict[str, str] = {}
        while True:
            for addr in self.config.addresses:
                self.tried.append(addr)
                try:
                    return call(self._client(addr))
                except _Retry as e:
                    problems[addr] = str(e)
            if time.monotonic() >= deadline:
                raise OperationError(
                    f"No OpenBao node could serve {path} ("
                    + "; ".join(f"{a}: {p}" for a, p in problems.items())
                    + "): check that the cluster is up and unsealed, then run the command again."
                )
            time.sleep(0.5)


class Refused(OperationError):
    """OpenBao answered and refused (403, 400...): its own words, in one sentence."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Missing(Refused):
    """404: nothing at that path."""


_RETRY_STATUS = {429, 500, 502, 503}  # sealed, standby without a leader, overloaded


def _call(client: Any, method: str, path: str, data: dict[str, Any] | None) -> Any:
    """One request on one node: the JSON, :class:`_Retry`, or :class:`Refused`."""
    import requests
    from hvac import exceptions

    try:
        kwargs = {"json": data} if data is not None else {}
        response = client.adapter.request(method, f"/v1/{path}", **kwargs)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Retry(_connection_reason(e)) from None
    except requests.exceptions.SSLError as e:  # pragma: no cover - a ConnectionError subclass
        raise _Retry(f"TLS failed ({e})") from None
    except exceptions.VaultError as e:
        status = _status_of(e)
        reason = _one_line(e.errors or [str(e.args[0]) if e.args else type(e).__name__])
        if status in _RETRY_STATUS - {500} or (status == 500 and _leaderless(reason)):
            raise _Retry(reason or f"HTTP {status}") from None
        kind = Missing if status == 404 else Refused
        raise kind(_refusal(method, path, status, reason), status) from None
    return response if isinstance(response, dict) or response is None else None


def _one_line(errors: list[str]) -> str:
    """OpenBao's error list as one line (it nests "1 error occurred:\n\t* ..." lists)."""
    parts = []
    for text in errors:
        for line in str(text).splitlines():
            line = line.strip().lstrip("*").strip()
            if line and not line.endswith("occurred:"):
                parts.append(line.rstrip("."))
    return "; ".join(parts)


def _leaderless(reason: str) -> bool:
    """True for the 500s a standby answers while the cluster has no active node."""
    words = ("not active", "active node", "sealed", "leader", "no route", "forward")
    return any(w in reason.lower() for w in words)


def _status_of(e: Exception) -> int:
    from hvac import exceptions

    codes = {
        exceptions.InvalidRequest: 400, exceptions.Unauthorized: 401, exceptions.Forbidden: 403,
        exceptions.InvalidPath: 404, exceptions.RateLimitExceeded: 429,
        exceptions.InternalServerError: 500, exceptions.VaultNotInitialized: 501,
        exceptions.BadGateway: 502, exceptions.VaultDown: 503,
    }  # fmt: skip
    return codes.get(type(e), 0)


def _connection_reason(e: Exception) -> str:
    text = str(e)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "its TLS certificate is not trusted (set BAO_CACERT to its CA file)"
    if "timed out" in text.lower():
        return "no answer in time"
    return "no answer (connection refused or reset)"


def _refusal(method: str, path: str, status: int, reason: str) -> str:
    what = {
        400: "refused the request",
        401: "refused the login",
        403: "denied it (permission denied: the token or its policy does not allow it)",
        404: "has nothing there",
    }.get(status, f"failed (HTTP {status})")
    detail = f": {reason.rstrip('.')}" if reason and status != 403 else ""
    return f"OpenBao {what} on {method} {path}{detail}."
