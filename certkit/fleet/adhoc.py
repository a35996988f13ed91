"""Reaching a host ``fleet apply`` installed, later, through Ansible again (the ``ansible`` kind).

:func:`reopen` is the registry's opener for an :class:`~certkit.targets.AnsibleRef`:
an :class:`~certkit.fleet.target.AnsibleTarget` whose runner is one ad-hoc
``ansible HOST -i INVENTORY -m certkit.docker.sh`` per script, so ``certkit
renew server NAME`` reaches the host with the inventory's user, port, keys
and become, exactly as the playbook did.  The script goes to Ansible in a
private file (0600, in a 0700 directory, removed after): it may hold a key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import UsageError
from ..targets import AnsibleRef
from .inventory import ansible_tool
from .target import AnsibleTarget, Runner

TIMEOUT = 300.0  # seconds one script may take, restart and rollback included


def runner_for(ref: AnsibleRef) -> Runner:
    """``run(script) -> (rc, stdout, stderr)`` on ``ref``'s host through ``ansible``."""
    from .. import ansible

    if not ref.inventory or not Path(ref.inventory).exists():
        raise UsageError(
            f"The Ansible inventory {ref.inventory} that {ref.host} was installed from is "
            "gone: run certkit fleet apply again, or renew with --ssh [USER@]HOST."
        )
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(ansible.COLLECTIONS_PATH),
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
    }
    argv = [ansible_tool("ansible"), ref.host, "-i", ref.inventory, "-m", "certkit.docker.sh"]

    def run(script: str) -> tuple[int, str, str]:
        work = tempfile.mkdtemp(prefix="certkit-ansible-")  # 0700
        try:
            path = Path(work) / "script.sh"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(script)
            tree = Path(work) / "results"  # ansible --tree: one JSON result per host
            done = subprocess.run(
                [*argv, "-a", f"script_file={path}", "--tree", str(tree)],
                capture_output=True, text=True, env=env, timeout=TIMEOUT,
            )  # fmt: skip
            return _result_of(done, tree / ref.host)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return run


def _result_of(done: subprocess.CompletedProcess[str], result: Path) -> tuple[int, str, str]:
    """The script's rc and output from ansible's result file (or Ansible's own failure)."""
    try:
        res = json.loads(result.read_text())
    except (OSError, ValueError):
        out = f"{done.stdout}\n{done.stderr}".strip().splitlines() or ["no message"]
        return 255, "", f"ansible failed (exit {done.returncode}): {out[-1]}"
    if not isinstance(res, dict):
        return 255, "", f"ansible gave no result (exit {done.returncode})"
    if "rc" not in res:  # unreachable, or the action itself failed
        return 255, "", str(res.get("msg") or "unreachable").strip()
    return int(res["rc"]), str(res.get("stdout") or ""), str(res.get("stderr") or "")


def reopen(ref: AnsibleRef, cert_dir: str | None) -> AnsibleTarget:
    """The fleet host ``ref`` records, reached through Ansible again."""
    from ..host.remote import remote_paths

    return AnsibleTarget(runner_for(ref), remote_paths(None, cert_dir), ref, ref.host)
