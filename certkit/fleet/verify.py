"""``certkit fleet verify``: ``certkit verify`` on every inventory host, in parallel.

The hosts come from Ansible itself (``ansible-inventory --list``, so INI,
YAML and dynamic inventories all work); each one's endpoint is
``ansible_host`` (else its inventory name) and ``certkit_port`` (2376), and
the credential is the fleet's client certificate (see :mod:`.admin`).
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import OperationError, UsageError
from ..names import DOCKER_TLS_PORT
from ..store import CAStore
from .admin import existing_admin_client
from .apply import ansible_tool, check_inventory


@dataclass(frozen=True)
class FleetHost:
    """An inventory host as certkit reaches its Docker endpoint."""

    name: str
    address: str
    port: int = DOCKER_TLS_PORT


@dataclass
class FleetReport:
    """Every host's verify report (as JSON), by inventory name."""

    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if not r.get("ok"))

    @property
    def ok(self) -> bool:
        return bool(self.hosts) and not self.failed

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "hosts": self.hosts}


def _group_hosts(data: dict[str, Any], group: str) -> list[str]:
    """Hosts of ``group`` and its children, as ``ansible-inventory --list`` shows them."""
    if group == "all":
        return sorted((data.get("_meta") or {}).get("hostvars") or {}) or _group_hosts(data, "*")
    seen: set[str] = set()
    hosts: set[str] = set()
    todo = [group] if group != "*" else [g for g in data if g != "_meta"]
    while todo:
        g = todo.pop()
        if g in seen or g not in data:
            continue
        seen.add(g)
        hosts.update(data[g].get("hosts") or [])
        todo.extend(data[g].get("children") or [])
    return sorted(hosts)


def inventory_hosts(
    inventory: str, group: str = "all", limit: str | None = None
) -> list[FleetHost]:
    """The inventory's hosts in ``group`` (and ``limit``), with their Docker endpoints."""
    argv = [ansible_tool("ansible-inventory"), "-i", check_inventory(inventory), "--list"]
    if limit:
        argv += ["--limit", limit]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise UsageError(
            "ansible-inventory is not on PATH: pip install 'certkit[fleet]'."
        ) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UsageError(f"Ansible cannot read the inventory {inventory}: {last}")
    data = json.loads(done.stdout)
    if group != "all" and group not in data:
        raise UsageError(f"The inventory {inventory} has no group {group!r}.")
    hostvars = (data.get("_meta") or {}).get("hostvars") or {}
    found = []
    for name in _group_hosts(data, group):
        hv = hostvars.get(name) or {}
        found.append(
            FleetHost(
                name,
                str(hv.get("ansible_host") or name),
                int(hv.get("certkit_port") or DOCKER_TLS_PORT),
            )
        )
    if not found:
        raise UsageError(f"No host of group {group!r} in {inventory} matches.")
    return found


def verify_fleet(
    inventory: str,
    *,
    ca: str = "default",
    group: str = "all",
    limit: str | None = None,
    forks: int = 10,
    timeout: float = 10.0,
) -> FleetReport:
    """``certkit verify`` of every host, ``forks`` at a time."""
    if forks < 1:
        raise UsageError(f"--forks must be 1 or more, got {forks}.")
    store = CAStore(ca).require()
    admin = existing_admin_client(store)
    hosts = inventory_hosts(inventory, group, limit)
    from ..verify import Credentials, verify

    creds = Credentials(admin.ca, admin.cert, admin.key, f"the fleet client of CA {store.name}")

    def one(h: FleetHost) -> dict[str, Any]:
        try:
            data = verify(h.address, h.port, creds, timeout).to_json()
        except (UsageError, OperationError) as e:
            data = {"ok": False, "error": str(e)}
        data["address"], data["port"] = h.address, h.port
        return data

    report = FleetReport()
    with ThreadPoolExecutor(max_workers=min(forks, len(hosts))) as pool:
        for h, data in zip(hosts, pool.map(one, hosts), strict=True):
            report.hosts[h.name] = data
    return report
