"""``certkit fleet``: many Docker hosts through Ansible (apply, verify, collection-path).

Ansible is imported only inside these commands (``pip install 'certkit[fleet]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from ..defaults import RENEW_WINDOW_DAYS
from .output import CA_OPTION, DOCKER_CONFIG_OPTION, JSON_OPTION, emit, say
from .root import app

if TYPE_CHECKING:
    from ..fleet.apply import FleetResult

fleet_app = typer.Typer(
    help="Many Docker hosts through Ansible: converge an inventory, verify it.",
    no_args_is_help=True,
)
app.add_typer(fleet_app, name="fleet")

INVENTORY_ARG = typer.Argument(..., metavar="INVENTORY", help="Any inventory Ansible reads.")
GROUP_OPTION = typer.Option("all", "--group", help="Only the hosts of this inventory group.")
LIMIT_OPTION = typer.Option(None, "--limit", help="Ansible's --limit pattern.")
FORKS_OPTION = typer.Option(10, "--forks", help="Hosts handled in parallel.")


@fleet_app.command("collection-path")
def collection_path() -> None:
    """Print where the certkit.docker collection is, for ANSIBLE_COLLECTIONS_PATH.

    Example: export ANSIBLE_COLLECTIONS_PATH="$(certkit fleet collection-path)"
    """
    from .. import ansible

    typer.echo(str(ansible.COLLECTIONS_PATH))


def _host_line(name: str, d: dict[str, Any], check: bool) -> str:
    from ..untrusted import escape_controls

    # What a host said stays on its line: a line break in it cannot forge another host's.
    msg = escape_controls(str(d.get("msg") or ""), keep="\t")
    if d.get("failed"):
        return f"  FAILED   {name}: {msg or 'failed'}"
    if not d.get("changed"):
        return f"  ok       {name}: {'kept (CA rotation)' if d.get('rotation') else 'converged'}"
    word = "pending " if check else "changed "
    return f"  {word} {name}: {msg or 'changed'}"


def _apply_lines(result: FleetResult, inventory: str, check: bool, printed: set[str]) -> list[str]:
    """The human lines after the hosts' progress lines: hosts not shown yet, the summary,
    the contexts, and the next step."""
    lines = []
    for h, d in sorted(result.hosts.items()):
        if h not in printed:  # named only in Ansible's recap, or never run
            lines.append(_host_line(h, d, check))
    changed, failed = result.changed, result.failed
    summary = (
        f"{len(result.hosts)} hosts: {len(changed)} {'to change' if check else 'changed'}, "
        f"{len(result.issued)} certificates {'to issue' if check else 'issued'}, "
        f"{len(failed)} failed ({result.seconds:.1f} s)."
    )
    lines.append(summary)
    if result.contexts:
        lines.append(f"Docker contexts written: {', '.join(result.contexts)}.")
    admin = result.admin
    if admin.get("issued") or admin.get("contexts_rewritten"):
        what = f"issued (serial {admin['issued']})" if admin.get("issued") else "kept"
        n = len(admin["contexts_rewritten"])
        lines.append(f"Fleet client certificate {what}; {n} fleet contexts rewritten.")
    notes = {str(d["rotation"]) for d in result.hosts.values() if d.get("rotation")}
    lines += [f"CA rotation: {n}." for n in sorted(notes)]
    lines += [f"Context {name}: {why}." for name, why in sorted(result.contexts_refused.items())]
    if result.stopped:
        lines.append(f"Stopped: {result.stopped}.")
    if failed:
        lines.append(f"Failed: {', '.join(failed)}.")
    elif result.not_serving and not check:
        lines.append(
            f"Not serving the new files yet: {', '.join(result.not_serving)}; "
            "run certkit fleet apply --restart."
        )
    elif not check:
        lines.append(f"Next: certkit fleet verify {inventory}")
    return lines


@fleet_app.command("apply")
def apply(
    inventory: str = INVENTORY_ARG,
    group: str = GROUP_OPTION,
    limit: str = LIMIT_OPTION,
    restart: bool = typer.Option(
        False, "--restart", help="Restart dockerd where needed; roll back a host it fails on."
    ),
    check: bool = typer.Option(False, "--check", help="Show each host's pending change only."),
    serial: int = typer.Option(0, "--serial", help="Hosts per batch (rolling); 0: all at once."),
    forks: int = FORKS_OPTION,
    contexts: bool = typer.Option(
        False, "--contexts", help="Write a docker context per host (named as in the inventory)."
    ),
    renew_within: float = typer.Option(
        RENEW_WINDOW_DAYS,
        "--renew-within",
        help="Replace certificates that expire within this many days.",
    ),
    docker_config: str = DOCKER_CONFIG_OPTION,
    ca: str = CA_OPTION,
    force: bool = typer.Option(
        False,
        "--force",
        help="Take names other hosts' active certificates hold (they moved); with --contexts, "
        "replace contexts certkit did not write for that host.",
    ),
    timeout: float = typer.Option(
        15.0,
        "--timeout",
        help="Seconds to connect to a host; a host whose link goes silent fails after about "
        "as long (SSH keep-alives).",
    ),
    task_timeout: int = typer.Option(
        300, "--task-timeout", help="Seconds one host's whole step may take (0: no limit)."
    ),
    max_fail: int = typer.Option(
        None,
        "--max-fail",
        metavar="PERCENT",
        help="Stop before the next batch once more than PERCENT of a batch failed; "
        "--serial 1 --max-fail 0 stops at the first failure.",
    ),
    pause: float = typer.Option(0.0, "--pause", help="Seconds to wait between batches."),
    gate: str = typer.Option(
        None,
        "--gate",
        metavar="COMMAND",
        help="Shell command run here after each batch (CERTKIT_BATCH: its hosts); "
        "its failure stops the run.",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Converge every host to mutual TLS: a good certificate, daemon.json, dockerd serving it.

    A converged host is left alone (nothing issued, nothing written); a
    failing one is rolled back and named, and the exit status is 1.

    Example: certkit fleet apply hosts.ini --restart --contexts
    """
    from ..fleet.apply import FleetOptions
    from ..fleet.apply import apply as run_apply

    printed: set[str] = set()

    def progress(name: str, d: dict[str, Any]) -> None:
        # Each host's line as it finishes (a rolling run can take minutes).
        printed.add(name)
        say(_host_line(name, d, check))
        for ln in str(d.get("diff") or "").splitlines() if check else ():
            say("      " + ln)

    opts = FleetOptions(
        inventory, group, limit, restart, check, serial, forks, contexts, ca, renew_within,
        docker_config, force, timeout, task_timeout, max_fail, pause, gate,
        on_host=None if json_out else progress,
    )  # fmt: skip
    result = run_apply(opts)
    lines = _apply_lines(result, inventory, check, printed)
    emit(json_out, result.to_json(), lines)
    if not result.ok:
        raise typer.Exit(1)


