"""``certkit fleet apply``: the bundled playbook through ansible-runner, one result per host.

The controller runs everything that knows certificates: ansible-runner
starts ``ansible-playbook`` with ``playbooks/apply.yml`` of the shipped
collection, and Ansible runs the action plugin ``certkit.docker.daemon_tls``
for each host (in ``--forks`` parallel workers, ``--serial`` hosts per
batch).  The hosts only run the read and write scripts (``sh``, coreutils,
``systemctl``).  Each host's result comes back as an ansible-runner event;
hosts that Ansible could not reach are failed hosts too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..store import PASSPHRASE_ENV, CAStore
from .admin import AdminClient, ensure_admin_client, write_contexts
from .converge import RENEW_WITHIN
from .inventory import ansible_tool, check_inventory, inventory_hosts
from .secrets import runner_environment

ACTION = "certkit.docker.daemon_tls"
_RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")


@dataclass
class FleetOptions:
    """What ``fleet apply`` was asked to do."""

    inventory: str
    group: str = "all"
    limit: str | None = None
    restart: bool = False
    check: bool = False
    serial: int = 0  # 0: every host in one batch
    forks: int = 10
    contexts: bool = False
    ca: str = "default"
    renew_within: float = RENEW_WITHIN
    docker_config: str | None = None
    force: bool = False  # names moved between hosts; contexts that are not certkit's replaced


@dataclass
class FleetResult:
    """Every host's outcome (the action's ``certkit`` data, or a failure)."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: list[str] = field(default_factory=list)
    contexts_refused: dict[str, str] = field(default_factory=dict)  # name -> why left alone
    check: bool = False
    status: str = ""
    seconds: float = 0.0
    admin: dict[str, Any] = field(default_factory=dict)  # the fleet client: issued, rewritten

    @property
    def failed(self) -> list[str]:
        return sorted(h for h, d in self.hosts.items() if d.get("failed"))

    @property
    def not_serving(self) -> list[str]:
        """Hosts left with a change dockerd has not loaded (run without restart)."""
        return sorted(
            h for h, d in self.hosts.items() if not d.get("failed") and d.get("restart_needed")
        )

    @property
    def ok(self) -> bool:
        if not self.hosts:
            return False
        return (
            not self.failed and not self.contexts_refused and (self.check or not self.not_serving)
        )

    @property
    def changed(self) -> list[str]:
        return sorted(h for h, d in self.hosts.items() if d.get("changed"))

    @property
    def issued(self) -> list[str]:
        """Hosts given a new certificate (in check mode: that would be given one, as
        each host's line says)."""
        key = "reasons" if self.check else "issued"
        return sorted(h for h, d in self.hosts.items() if d.get(key))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "check": self.check,
            "hosts": self.hosts,
            "changed": self.changed,
            "issued": self.issued,
            "failed": self.failed,
            "restart_needed": self.not_serving,
            "contexts": self.contexts,
            "contexts_refused": self.contexts_refused,
            "ansible_status": self.status,
            "seconds": round(self.seconds, 2),
            "admin": self.admin,
        }


def _check_options(opts: FleetOptions) -> None:
    if opts.serial < 0:
        raise UsageError(f"--serial must be 0 (all at once) or more, got {opts.serial}.")
    if opts.forks < 1:
        raise UsageError(f"--forks must be 1 or more, got {opts.forks}.")
    if opts.renew_within < 0:
        raise UsageError(f"--renew-within must be 0 or more days, got {opts.renew_within:g}.")


def _need_ansible() -> None:
    try:
        import ansible_runner  # noqa: F401
    except ImportError:
        raise UsageError(
            "certkit fleet needs Ansible: pip install 'certkit[fleet]' "
            "(ansible-core and ansible-runner)."
        ) from None
    ansible_tool("ansible-playbook")


def _env() -> dict[str, str]:
    """ansible-playbook's environment on top of ours (no secret: see :mod:`.secrets`)."""
    from .. import ansible

    return {
        "ANSIBLE_COLLECTIONS_PATH": str(ansible.COLLECTIONS_PATH),
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        # ansible-runner turns host key checking off unless told: certkit forces it on, as
        # its --ssh does (the extra variables below override the inventory's too).
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "PATH": f"{Path(ansible_tool('ansible-playbook')).parent}{os.pathsep}"
        + os.environ.get("PATH", ""),
    }


def _secrets(store: CAStore) -> dict[str, str]:
    """The CA's secrets the workers need, asked here: they have no terminal to ask on."""
    if not store.key_encrypted():
        return {}
    from ..store import get_passphrase

    return {PASSPHRASE_ENV: get_passphrase().decode()}


