"""How to install TLS on a Docker host: the choices a user makes, as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..defaults import DEFAULT_INSTALL_METHOD, DOCKER_TLS_PORT, INSTALL_METHODS
from ..defaults import DEFAULT_LISTEN as DEFAULT_LISTEN  # re-exported for the CLI

METHODS = INSTALL_METHODS  # the --method choices


@dataclass(frozen=True)
class InstallOptions:
    """How to install: where TCP listens, where the files go, which method."""

    listen: str = DEFAULT_LISTEN
    port: int = DOCKER_TLS_PORT
    cert_dir: str | None = None  # absolute, as on the host; None: /etc/docker/certkit
    method: str = DEFAULT_INSTALL_METHOD
    keep_insecure: bool = False
    remove_insecure: bool = False
    allow_from: tuple[str, ...] = ()  # sources the firewall lets reach the port
    # Sources whose firewall rule certkit added (recorded: firewalld's carry no mark).
    firewall_added: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstallOptions:
        """Read back :meth:`to_json` (unknown keys ignored, missing ones defaulted)."""
        return cls(
            listen=str(data.get("listen") or DEFAULT_LISTEN),
            port=int(data.get("port") or DOCKER_TLS_PORT),
            cert_dir=str(data["cert_dir"]) if data.get("cert_dir") else None,
            method=str(data.get("method") or DEFAULT_INSTALL_METHOD),
            keep_insecure=bool(data.get("keep_insecure", False)),
            remove_insecure=bool(data.get("remove_insecure", False)),
            allow_from=tuple(str(s) for s in data.get("allow_from") or ()),
            firewall_added=tuple(str(s) for s in data.get("firewall_added") or ()),
        )


@dataclass(frozen=True)
class HostRef:
    """How to reach an installed host again (renewal does): recorded with its certificate.

    ``ssh`` is the ``[USER@]HOST[:PORT]`` of a host reached over SSH (None:
    this machine); ``sandbox`` a directory standing in for ``/`` (``--root``).
    """

    ssh: str | None = None
    sudo: bool = False
    sandbox: str | None = None