@fleet_app.command("verify")
def verify(
    inventory: str = INVENTORY_ARG,
    group: str = GROUP_OPTION,
    limit: str = LIMIT_OPTION,
    forks: int = FORKS_OPTION,
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per network step."),
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """certkit verify on every host in parallel, with the fleet's client certificate.

    Exit 1 when any host fails a check.

    Example: certkit fleet verify hosts.ini
    """
    from ..fleet.verify import verify_fleet

    report = verify_fleet(inventory, ca=ca, group=group, limit=limit, forks=forks, timeout=timeout)
    lines = []
    for name, data in sorted(report.hosts.items()):
        where = f"{data['address']}:{data['port']}"
        if data.get("error"):
            lines.append(f"  FAIL  {name} ({where}): {data['error']}")
            continue
        fails = [c for c in data["checks"] if c["status"] == "FAIL"]
        if fails:
            what = "; ".join(f"{c['name']}: {c['message']}" for c in fails)
            lines.append(f"  FAIL  {name} ({where}): {what}")
        else:
            lines.append(f"  PASS  {name} ({where}): all {len(data['checks'])} checks passed")
    if report.failed:
        lines.append(f"{len(report.failed)} of {len(report.hosts)} hosts failed.")
    else:
        lines.append(f"All {len(report.hosts)} hosts passed.")
    emit(json_out, report.to_json(), lines)
    if not report.ok:
        raise typer.Exit(1)
