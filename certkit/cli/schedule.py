"""``certkit schedule install|status|remove``: renewal that runs by itself (systemd or cron)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from .output import JSON_OPTION, emit, warn
from .root import app

if TYPE_CHECKING:
    from ..schedule import ScheduleReport, Scope

schedule_app = typer.Typer(
    help=(
        "Renew by itself: a systemd timer runs `certkit renew --due` twice a day.\n\n"
        "Example: sudo certkit schedule install --restart"
    ),
    no_args_is_help=True,
)
app.add_typer(schedule_app, name="schedule")

SYSTEM = typer.Option(
    False, "--system", help="Root's timer in /etc/systemd/system, for servers (the default)."
)
USER = typer.Option(
    False, "--user", help="Your own timer (systemctl --user): renews your docker contexts."
)
ROOT = typer.Option(
    None, "--root", help="Write the units under this directory instead of / (no systemctl)."
)


def _scope(system: bool, user: bool) -> Scope:
    from ..errors import UsageError

    if system and user:
        raise UsageError("Give --system or --user, not both.")
    return "user" if user else "system"


@schedule_app.command("install")
def install(
    system: bool = SYSTEM,
    user: bool = USER,
    restart: bool = typer.Option(
        False,
        "--restart",
        help="Restart dockerd after renewing a server certificate (it never reloads one).",
    ),
    fleet: str = typer.Option(
        None, "--fleet", metavar="INVENTORY", help="Also run `certkit fleet apply INVENTORY`."
    ),
    renew_at: float = typer.Option(
        None,
        "--renew-at",
        metavar="FRACTION",
        help="Renew past this fraction of the lifetime (default 2/3).",
    ),
    textfile: str = typer.Option(
        None,
        "--textfile",
        help="The Prometheus textfile written after each run, in a root-owned directory "
        "(default with --system: Debian's /var/lib/prometheus/node-exporter/certkit.prom "
        "when certkit may write there; 'none' for none).",
    ),
    cron: bool = typer.Option(
        False, "--cron", help="Print a crontab line instead (a machine without systemd)."
    ),
    root: str = ROOT,
    json_out: bool = JSON_OPTION,
) -> None:
    """Write and start a timer running `certkit renew --due` twice a day.

    The service (certkit-renew.service) renews every certificate past 2/3 of
    its lifetime the way it was issued, runs `fleet apply` with --fleet,
    writes the Prometheus textfile even when renewal failed, and logs to the
    journal.  Running it again with the same options changes nothing.

    Example: sudo certkit schedule install --restart

    Example: certkit schedule install --user
    """
    from .. import paths
    from ..schedule import cron_line, default_textfile, make_schedule
    from ..schedule import install as _install

    scope = _scope(system, user)
    if textfile is None and scope == "system":
        textfile = default_textfile()
        if textfile is None and not json_out:
            warn(
                f"no Prometheus textfile: certkit may not write into {paths.TEXTFILE.parent}; "
                "give --textfile DIR/certkit.prom, DIR a root-owned directory node_exporter reads."
            )
    sched = make_schedule(
        scope,
        restart=restart,
        fleet=fleet,
        renew_at=renew_at,
        textfile=None if textfile in (None, "none") else textfile,
    )
    if cron:
        line = cron_line(sched)
        where = "/etc/cron.d/certkit-renew" if scope == "system" else "`crontab -e`"
        emit(json_out, {"ok": True, "cron": line}, [f"# for {where}:", line])
        return
    report = _install(sched, root)
    emit(json_out, report.to_json(), _install_lines(report, restart))


def _install_lines(report: ScheduleReport, restart: bool) -> list[str]:
    from ..schedule import SERVICE, TIMER

    ctl = "systemctl" + (" --user" if report.scope == "user" else "")
    lines = [f"wrote {p}" for p in report.written]
    if report.unchanged:
        lines.append(f"{TIMER} and {SERVICE} in {report.unit_dir} unchanged.")
    if report.enabled:
        nxt = report.timer.get("NextElapseUSecRealtime") or "?"
        lines.append(f"{TIMER} enabled and started; next run: {nxt}.")
        log = "journalctl" + (" --user" if report.scope == "user" else "") + f" -u {SERVICE}"
        lines.append(f"Run it now: {ctl} start {SERVICE}; its log: {log}")
    else:
        lines.append(f"Not enabled (--root): on the host, {ctl} enable --now {TIMER}")
    if not restart and report.scope == "system":
        lines.append(
            "Without --restart a renewed server certificate waits for the next restart of "
            "dockerd (it never reloads one)."
        )
    if report.scope == "user":
        lines.append("It runs while you are logged in; to run it always: loginctl enable-linger")
    return lines


@schedule_app.command("status")
def status(system: bool = SYSTEM, user: bool = USER, json_out: bool = JSON_OPTION) -> None:
    """The timer's next run and how the last run ended; exit 1 when it is not installed
    or the last run failed.

    Example: certkit schedule status
    """
    from ..schedule import SERVICE, TIMER
    from ..schedule import status as _status

    report = _status(_scope(system, user))
    last = report.last
    failed = last.get("Result") not in ("", "success")
    if not report.installed:
        lines = [f"No {TIMER}: nothing renews by itself. Next: certkit schedule install"]
    else:
        nxt = report.timer.get("NextElapseUSecRealtime") or "not scheduled"
        lines = [f"{TIMER}: {report.timer.get('ActiveState')}, next run {nxt}."]
        ended = last.get("ExecMainExitTimestamp")
        if not ended:
            lines.append(f"{SERVICE} has not run yet.")
        else:
            how = "failed" if failed else "succeeded"
            code = last.get("ExecMainStatus", "?")
            log = "journalctl" + (" --user" if report.scope == "user" else "") + f" -u {SERVICE}"
            lines.append(f"Last run {how} (exit {code}) at {ended}: {log}")
    data = {**report.to_json(), "ok": report.installed and not failed}
    emit(json_out, data, lines)
    if not data["ok"]:
        raise typer.Exit(1)


@schedule_app.command("remove")
def remove(
    system: bool = SYSTEM, user: bool = USER, root: str = ROOT, json_out: bool = JSON_OPTION
) -> None:
    """Stop the timer and remove both units and the textfile they wrote.

    Example: sudo certkit schedule remove
    """
    from ..schedule import remove as _remove

    report = _remove(_scope(system, user), root)
    lines = [f"removed {p}" for p in report.removed] or [
        "No certkit schedule here: nothing to remove."
    ]
    emit(json_out, report.to_json(), lines)
