"""A rootless dockerd reached over SSH as its own user: :class:`RootlessTarget`.

The daemon runs as an ordinary user under RootlessKit, started by that user's
systemd (``~/.config/systemd/user/docker.service``, as Debian's
``dockerd-rootless-setuptool.sh install`` writes it).  Everything certkit
touches belongs to that user, so it connects as the user, with no root and no
sudo, and runs the engine's very scripts (read, write, restart, roll back)
with two differences set up in front of each (:data:`PRELUDE`):

* ``systemctl`` is ``systemctl --user`` (the restart, its check and the
  rollback act on the user's docker.service, never the system's);
* ``XDG_RUNTIME_DIR`` is set, which ``systemctl --user`` needs.

The paths are :class:`~certkit.paths.RootlessPaths` (the user's home and uid,
asked once when the target opens); the plan adds RootlessKit's port forward to
certkit's drop-in (:mod:`certkit.host.rootlessplan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..errors import CertkitError, OperationError, UsageError
from ..paths import RootlessPaths
from ..rootless_kind import RootlessRef
from . import engine
from .local import HERE
from .remote import ScriptTarget, remote_paths
from .scripts import SUDO_HINT
from .ssh import SSH

PRELUDE = (
    'XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/run/user/$(id -u)}"; export XDG_RUNTIME_DIR\n'
    # The engine restarts "docker" with systemctl: for this target, the user's own unit.
    'systemctl() { command systemctl --user "$@"; }\n'
)

_ID = "CERTKIT-ROOTLESS-ID "
_STATE = "CERTKIT-ROOTLESS "

# One round trip: who the user is, and what says the daemon is rootless.
_PROBE = f"""
echo "{_ID}$(id -u) $(id -un) $HOME"
u=$(id -un)
l=no; [ -e "/var/lib/systemd/linger/$u" ] && l=yes
echo "{_STATE}linger $l"
if [ -f "$HOME/.config/systemd/user/docker.service" ]; then echo "{_STATE}unit yes"; fi
echo "{_STATE}active $(systemctl is-active docker 2>/dev/null)"
if command -v docker >/dev/null 2>&1; then
  s=$(DOCKER_HOST="unix://$XDG_RUNTIME_DIR/docker.sock" \\
    docker info --format '{{{{json .SecurityOptions}}}}' 2>/dev/null)
  echo "{_STATE}security $s"
fi
"""


@dataclass(frozen=True)
class RootlessState:
    """What the probe found: the user, and the signs of a rootless daemon."""

    uid: int
    user: str
    home: str
    linger: bool = False
    unit: bool = False  # ~/.config/systemd/user/docker.service exists
    active: str = ""  # systemctl --user is-active docker
    security: str = ""  # docker info's security options ("" without a docker CLI)

    @property
    def rootless(self) -> bool:
        """True when ``docker info`` says rootless, or (no CLI) the user unit is there."""
        return "name=rootless" in self.security or (not self.security and self.unit)


def parse_probe(lines: list[str], where: str) -> RootlessState:
    """The :class:`RootlessState` :data:`_PROBE` printed."""
    ident = next((ln[len(_ID) :].split(" ", 2) for ln in lines if ln.startswith(_ID)), None)
    if ident is None or len(ident) != 3 or not ident[0].isdigit():
        raise OperationError(f"{where} did not say who the user is (id -u, $HOME); check its sh.")
    found: dict[str, str] = {}
    for line in lines:
        if line.startswith(_STATE):
            key, _, value = line[len(_STATE) :].partition(" ")
            found[key] = value.strip()
    return RootlessState(
        int(ident[0]), ident[1], ident[2],
        linger=found.get("linger") == "yes", unit="unit" in found,
        active=found.get("active", ""), security=found.get("security", ""),
    )  # fmt: skip


@dataclass
class RootlessTarget(ScriptTarget):
    """The rootless dockerd of the user SSH connects as (no root, no sudo); without ``ssh``,
    the one of the user certkit runs as on this machine."""

    ssh: SSH | None
    system: RootlessPaths
    state: RootlessState = field(default_factory=lambda: RootlessState(-1, "", ""))

    @property
    def label(self) -> str:
        return self.ssh.target.host if self.ssh else HERE

    def probe_host(self) -> str | None:
        return self.ssh.hostname() if self.ssh else None

    def where(self, path: str) -> str:
        """Recorded as scp writes it (``USER@HOST:PATH``), as for any SSH host."""
        return f"{self.ssh.target}:{path}" if self.ssh else path

    @property
    def ref(self) -> RootlessRef:
        if self.ssh is None:
            return RootlessRef()
        return RootlessRef(str(self.ssh.target), self.ssh.identity, self.ssh.options)

    def check(self, *, restart: bool) -> None:
        """Refuse, before anything is issued, a host that has no rootless daemon for this
        user, a root login, and a user without linger (the daemon would stop at logout)."""
        st, who = self.state, f"{self.state.user}@{self.label}"
        if st.uid == 0:
            raise UsageError(
                "--rootless reaches the daemon as its own user, not root: use --ssh USER@HOST "
                "(or run certkit as that user) with the user that runs the rootless dockerd."
            )
        if not st.rootless:
            raise UsageError(
                f"No rootless Docker daemon was found for {who} (no "
                f"{self.system.unit_files[0]}, and docker info does not say rootless): set "
                "one up as that user (dockerd-rootless-setuptool.sh install), then run again."
            )
        if not st.linger:
            raise UsageError(
                f"Linger is off for {st.user} on {self.label}, so its docker.service stops at "
                f"logout and does not start at boot: run `loginctl enable-linger {st.user}` "
                "there as root (a user cannot turn it on), then run again."
            )

    def run_script(self, script: str) -> list[str]:
        return _run(self.ssh, PRELUDE + script)


def _run(ssh: SSH | None, script: str) -> list[str]:
    """Run ``script`` over ``ssh``, or here as certkit's own user (None).  The scripts' hint
    to connect as root or pass --sudo is not for a rootless daemon (its files are its
    user's, and --rootless takes no --sudo): it says so instead."""
    try:
        return ssh.run_script(script) if ssh else engine.run(engine.local_sh, script, HERE)
    except CertkitError as e:
        if SUDO_HINT not in e.message:
            raise
        own = "the rootless daemon's files must belong to the user that runs it"
        raise type(e)(e.message.replace(SUDO_HINT, own)) from None


def probe(ssh: SSH | None) -> RootlessState:
    """Who ``ssh`` logs in as on the host (None: who runs certkit here), and the signs of a
    rootless daemon there."""
    return parse_probe(_run(ssh, PRELUDE + _PROBE), ssh.target.host if ssh else HERE)


def rootless_paths(state: RootlessState, cert_dir: str | None) -> RootlessPaths:
    """The user's daemon paths (``cert_dir``: an absolute path on the host, or None)."""
    system = remote_paths(None, cert_dir)
    if not state.home.startswith("/"):
        raise OperationError(f"The home directory of {state.user} is not absolute: {state.home}")
    return RootlessPaths(
        system.root, system.cert_dir_override, PurePosixPath(state.home), state.uid
    )


def open_rootless(ref: RootlessRef, cert_dir: str | None) -> RootlessTarget:
    """The rootless daemon ``ref`` records: connect as its user (no ``ssh``: this machine's
    user running certkit), learn its home and uid."""
    conn = None
    if ref.ssh:
        conn = SSH.build(ref.ssh, identity=ref.identity, options=ref.ssh_options, sudo=False)
    state = probe(conn)
    return RootlessTarget(conn, rootless_paths(state, cert_dir), state)
