"""A rootless dockerd for the lab host's ``guest`` user, set up by Debian's own tool.

:func:`setup_rootless` does on a booted :class:`~lab.LabHost` what an
administrator does for a user (see docs/rootless.md and /work/notes/rootless.md):

1. as root: a ``/dev/net/tun`` node inside the host (systemd-nspawn's ``/dev``
   has none, and slirp4netns needs one: without it RootlessKit fails with
   "setting up tap tap0 ... exit status 1"; binding this machine's node, mode
   0600, gives "open: Permission denied" in the user namespace), and
   ``loginctl enable-linger guest`` so the user's systemd runs without a login;
2. as ``guest``, with no sudo: ``dockerd-rootless-setuptool.sh install
   --skip-iptables`` from ``/usr/share/docker.io/contrib`` (Debian's docker.io),
   which writes ``~/.config/systemd/user/docker.service`` and starts it;
3. waits until ``docker info`` over the user's socket lists ``rootless``.

The setup tool's last step (``contrib/docker version``) fails because Debian
ships no CLI there; the daemon is up by then, so only the wait decides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lab import PLAIN_USER, LabHost

CONTRIB = "/usr/share/docker.io/contrib"
SETUP_SECONDS = 240.0


@dataclass(frozen=True)
class Rootless:
    """The rootless daemon of ``user`` on ``host``."""

    host: LabHost
    user: str
    uid: int

    @property
    def runtime_dir(self) -> str:
        return f"/run/user/{self.uid}"

    @property
    def socket(self) -> str:
        return f"{self.runtime_dir}/docker.sock"

    @property
    def home(self) -> str:
        return f"/home/{self.user}"

    def as_user(self, script: str, timeout: float = 120) -> tuple[int, str]:
        """Run ``script`` as the user inside the host (``su -``, the user's runtime dir set);
        its exit status and output (stdout and stderr together)."""
        inner = (
            f"export XDG_RUNTIME_DIR={self.runtime_dir} "
            f"DBUS_SESSION_BUS_ADDRESS=unix:path={self.runtime_dir}/bus; {script}"
        )
        done = self.host.nsenter(
            ["su", "-", self.user, "-s", "/bin/sh", "-c", f"({inner}) 2>&1"], timeout=timeout
        )
        return done.returncode, done.stdout + done.stderr

    def docker(self, args: str, timeout: float = 60) -> tuple[int, str]:
        """The docker CLI against the user's own socket, inside the host."""
        return self.as_user(f"DOCKER_HOST=unix://{self.socket} docker {args}", timeout)

    def info_security(self) -> str:
        return self.docker("info --format '{{json .SecurityOptions}}'")[1]


def setup_rootless(host: LabHost, user: str = PLAIN_USER) -> Rootless:
    """A running rootless dockerd for ``user`` on ``host``, set up as its documentation says."""
    uid = int(host.check(f"id -u {user}").strip())
    host.check(
        "mkdir -p /dev/net && { [ -e /dev/net/tun ] || mknod /dev/net/tun c 10 200; } "
        f"&& chmod 666 /dev/net/tun && loginctl enable-linger {user}"
    )
    rl = Rootless(host, user, uid)
    _wait(rl, "test -S $XDG_RUNTIME_DIR/bus && systemctl --user is-system-running", 30)
    rc, out = rl.as_user(
        f"PATH={CONTRIB}:$PATH dockerd-rootless-setuptool.sh install --skip-iptables",
        timeout=SETUP_SECONDS,
    )
    deadline = time.monotonic() + 60
    while "name=rootless" not in (seen := rl.info_security()):
        if time.monotonic() > deadline:
            _, status = rl.as_user("systemctl --user status docker --no-pager; "
                                   "journalctl --user -u docker --no-pager | tail -30")  # fmt: skip
            raise AssertionError(
                f"no rootless dockerd for {user} on {host}: setup tool exit {rc}:\n{out}\n"
                f"docker info: {seen}\n{status}"
            )
        time.sleep(0.5)
    return rl


def _wait(rl: Rootless, script: str, seconds: float) -> None:
    """Wait until ``script`` succeeds as the user (the user's systemd after enable-linger)."""
    deadline = time.monotonic() + seconds
    while True:
        rc, out = rl.as_user(script)
        if rc == 0 or "degraded" in out:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{script!r} as {rl.user} on {rl.host}: {out}")
        time.sleep(0.5)
