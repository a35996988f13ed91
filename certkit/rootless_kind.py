"""The ``rootless`` target kind: a rootless dockerd, reached as its own user (SSH or here).

Its reference (:class:`RootlessRef`) records what a cron ``certkit renew``
needs to reach the user's daemon again: the ``USER@HOST`` SSH connects as (the
daemon's own user: never root, never sudo), the key file and ssh options.
The host machinery (:mod:`certkit.host.rootless`) is imported only when the
host is reached.  Registered by :mod:`certkit.targets` when it loads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from .errors import UsageError
from .targets import Reach, TargetKind, register


@dataclass(frozen=True)
class RootlessRef:
    """A rootless dockerd over SSH as its user (``--ssh alice@HOST --rootless``), or on this
    machine as the user running certkit (``--rootless`` alone)."""

    kind: ClassVar[str] = "rootless"
    ssh: str = ""  # USER@HOST[:PORT]: the daemon's own user ("": this machine, as that user)
    identity: str | None = None  # the --identity key file, absolute
    ssh_options: tuple[str, ...] = ()  # each --ssh-option (ssh -o)


def _from_reach(reach: Reach, recorded: Any) -> RootlessRef | None:
    """``--rootless`` (with ``--ssh``), or a recorded rootless host reached again."""
    was = recorded if isinstance(recorded, RootlessRef) else None
    # Without --rootless, a recorded rootless host stays one unless the flags name another.
    if not reach.rootless and (
        was is None or reach.root is not None or reach.ssh not in (None, was.ssh)
    ):
        return None
    if reach.sudo or reach.root is not None:
        raise UsageError(
            "--rootless cannot go with --sudo or --root: a rootless daemon's files belong to "
            "its user, so certkit connects as that user with no root at all."
        )
    base = was or RootlessRef()
    return replace(
        base,
        ssh=reach.ssh or base.ssh,
        identity=reach.identity or base.identity,
        ssh_options=reach.ssh_options or base.ssh_options,
    )


register(
    TargetKind(
        "rootless",
        RootlessRef,
        "certkit.host.rootless:open_rootless",
        lambda ref: (
            f"the rootless Docker of {ref.ssh} over SSH"
            if ref.ssh
            else "your rootless Docker on this machine"
        ),
        _from_reach,
    )
)
