"""The one place that knows where things live on disk.

Three families of paths:

* the certkit store (``CERTKIT_HOME`` or the platform's user data dir);
* the Docker host's system files (``/etc/docker/daemon.json``, systemd units),
  which can be re-rooted under a sandbox directory with ``--root`` so tests
  and dry runs never touch the real system;
* the docker CLI's config dir (``--docker-config``, ``DOCKER_CONFIG`` or
  ``~/.docker``).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

STORE_ENV = "CERTKIT_HOME"
DEFAULT_CA = "default"


def store_root() -> Path:
    """Root of the certkit store: ``$CERTKIT_HOME`` or the user data dir."""
    env = os.environ.get(STORE_ENV)
    if env:
        from .files import check_output_dir

        # As for --out: every directory on the way is yours or root's and writable by
        # nobody else, and the store itself is no link (else another user steers the CA).
        return check_output_dir(env, (), force=True, flag=STORE_ENV)
    import platformdirs

    return Path(platformdirs.user_data_dir("certkit", appauthor=False))


def docker_config_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The docker CLI's config dir: explicit, else ``$DOCKER_CONFIG``, else ``~/.docker``."""
    if override:
        return Path(override).expanduser().absolute()
    env = os.environ.get("DOCKER_CONFIG")
    if env:
        return Path(env).expanduser().absolute()
    try:
        return Path.home() / ".docker"
    except RuntimeError:  # HOME unset and no passwd entry (containers with an arbitrary uid)
        from .errors import UsageError

        raise UsageError(
            "Cannot find the home directory (HOME is not set); "
            "set DOCKER_CONFIG or pass --docker-config."
        ) from None


def docker_cli_plugins_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The user's docker CLI plugin dir: ``cli-plugins`` in :func:`docker_config_dir`."""
    return docker_config_dir(override) / "cli-plugins"


# Where an administrator installs a docker CLI plugin for every user (docker/cli's
# cli_plugins.md; /usr/lib and /usr/libexec are left to packages).
SYSTEM_CLI_PLUGINS = PurePosixPath("/usr/local/lib/docker/cli-plugins")

# System paths on a Docker host, as seen on the host itself.
DAEMON_JSON = PurePosixPath("/etc/docker/daemon.json")
CERT_DIR = PurePosixPath("/etc/docker/certkit")
DEFAULT_DOCKER = PurePosixPath("/etc/default/docker")
DROPIN_DIR = PurePosixPath("/etc/systemd/system/docker.service.d")
DROPIN_NAME = "certkit.conf"
# docker.socket (systemd socket activation, `--method socket`): its drop-in directory and
# the unit files that may define it, lowest precedence first.
SOCKET_DROPIN_DIR = PurePosixPath("/etc/systemd/system/docker.socket.d")
SOCKET_UNIT_FILES = (
    PurePosixPath("/lib/systemd/system/docker.socket"),
    PurePosixPath("/usr/lib/systemd/system/docker.socket"),
    PurePosixPath("/etc/systemd/system/docker.socket"),
)
# The files of a handed-out TLS directory: CA certificate, certificate, key.
CLIENT_FILES = ("ca.pem", "cert.pem", "key.pem")  # DOCKER_CERT_PATH's and a context's names
SERVER_FILES = ("ca.pem", "server-cert.pem", "server-key.pem")  # Docker's documented names
# dockerd's local socket: kept in daemon.json's hosts when certkit writes that key.
DOCKER_SOCKET = PurePosixPath("/var/run/docker.sock")
# certkit's authorization plugin on a host (certkit.authz): its policy, program and units.
AUTHZ_POLICY = PurePosixPath("/etc/docker/certkit/authz.json")
AUTHZ_PROGRAM = PurePosixPath("/usr/local/lib/certkit/certkit-authz.py")
UNIT_DIR = PurePosixPath("/etc/systemd/system")  # units and drop-ins of the admin's
# Where dockerd looks for plugin sockets: fixed in dockerd, so never re-rooted.
DOCKER_PLUGIN_DIR = PurePosixPath("/run/docker/plugins")
DOCKER_PIDFILE = PurePosixPath("/var/run/docker.pid")
# Where packaged docker units live; later entries override earlier ones.
UNIT_FILES = (
    PurePosixPath("/lib/systemd/system/docker.service"),
    PurePosixPath("/usr/lib/systemd/system/docker.service"),
    PurePosixPath("/etc/systemd/system/docker.service"),
)
# `certkit schedule`: the timer and service that run `certkit renew --due`, and the
# textfile directory of Debian's prometheus-node-exporter (--collector.textfile.directory).
SCHEDULE_UNIT = "certkit-renew"
TEXTFILE = PurePosixPath("/var/lib/prometheus/node-exporter/certkit.prom")


def ansible_control_dir() -> Path:
    """Where ``certkit fleet apply``'s SSH control masters live (its own, with keep-alives)."""
    return Path("~/.ansible/cp-certkit").expanduser()


def user_unit_dir() -> Path:
    """Where ``systemctl --user`` reads a user's own units: ``$XDG_CONFIG_HOME/systemd/user``."""
    env = os.environ.get("XDG_CONFIG_HOME")
    base = Path(env) if env and os.path.isabs(env) else Path.home() / ".config"
    return base / "systemd" / "user"


_SLASH = PurePosixPath("/")


