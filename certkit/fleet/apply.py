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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..paths import STORE_ENV, ansible_control_dir, store_root
from ..store import PASSPHRASE_ENV, CAStore
from .admin import AdminClient, ensure_admin_client, write_contexts
from .converge import RENEW_WITHIN
from .events import Timeline, add_silent_failures, take
from .inventory import ansible_tool, check_inventory, inventory_hosts
from .secrets import runner_environment

TIMEOUT = 15.0  # seconds: SSH connect; a silent link is dropped after about as long
TASK_TIMEOUT = 300  # seconds: one host's whole step (read, issue, write, restart, rollback)


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
    timeout: float = TIMEOUT  # SSH connect and keep-alive bound
    task_timeout: int = TASK_TIMEOUT  # one host's step, end to end (0: none)
    max_fail: int | None = None  # Ansible's max_fail_percentage per batch (0: first failure)
    pause: float = 0.0  # seconds between batches (with serial)
    gate: str | None = None  # a controller command run after each batch; non-zero: stop
    on_host: Callable[[str, dict[str, Any]], None] | None = None  # progress, as hosts finish


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
    stopped: str = ""  # why later batches were not run (a health gate failed)
    timings: dict[str, float] = field(default_factory=dict)  # where the run's time went

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
            not self.failed
            and not self.stopped
            and not self.contexts_refused
            and (self.check or not self.not_serving)
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
            "stopped": self.stopped,
            "seconds": round(self.seconds, 2),
            "admin": self.admin,
            "timings": self.timings,
        }


def _check_options(opts: FleetOptions) -> None:
    if opts.serial < 0:
        raise UsageError(f"--serial must be 0 (all at once) or more, got {opts.serial}.")
    if opts.forks < 1:
        raise UsageError(f"--forks must be 1 or more, got {opts.forks}.")
    if opts.renew_within < 0:
        raise UsageError(f"--renew-within must be 0 or more days, got {opts.renew_within:g}.")
    if not 1 <= opts.timeout <= 3600:
        raise UsageError(f"--timeout must be 1 to 3600 seconds, got {opts.timeout:g}.")
    if not 0 <= opts.task_timeout <= 86400:
        raise UsageError(f"--task-timeout must be 0 to 86400 seconds, got {opts.task_timeout}.")
    if opts.max_fail is not None and not 0 <= opts.max_fail <= 100:
        raise UsageError(f"--max-fail must be a percentage, 0 to 100, got {opts.max_fail}.")
    if opts.pause < 0:
        raise UsageError(f"--pause must be 0 or more seconds, got {opts.pause:g}.")


def _need_ansible() -> None:
    try:
        import ansible_runner  # noqa: F401
    except ImportError:
        raise UsageError(
            "certkit fleet needs Ansible: pip install 'certkit[fleet]' "
            "(ansible-core and ansible-runner)."
        ) from None
    ansible_tool("ansible-playbook")


def _env(opts: FleetOptions) -> dict[str, str]:
    """ansible-playbook's environment on top of ours (no secret: see :mod:`.secrets`)."""
    from .. import ansible

    # A silent link (a host gone mid-run) would hold a connection, even one multiplexed
    # over an open control master, until TCP gives up (15 minutes): keep-alives drop it
    # after about ``timeout`` seconds, and the task timeout bounds the host's whole step.
    alive = max(1, round(opts.timeout / 3))
    env = {
        "ANSIBLE_COLLECTIONS_PATH": str(ansible.COLLECTIONS_PATH),
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        # ansible-runner turns host key checking off unless told: certkit forces it on, as
        # its --ssh does (the extra variables below override the inventory's too).
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",  # Ansible's messages end up in ours: no colour codes
        "ANSIBLE_TIMEOUT": str(round(opts.timeout)),
        "ANSIBLE_TASK_TIMEOUT": str(opts.task_timeout),
        # Extra arguments: ansible.cfg's ssh_args (a ProxyJump, ControlPersist) still hold.
        "ANSIBLE_SSH_EXTRA_ARGS": f"-o ServerAliveInterval={alive} -o ServerAliveCountMax=3",
        # Control masters of certkit's own, each made with those keep-alives: one that
        # another Ansible run left open (without them) is not reused.
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(ansible_control_dir()),
        "PATH": f"{Path(ansible_tool('ansible-playbook')).parent}{os.pathsep}"
        + os.environ.get("PATH", ""),
    }
    if os.environ.get(STORE_ENV):
        # The workers run in ansible-runner's temporary directory: a relative store path
        # would name another place there.
        env[STORE_ENV] = str(store_root().absolute())
    return env


