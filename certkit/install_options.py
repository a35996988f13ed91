"""How to install TLS on a Docker host: the choices a user makes, as plain data, filled
with the defaults of :mod:`certkit.defaults` in one place.

:class:`InstallOptions` is stored with every installed server certificate
(:mod:`certkit.origins`) and read by the install planner
(:mod:`certkit.host.plan`); it lives here, below both, so the inventory's
stored format does not depend on the host package.  Every way of asking for an
install (``issue-server``, ``setup``, the fleet's task arguments) builds it
with :func:`install_options`, which fills what was not given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from .defaults import DEFAULT_INSTALL_METHOD, DEFAULT_LISTEN, DOCKER_TLS_PORT, INSTALL_METHODS

METHODS = INSTALL_METHODS  # the --method choices
DEFAULT_METHOD = DEFAULT_INSTALL_METHOD


@dataclass(frozen=True)
class InstallOptions:
    """How to install: where TCP listens, where the files go, which method."""

    listen: str = DEFAULT_LISTEN
    port: int = DOCKER_TLS_PORT
    cert_dir: str | None = None  # absolute, as on the host; None: /etc/docker/certkit
    method: str = DEFAULT_METHOD
    keep_insecure: bool = False
    remove_insecure: bool = False
    allow_from: tuple[str, ...] = ()  # sources the firewall lets reach the port
    # Sources whose firewall rule certkit added (recorded: firewalld's carry no mark).
    firewall_added: tuple[str, ...] = ()
    # --replace-ca: the host may trust this CA instead of the one it trusts now.  A consent
    # for one run: never recorded, so renewal never replays it.
    replace_ca: bool = False
    # --keep-containers: turn live-restore on (daemon.json + SIGHUP) before a restart.
    # Recorded once given, so every later renewal (renew --due, the schedule) keeps asking.
    keep_containers: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["replace_ca"]
        if not self.keep_containers:  # records written before it existed stay the same
            del data["keep_containers"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstallOptions:
        """Read back :meth:`to_json` (unknown keys ignored, missing ones defaulted)."""
        options = install_options(
            listen=str(data["listen"]) if data.get("listen") else None,
            port=int(data["port"]) if data.get("port") else None,
            cert_dir=str(data["cert_dir"]) if data.get("cert_dir") else None,
            method=str(data["method"]) if data.get("method") else None,
            keep_insecure=bool(data.get("keep_insecure", False)),
            remove_insecure=bool(data.get("remove_insecure", False)),
            allow_from=tuple(str(s) for s in data.get("allow_from") or ()),
            firewall_added=tuple(str(s) for s in data.get("firewall_added") or ()),
        )
        return replace(options, keep_containers=bool(data.get("keep_containers", False)))


def install_options(
    *,
    listen: str | None = None,
    port: int | None = None,
    cert_dir: str | None = None,
    method: str | None = None,
    keep_insecure: bool = False,
    remove_insecure: bool = False,
    allow_from: tuple[str, ...] = (),
    firewall_added: tuple[str, ...] = (),
    replace_ca: bool = False,
) -> InstallOptions:
    """:class:`InstallOptions` from what was given (None: the default)."""
    return InstallOptions(
        listen=listen or DEFAULT_LISTEN,
        port=DOCKER_TLS_PORT if port is None else port,
        cert_dir=cert_dir,
        method=method or DEFAULT_METHOD,
        keep_insecure=keep_insecure,
        remove_insecure=remove_insecure,
        allow_from=allow_from,
        firewall_added=firewall_added,
        replace_ca=replace_ca,
    )
