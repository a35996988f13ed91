"""The action plugin ``certkit.docker.daemon_tls``'s work, without Ansible.

:func:`run_action` turns the task's arguments and the host's inventory
variables into a :class:`~certkit.fleet.converge.HostSpec`, converges the
host through an :class:`~certkit.fleet.target.AnsibleTarget` and returns
Ansible's result dictionary (``changed``, ``failed``, ``msg``, ``diff``, and
everything certkit knows under ``certkit``).  Never a private key: the key
only travels inside the write script, on the connection's standard input.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import defaults
from ..errors import CertkitError, UsageError
from ..host.firewall import check_sources
from ..host.remote import remote_paths
from ..install_options import install_options
from ..nameclaims import check_names_free
from ..names import parse_names
from ..store import CAStore
from ..targets import AnsibleRef
from .converge import RENEW_WITHIN, Converge, HostSpec
from .secrets import receive
from .target import AnsibleTarget, HostUnreachable, Runner

ARGS = frozenset(
    {
        "ca", "sans", "port", "listen", "method", "cert_dir", "renew_within", "days",
        "keep_insecure", "remove_insecure", "client_cert", "client_key", "restart", "name",
        "allow_from",
    }
)  # fmt: skip


# What a host's step imports lazily (the store's SQLite inventory, the TLS probe, the
# issuing and planning code): :func:`preload` imports it in Ansible's main process.
_PRELOAD = (
    "ssl", "sqlite3", "certkit.inventory", "certkit.placement", "certkit.ca",
    "certkit.host.target", "certkit.host.engine", "certkit.untrusted",
    "cryptography.x509", "cryptography.hazmat.primitives.serialization",
)  # fmt: skip


def preload() -> None:
    """Import what :func:`run_action` needs, once, before Ansible forks its workers (each
    worker then starts with it imported instead of importing it again)."""
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _sans(value: Any) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    raise UsageError(f"sans must be a list of names, got {value!r}.")


def _number(args: dict[str, Any], key: str, default: float) -> float:
    value = args.get(key)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or abs(number) > 1e9:  # inf, nan: int() would raise
        raise UsageError(f"{key} must be a number, got {str(value)[:40]!r}.")
    return number


def spec_from(args: dict[str, Any], hostvars: dict[str, Any]) -> HostSpec:
    """The host's :class:`HostSpec` from the task's arguments and its inventory variables."""
    unknown = sorted(set(args) - ARGS)
    if unknown:
        raise UsageError(
            f"unknown argument(s) {', '.join(unknown)}; known: {', '.join(sorted(ARGS))}."
        )
    name = args.get("name") or hostvars.get("ansible_host") or hostvars.get("inventory_hostname")
    if not name:
        raise UsageError("the host has neither ansible_host nor an inventory name.")
    port = _number(args, "port", -1)
    options = install_options(
        listen=str(args["listen"]) if args.get("listen") else None,
        port=None if port == -1 else int(port),
        cert_dir=str(args["cert_dir"]) if args.get("cert_dir") else None,
        method=str(args["method"]) if args.get("method") else None,
        keep_insecure=_bool(args.get("keep_insecure")),
        remove_insecure=_bool(args.get("remove_insecure")),
        allow_from=check_sources(_sans(args.get("allow_from"))),
    )
    if _bool(hostvars.get("certkit_keep_containers")):  # live-restore on before a restart
        options = replace(options, keep_containers=True)
    return HostSpec(
        str(name),
        _sans(args.get("sans")),
        options,
        renew_within=_number(args, "renew_within", RENEW_WITHIN),
        days=int(_number(args, "days", defaults.SERVER_DAYS)),
        # An extra variable of `certkit fleet apply` (which overrides the inventory's).
        names_moved=_bool(hostvars.get("certkit_force")),
    )


def host_ref(hostvars: dict[str, Any]) -> AnsibleRef:
    """How the record remembers the host: through Ansible again (its inventory and name),
    with ``USER@ADDRESS[:PORT]`` as SSH would reach it for the files' recorded names."""
    address = hostvars.get("ansible_host") or hostvars.get("inventory_hostname")
    user = hostvars.get("ansible_user") or hostvars.get("remote_user")
    port = hostvars.get("ansible_port")
    dest = f"{user + '@' if user else ''}{address}{':' + str(port) if port else ''}"
    inventory = hostvars.get("inventory_file")
    return AnsibleRef(
        host=str(hostvars.get("inventory_hostname") or address),
        inventory=str(Path(str(inventory)).absolute()) if inventory else None,
        ssh=dest,
        become=bool(hostvars.get("become")),
    )


def run_action(
    args: dict[str, Any], hostvars: dict[str, Any], run: Runner, *, check: bool
) -> dict[str, Any]:
    """Converge the host; Ansible's result dictionary."""
    host = str(hostvars.get("inventory_hostname") or hostvars.get("ansible_host") or "host")
    try:
        receive()  # the CA's secrets, from certkit fleet's socket (never on disk)
        spec = spec_from(args, hostvars)
        store = CAStore(str(args.get("ca") or "default")).require()
        # Before the host is touched: no host speaks for another (the primary name is the
        # host's own, as issue_server records it: all() lists DNS names before addresses).
        primary = parse_names([spec.name]).all()[0]
        check_names_free(store, primary, spec.names(), moved=spec.names_moved)
        client = None
        if args.get("client_cert") and args.get("client_key"):
            client = (str(args["client_cert"]), str(args["client_key"]))
        target = AnsibleTarget(
            run, remote_paths(None, spec.options.cert_dir), host_ref(hostvars), host
        )
        target.firewall_probe = bool(spec.options.allow_from)
        address = str(hostvars.get("ansible_host") or host)
        restart = _bool(args.get("restart"))
        outcome = Converge(store, target, spec, address, restart, check, client).run()
    except CertkitError as e:
        data = {"host": host, "unreachable": isinstance(e, HostUnreachable)}
        return {"changed": False, "failed": True, "msg": str(e), "certkit": data}
    data = outcome.to_json()
    data["unreachable"] = target.unreachable
    result: dict[str, Any] = {
        "changed": outcome.changed,
        "failed": outcome.failed,
        "msg": outcome.msg or _summary(data, check),
        "certkit": data,
    }
    if outcome.diff:
        result["diff"] = {"prepared": outcome.diff}
    if not outcome.failed:  # issue 28: the authorization policy, where certkit's plugin runs
        from .policy import with_policy

        with_policy(result, store, target, {host, address}, check=check)
    return result


def _summary(data: dict[str, Any], check: bool) -> str:
    """One line for Ansible's output."""
    if not data["changed"]:
        return f"converged: serving certificate {data['serial']}"
    would = "would " if check else ""
    parts = []
    if data["reasons"]:
        parts.append(f"{would}issue a certificate ({'; '.join(data['reasons'])})")
    if data["written"]:
        parts.append(f"{would}write {', '.join(data['written'])}")
    if data["restarted"] or (check and data["restart_needed"]):
        parts.append(f"{would}restart dockerd")
    firewall = data.get("firewall") or {}
    if firewall.get("add"):
        sources = ", ".join(r["source"] for r in firewall["add"])
        parts.append(
            f"{would}allow port {firewall['port']}/tcp from {sources} in {firewall['manager']}"
        )
    if firewall.get("remove"):
        sources = ", ".join(r["source"] for r in firewall["remove"])
        parts.append(f"{would}remove certkit's {firewall['manager']} rule for {sources}")
    return "; ".join(parts) or "changed"
