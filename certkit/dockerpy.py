"""docker-py (the ``docker`` SDK) through a docker context, without the CA-bundle trap.

requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace the CA that
docker-py's ``TLSConfig(ca_cert=...)`` sets (psf/requests#3829,
docker/docker-py#2433, both open), so ordinary docker-py code fails with
CERTIFICATE_VERIFY_FAILED on the many CI images and corporate machines that
set them.  :func:`docker_client` builds the client the way that works: an
explicit API version (so the constructor does not call the daemon yet), then
``client.api.trust_env = False``, then the API version negotiated with the
daemon as the docker CLI does.

:func:`check` is the docker-py line of ``certkit verify`` and the proof of
``certkit ci bootstrap --check``.  This is the only module that imports the
docker SDK, and only inside its functions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from . import dockercli
from .checks import FAIL, PASS, WARN, Check
from .errors import OperationError, UsageError
from .files import StrPath

#: What the client starts with before negotiating: docker-py's minimum, which every
#: daemon since Docker 1.12 speaks.
PROBE_VERSION = "1.24"
# "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ...", "[Errno 111] Connection
# refused", "timed out": what is left once requests' "Max retries exceeded ..." wrapping is cut.
_REASON = re.compile(r"\[SSL: [A-Z_]+\] [^'\")(]+|\[Errno -?\d+\] [^'\")]+|timed out")


@dataclass(frozen=True)
class Endpoint:
    """Where docker-py connects and with which TLS files (None: no TLS)."""

    base_url: str
    tls: tuple[str, str, str] | None  # (ca.pem, cert.pem, key.pem)
    source: str  # "context NAME"


def context_endpoint(context: str | None = None, docker_config: StrPath | None = None) -> Endpoint:
    """The endpoint of docker context ``context`` (default: the one the docker CLI selects)."""
    name = context or dockercli.selected_context(docker_config)
    if not name or name == "default":
        raise UsageError(
            "No docker context is selected; pass the context name, e.g. "
            'docker_client("docker1"), or select one with `docker context use NAME`.'
        )
    info = dockercli.read_context(name, docker_config)
    if not info.host:
        raise UsageError(f"Context {name!r} has no docker endpoint host in {info.meta_path}.")
    tls_files = [str(info.tls_file(f)) for f in dockercli.TLS_FILES]
    present = [os.path.exists(f) for f in tls_files]
    if any(present) and not all(present):
        missing = [f for f, ok in zip(tls_files, present, strict=True) if not ok]
        raise UsageError(f"Context {name!r} lacks {', '.join(missing)}; write it again.")
    if not all(present) and info.host.startswith("tcp://"):
        raise UsageError(
            f"Context {name!r} points at {info.host} without TLS files: docker-py would speak "
            "plain HTTP to a Docker API; write it with `certkit client-context`."
        )
    tls = (tls_files[0], tls_files[1], tls_files[2]) if all(present) else None
    return Endpoint(info.host, tls, f"context {name}")


def client_for(endpoint: Endpoint, *, version: str | None = None, timeout: float = 60) -> Any:
    """A ``docker.DockerClient`` for ``endpoint`` that ignores the CA-bundle variables.

    ``version=None`` negotiates: one ``GET /version`` (unversioned) and the
    lower of the daemon's API version and docker-py's own.  Connection errors
    raise :class:`OperationError`.
    """
    import docker
    from docker.constants import DEFAULT_DOCKER_API_VERSION
    from docker.utils import version_lt

    def build(api_version: str) -> Any:
        tls: Any = False
        if endpoint.tls is not None:
            ca, cert, key = endpoint.tls
            tls = docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
        client = docker.DockerClient(
            base_url=endpoint.base_url, tls=tls, version=api_version, timeout=timeout
        )
        # requests would let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace ca.pem (see above).
        client.api.trust_env = False
        return client

    client = build(version or PROBE_VERSION)
    if version is not None:
        return client
    try:
        server = str(client.api.version(api_version=False)["ApiVersion"])
    except Exception as e:  # requests, urllib3 and docker errors: all mean "not reached"
        client.close()
        raise OperationError(
            f"docker-py could not reach {endpoint.base_url} ({endpoint.source}): {_why(e)}"
        ) from None
    client.close()
    ours = str(DEFAULT_DOCKER_API_VERSION)
    return build(server if version_lt(server, ours) else ours)


def docker_client(
    context: str | None = None,
    *,
    docker_config: StrPath | None = None,
    version: str | None = None,
    timeout: float = 60,
) -> Any:
    """A ``docker.DockerClient`` for docker context ``context`` that works where plain docker-py
    does not: with ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` set.

    ``context`` defaults to the context the docker CLI would use
    (``DOCKER_CONTEXT``, else ``currentContext``; ``DOCKER_HOST`` is not
    read); any context works, a certkit one or not.  ``version=None``
    negotiates the API version with the daemon (one request now); give one
    (``"1.41"``) to build the client without calling the daemon.  The client
    ignores the environment for the connection to the daemon: the CA-bundle
    variables, and also ``HTTPS_PROXY``/``NO_PROXY`` and ``~/.netrc`` (set
    ``client.api.proxies`` to use a proxy).

    >>> from certkit.api import docker_client
    >>> docker_client("docker1").version()["Version"]  # doctest: +SKIP
    '28.0.1'
    """
    return client_for(context_endpoint(context, docker_config), version=version, timeout=timeout)


def _why(e: BaseException) -> str:
    """The innermost reason of a requests/urllib3/docker error, in one line."""
    text = " ".join(str(e).split())
    found = _REASON.search(text)
    return found.group(0).strip() if found else (text[:300] or type(e).__name__)


def _plain_fails(endpoint: Endpoint, version: str, timeout: float) -> str | None:
    """Why docker-py used as most code does (trust_env left on) fails here, or None."""
    import docker

    assert endpoint.tls is not None
    ca, cert, key = endpoint.tls
    tls = docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
    try:
        client = docker.DockerClient(
            base_url=endpoint.base_url, tls=tls, version=version, timeout=timeout
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as e:  # whatever requests raises is the answer
        return _why(e)
    return None


def check(endpoint: Endpoint, timeout: float = 10) -> list[Check]:
    """The ``docker-py`` lines of ``certkit verify``: reach the daemon, and warn about the trap.

    PASS when :func:`client_for` reaches the daemon (FAIL with the reason
    when not); then, when ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` are set
    and plain docker-py code really fails here, a WARN with the fix.
    """
    try:
        client = client_for(endpoint, timeout=timeout)
        try:
            info = client.version()
        finally:
            client.close()
    except OperationError as e:
        return [Check("docker-py", FAIL, e.message)]
    except Exception as e:  # the daemon answered /version but not the versioned call
        return [Check("docker-py", FAIL, f"docker-py failed at {endpoint.base_url}: {_why(e)}")]
    lines = [
        Check(
            "docker-py",
            PASS,
            f"docker-py reaches Docker {info.get('Version')} (API {client.api.api_version}) "
            f"through {endpoint.source} (certkit.api.docker_client)",
        )
    ]
    if endpoint.tls is not None and dockercli.ca_bundle_override():
        reason = _plain_fails(endpoint, client.api.api_version, timeout)
        if reason is not None:
            ctx = endpoint.source.removeprefix("context ")
            name = ctx if endpoint.source.startswith("context ") else None
            advice = dockercli.docker_py_advice(name)
            lines.append(Check("docker-py-env", WARN, " ".join(advice) or reason))
    return lines


@dataclass(frozen=True)
class Proof:
    """What :func:`prove` learnt from the daemon."""

    context: str
    engine: str
    api_version: str

    def to_json(self) -> dict[str, str]:
        return {"context": self.context, "engine": self.engine, "api_version": self.api_version}


def prove(context: str, docker_config: StrPath | None = None, timeout: float = 30) -> Proof:
    """Reach the daemon through ``context`` with docker-py (``ci bootstrap --check``).

    Raises :class:`OperationError` saying what failed when it cannot.
    """
    try:
        client = docker_client(context, docker_config=docker_config, timeout=timeout)
        try:
            info = client.version()
        finally:
            client.close()
    except OperationError as e:
        raise OperationError(f"{e.message}; the context {context!r} is written.") from None
    except Exception as e:  # the daemon answered /version but not the versioned call
        raise OperationError(f"docker-py failed through context {context!r}: {_why(e)}") from None
    return Proof(context, str(info.get("Version", "?")), str(client.api.api_version))