def _secrets(store: CAStore) -> dict[str, str]:
    """The CA's secrets the workers need, asked here: they have no terminal to ask on."""
    if not store.key_encrypted():
        return {}
    from ..store import get_passphrase

    return {PASSPHRASE_ENV: get_passphrase().decode()}


def apply(opts: FleetOptions) -> FleetResult:
    """Run the bundled playbook on ``opts.inventory``; every host's result."""

    started = time.monotonic()
    _check_options(opts)
    inventory = check_inventory(opts.inventory)
    store = CAStore(opts.ca).require()
    _need_ansible()
    admin = ensure_admin_client(store, opts.renew_within, check=opts.check)
    timeline = Timeline(started)
    result = _run_playbook(opts, inventory, store, admin, timeline)
    result.admin = {"issued": admin.issued, "contexts_rewritten": list(admin.rewritten)}
    timeline.mark("ansible_end")
    if opts.serial and (result.failed or result.stopped):
        # Ansible ends the play at a batch where every host failed, where more than
        # --max-fail percent did, or where the gate failed: name who was not run.
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
    timeline.mark("end")
    result.seconds = time.monotonic() - started
    result.timings = timeline.summary()
    return result


def _extravars(opts: FleetOptions, store: CAStore, admin: AdminClient) -> dict[str, Any]:
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
    if opts.max_fail is not None:
        extravars["certkit_max_fail_percentage"] = opts.max_fail
    if opts.serial and opts.pause:
        extravars["certkit_pause"] = opts.pause
    if opts.serial and opts.gate:
        extravars["certkit_gate"] = opts.gate
    if admin.key.exists():
        # Absolute: the workers run elsewhere (a relative CERTKIT_HOME makes these relative).
        extravars["certkit_client_cert"] = str(Path(admin.cert).absolute())
        extravars["certkit_client_key"] = str(Path(admin.key).absolute())
    return extravars


def _run_playbook(
    opts: FleetOptions, inventory: str, store: CAStore, admin: AdminClient, timeline: Timeline
) -> FleetResult:
    import ansible_runner

    extravars = _extravars(opts, store, admin)
    result = FleetResult(check=opts.check)

    def on_event(event: dict[str, Any]) -> bool:
        # Called as each event arrives (ansible-runner's event handler): a host's line is
        # shown as that host finishes, not when the whole run ends.
        timeline.event(event)
        host = take(result, event)
        if host and opts.on_host is not None:
            opts.on_host(host, result.hosts[host])
        return True

    work = tempfile.mkdtemp(prefix="certkit-fleet-")
    try:
        timeline.mark("ansible_start")
        with runner_environment(_secrets(store)) as socket_env:
            runner = _run(ansible_runner, opts, work, inventory, extravars, socket_env, on_event)
        result.status = str(runner.status)
        add_silent_failures(result, runner, opts.group, opts.limit)
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
    on_event: Callable[[dict[str, Any]], bool],
) -> Any:
    """ansible-runner's run of the bundled playbook in the private data dir ``work``."""
    from .. import ansible

    between = bool(opts.serial and (opts.gate or opts.pause))
    return ansible_runner.run(
        private_data_dir=work,
        playbook=str(ansible.ROLLING_PLAYBOOK if between else ansible.APPLY_PLAYBOOK),
        inventory=inventory,
        limit=opts.limit,
        forks=opts.forks,
        extravars=extravars,
        envvars={**_env(opts), **socket_env},
        cmdline="--check --diff" if opts.check else None,
        quiet=True,
        settings={"suppress_ansible_output": True},
        event_handler=on_event,
    )