@dataclass(frozen=True)
class SystemPaths:
    """System paths of a Docker host, optionally re-rooted under ``root``.

    ``SystemPaths(Path("/tmp/sandbox")).daemon_json`` is
    ``/tmp/sandbox/etc/docker/daemon.json``: every path read or written, and
    every path written *into* a configuration, lives under the root.
    """

    root: PurePosixPath = _SLASH
    cert_dir_override: PurePosixPath | None = None

    def at(self, path: PurePosixPath | str) -> PurePosixPath:
        """Re-root an absolute system path (``..`` cannot climb out of the root)."""
        rel = posixpath.normpath(posixpath.join("/", str(path))).lstrip("/")
        return self.root / rel

    @property
    def daemon_json(self) -> PurePosixPath:
        return self.at(DAEMON_JSON)

    @property
    def cert_dir(self) -> PurePosixPath:
        if self.cert_dir_override is not None:
            return self.at(self.cert_dir_override)
        return self.at(CERT_DIR)

    @property
    def cert_files(self) -> dict[str, PurePosixPath]:
        """``ca``, ``cert``, ``key`` -> the installed file, with Docker's documented names."""
        return dict(
            zip(("ca", "cert", "key"), (self.cert_dir / n for n in SERVER_FILES), strict=True)
        )

    @property
    def default_docker(self) -> PurePosixPath:
        return self.at(DEFAULT_DOCKER)

    @property
    def dropin_dir(self) -> PurePosixPath:
        return self.at(DROPIN_DIR)

    @property
    def dropin(self) -> PurePosixPath:
        return self.dropin_dir / DROPIN_NAME

    @property
    def socket_dropin_dir(self) -> PurePosixPath:
        return self.at(SOCKET_DROPIN_DIR)

    @property
    def socket_dropin(self) -> PurePosixPath:
        """certkit's docker.socket drop-in (``--method socket``): the TLS ``ListenStream=``."""
        return self.socket_dropin_dir / DROPIN_NAME

    @property
    def socket_unit_files(self) -> tuple[PurePosixPath, ...]:
        return tuple(self.at(p) for p in SOCKET_UNIT_FILES)

    @property
    def docker_socket(self) -> PurePosixPath:
        return self.at(DOCKER_SOCKET)

    @property
    def authz_policy(self) -> PurePosixPath:
        return self.at(AUTHZ_POLICY)

    @property
    def authz_program(self) -> PurePosixPath:
        return self.at(AUTHZ_PROGRAM)

    @property
    def unit_dir(self) -> PurePosixPath:
        return self.at(UNIT_DIR)

    @property
    def unit_files(self) -> tuple[PurePosixPath, ...]:
        return tuple(self.at(p) for p in UNIT_FILES)

    @property
    def sandboxed(self) -> bool:
        return self.root != PurePosixPath("/")


# A rootless dockerd's own files (docs/rootless.md), relative to its user's home: the
# daemon reads ~/.config/docker (not ~/.docker, the client's), its unit is a user unit,
# and its socket is in the user's runtime dir.
ROOTLESS_CONFIG = PurePosixPath(".config/docker")
ROOTLESS_UNIT_DIR = PurePosixPath(".config/systemd/user")
RUNTIME_DIR = PurePosixPath("/run/user")  # /run/user/UID: XDG_RUNTIME_DIR under systemd


_NO_HOME = PurePosixPath("/nonexistent")


@dataclass(frozen=True)
class RootlessPaths(SystemPaths):
    """:class:`SystemPaths` of a rootless dockerd run by the user ``uid`` whose home is
    ``home``: ``~/.config/docker/daemon.json``, ``~/.config/docker/certkit/``, the user
    unit ``~/.config/systemd/user/docker.service`` and its drop-ins, the socket
    ``/run/user/UID/docker.sock``; ``/etc/default/docker`` stays the system's."""

    home: PurePosixPath = _NO_HOME
    uid: int = -1

    @property
    def config_dir(self) -> PurePosixPath:
        return self.at(self.home / ROOTLESS_CONFIG)

    @property
    def daemon_json(self) -> PurePosixPath:
        return self.config_dir / "daemon.json"

    @property
    def cert_dir(self) -> PurePosixPath:
        if self.cert_dir_override is not None:
            return self.at(self.cert_dir_override)
        return self.config_dir / "certkit"

    @property
    def unit_dir(self) -> PurePosixPath:
        return self.at(self.home / ROOTLESS_UNIT_DIR)

    @property
    def dropin_dir(self) -> PurePosixPath:
        return self.unit_dir / "docker.service.d"

    @property
    def unit_files(self) -> tuple[PurePosixPath, ...]:
        return (self.unit_dir / "docker.service",)

    @property
    def docker_socket(self) -> PurePosixPath:
        return self.at(RUNTIME_DIR / str(self.uid) / "docker.sock")


def own_rootless_paths() -> RootlessPaths | None:
    """This user's rootless dockerd paths when certkit runs as a user (not root) who has a
    rootless daemon here (its user unit or its daemon.json); else None."""
    if not hasattr(os, "getuid") or os.getuid() == 0:
        return None
    try:
        home = PurePosixPath(Path.home())
    except RuntimeError:
        return None
    found = RootlessPaths(home=home, uid=os.getuid())
    if any(Path(p).is_file() for p in (*found.unit_files, found.daemon_json)):
        return found
    return None


def system_paths(
    root: str | os.PathLike[str] | None = None, cert_dir: str | None = None
) -> SystemPaths:
    """Build :class:`SystemPaths`; ``root`` is made absolute, ``cert_dir`` must be absolute."""
    base = PurePosixPath(os.path.abspath(root)) if root else PurePosixPath("/")
    override = PurePosixPath(cert_dir) if cert_dir else None
    if override is not None and not override.is_absolute():
        from .errors import UsageError

        raise UsageError(f"--cert-dir must be an absolute path, got {cert_dir!r}.")
    return SystemPaths(base, override)