def apply(opts: FleetOptions) -> FleetResult:
    """Run the bundled playbook on ``opts.inventory``; every host's result."""
    import time

    _check_options(opts)
    inventory = check_inventory(opts.inventory)
    store = CAStore(opts.ca).require()
    _need_ansible()
    started = time.monotonic()
    admin = ensure_admin_client(store, opts.renew_within, check=opts.check)
    result = _run_playbook(opts, inventory, store, admin)
    result.admin = {"issued": admin.issued, "contexts_rewritten": list(admin.rewritten)}
    if opts.serial and result.failed:
        # Ansible ends the play at a batch where every host failed: name who was not run.
        for h in inventory_hosts(inventory, opts.group, opts.limit):
            result.hosts.setdefault(
                h.name,
                {"host": h.name, "failed": True, "msg": "not run: an earlier batch failed"},
            )
    if opts.contexts and not opts.check:
        serving = [
            (h, str(d["address"]), int(d["port"]))
            for h, d in sorted(result.hosts.items())
            if d.get("serving")
        ]
        result.contexts, result.contexts_refused = write_contexts(
            store, admin, serving, opts.docker_config, force=opts.force
        )
    result.seconds = time.monotonic() - started
    return result


def _run_playbook(
    opts: FleetOptions, inventory: str, store: CAStore, admin: AdminClient
) -> FleetResult:
    import ansible_runner

    extravars: dict[str, Any] = {
        "certkit_hosts": opts.group,
        "certkit_serial": opts.serial,
        "certkit_ca": store.name,
        "certkit_restart": opts.restart,
        "certkit_renew_within": opts.renew_within,
        # Extra variables win over the inventory's: no host speaks for another unchecked.
        "certkit_force": opts.force,
        "ansible_host_key_checking": True,
        "ansible_ssh_host_key_checking": True,
    }
    if admin.key.exists():
        extravars["certkit_client_cert"] = str(admin.cert)
        extravars["certkit_client_key"] = str(admin.key)
    work = tempfile.mkdtemp(prefix="certkit-fleet-")
    try:
        with runner_environment(_secrets(store)) as socket_env:
            runner = _run(ansible_runner, opts, work, inventory, extravars, socket_env)
        result = FleetResult(check=opts.check, status=str(runner.status))
        for event in runner.events:
            _take(result, event)
        _add_silent_failures(result, runner)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _run(
    ansible_runner: Any,
    opts: FleetOptions,
    work: str,
    inventory: str,
    extravars: dict[str, Any],
    socket_env: dict[str, str],
) -> Any:
    """ansible-runner's run of the bundled playbook in the private data dir ``work``."""
    from .. import ansible

    return ansible_runner.run(
        private_data_dir=work,
        playbook=str(ansible.APPLY_PLAYBOOK),
        inventory=inventory,
        limit=opts.limit,
        forks=opts.forks,
        extravars=extravars,
        envvars={**_env(), **socket_env},
        cmdline="--check --diff" if opts.check else None,
        quiet=True,
        settings={"suppress_ansible_output": True},
    )


def _take(result: FleetResult, event: dict[str, Any]) -> None:
    """One host's result from an ansible-runner event (our action's, or unreachable)."""
    if event.get("event") not in _RESULT_EVENTS:
        return
    data = event.get("event_data") or {}
    host = str(data.get("host") or "")
    res = data.get("res") or {}
    if event["event"] == "runner_on_unreachable":
        msg = str(res.get("msg") or "unreachable").strip()
        result.hosts[host] = {"host": host, "failed": True, "unreachable": True, "msg": msg}
        return
    if data.get("task_action") != ACTION:
        return
    info = dict(res.get("certkit") or {"host": host})
    info["failed"] = event["event"] == "runner_on_failed" or bool(res.get("failed"))
    info["msg"] = str(res.get("msg") or info.get("msg") or "")
    if data.get("task", "").startswith("certkit restart") and host in result.hosts:
        # The role's handler converged it again with a restart: that result wins.
        info["changed"] = bool(info.get("changed") or result.hosts[host].get("changed"))
    result.hosts[host] = info


def _add_silent_failures(result: FleetResult, runner: Any) -> None:
    """Hosts the recap counts as failed or unreachable without an event of ours."""
    stats = runner.stats or {}
    for key in ("failures", "dark"):
        for host in stats.get(key) or {}:
            if host not in result.hosts:
                result.hosts[host] = {"host": host, "failed": True, "msg": f"ansible: {key}"}
    if not result.hosts and runner.rc != 0:
        raise UsageError(
            f"ansible-playbook failed before any host ran (exit {runner.rc}): {_last_lines(runner)}"
        )


def _last_lines(runner: Any) -> str:
    try:
        text = runner.stdout.read()
    except (AttributeError, OSError, ValueError):
        return "no output"
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " ".join(lines[-3:]) or "no output"
