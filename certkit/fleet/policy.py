"""``fleet apply`` converges the authorization policy too (issue 28).

A fleet host where certkit's authorization plugin was put (``certkit policy
push``, recorded in the CA's inventory) gets the inventory's current policy
through the same Ansible connection that converged its certificate: one round
trip when nothing changed (the plugin's :func:`~certkit.authz.install.push`
compares on the host), the files rewritten when they are behind or were
removed, and the host recorded with the new digest.  A host without the plugin
is left alone: ``fleet apply`` never installs it (``policy push`` does).

:func:`with_policy` is what :func:`certkit.fleet.action.run_action` calls after
the host converged; it only adds to Ansible's result dictionary.
"""

from __future__ import annotations

from typing import Any

from ..errors import CertkitError
from ..host.target import Target
from ..store import CAStore


def _address(dest: object) -> str:
    """``HOST`` of ``[USER@]HOST[:PORT]``."""
    text = str(dest or "")
    host = text.rpartition("@")[2]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def recorded_entry(store: CAStore, names: set[str]) -> tuple[str, dict[str, Any], str] | None:
    """(recorded name, reference, pushed digest) of the plugin host ``names`` (the fleet
    host's inventory name and address) designate: recorded under one of them, or reached
    through one (an Ansible inventory name, an SSH address); None when none is."""
    names = {n for n in names if n}
    for host, (ref, digest, _) in store.inventory().authz_hosts().items():
        reached = {str(ref.get("host") or ""), _address(ref.get("ssh"))}
        if host in names or names & reached:
            return host, ref, digest
    return None


def with_policy(
    result: dict[str, Any], store: CAStore, target: Target, names: set[str], *, check: bool
) -> None:
    """Bring the host's authorization policy up to date when the inventory records
    certkit's plugin there, and say so in ``result`` (``certkit.policy``); a failure fails
    the host's task with one sentence.  With ``check`` only say whether it is behind."""
    from datetime import UTC, datetime

    from ..authz import install
    from ..revoke import build_policy, policy_text

    try:
        entry = recorded_entry(store, names)
        if entry is None:
            return
        host, ref, pushed = entry
        policy = build_policy(store)
        data: dict[str, Any] = {"host": host, "digest": policy["digest"], "was": pushed}
        if check:
            data["behind"] = pushed != policy["digest"]
        else:
            plugin = str(ref.get("plugin") or install.PLUGIN)
            done = install.push(target, host, policy_text(policy), plugin=plugin)
            data.update(written=done.written, registered=done.registered)
            at = datetime.now(UTC).replace(microsecond=0).isoformat()
            with store.transaction() as inv:
                inv.set_authz_host(host, ref, done.digest, at)
            if done.written:
                result["changed"] = data["changed"] = True
                result["msg"] = f"{result.get('msg')}; pushed authorization policy {done.digest}"
    except CertkitError as e:
        result.update(failed=True, msg=f"authorization policy: {e.message}")
        return
    info = result.setdefault("certkit", {})
    info["policy"] = data
    info["changed"] = bool(info.get("changed")) or bool(data.get("changed"))
