"""Reading an Ansible inventory the way Ansible does: ``ansible-inventory --list``.

INI, YAML, directories and dynamic inventories all work, since Ansible
itself reads them; certkit only picks the hosts of a group and their
Docker endpoints (``ansible_host``, else the inventory name; ``certkit_port``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..names import DOCKER_TLS_PORT, check_port
from ..untrusted import loads_json


def check_inventory(path: str) -> str:
    """An inventory file or directory that exists, made absolute (ansible-runner needs it)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"Inventory {path} does not exist: give an Ansible inventory file.")
    return str(p.absolute())


def ansible_tool(name: str) -> str:
    """Ansible's command ``name``: beside this Python (its virtualenv), else on PATH."""
    import sys

    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise UsageError(f"{name} is not on PATH: pip install 'certkit[fleet]'.")
    return found


@dataclass(frozen=True)
class FleetHost:
    """An inventory host as certkit reaches its Docker endpoint."""

    name: str
    address: str
    port: int = DOCKER_TLS_PORT


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else empty (an inventory's variables are untrusted)."""
    return value if isinstance(value, dict) else {}


def _group_hosts(data: dict[str, Any], group: str) -> list[str]:
    """Hosts of ``group`` and its children, as ``ansible-inventory --list`` shows them."""
    if group == "all":
        return sorted(map(str, _mapping(_mapping(data.get("_meta")).get("hostvars")))) or (
            _group_hosts(data, "*")
        )
    seen: set[str] = set()
    hosts: set[str] = set()
    todo = [group] if group != "*" else [g for g in data if g != "_meta"]
    while todo:
        g = todo.pop()
        if g in seen or g not in data:
            continue
        seen.add(g)
        entry = _mapping(data[g])
        hosts.update(str(h) for h in entry.get("hosts") or [] if isinstance(h, str))
        todo.extend(str(c) for c in entry.get("children") or [] if isinstance(c, str))
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
    try:
        data = loads_json(done.stdout)
    except ValueError as e:
        raise UsageError(
            f"Ansible's reading of the inventory {inventory} is not JSON ({e})."
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"Ansible's reading of the inventory {inventory} is not a mapping.")
    if group != "all" and group not in data:
        raise UsageError(f"The inventory {inventory} has no group {group!r}.")
    hostvars = _mapping(_mapping(data.get("_meta")).get("hostvars"))
    found = []
    for name in _group_hosts(data, group):
        hv = _mapping(hostvars.get(name))
        port = hv.get("certkit_port") or DOCKER_TLS_PORT
        if not isinstance(port, int | str) or not str(port).isdigit():
            raise UsageError(f"certkit_port of {name} in {inventory} is not a port number.")
        found.append(FleetHost(name, str(hv.get("ansible_host") or name), check_port(int(port))))
    if not found:
        raise UsageError(f"No host of group {group!r} in {inventory} matches.")
    return found
