"""``certkit fleet verify``: ``certkit verify`` on every inventory host, in parallel.

The hosts come from Ansible itself (``ansible-inventory --list``, so INI,
YAML and dynamic inventories all work); each one's endpoint is
``ansible_host`` (else its inventory name) and ``certkit_port`` (2376), and
the credential is the fleet's client certificate (see :mod:`.admin`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import OperationError, UsageError
from ..store import CAStore
from .admin import existing_admin_client
from .inventory import FleetHost, inventory_hosts


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
