"""``certkit schedule``: renewal that runs by itself, from a systemd timer (or cron).

Twice a day (``OnCalendar`` 00:00 and 12:00, spread by ``RandomizedDelaySec``,
caught up after downtime by ``Persistent=true``) the timer starts a oneshot
service that runs ``certkit renew --due`` (the 2/3-of-the-lifetime rule of
:func:`certkit.records.renew_after`), then ``certkit fleet apply INVENTORY``
when asked, and always, even after a failure, writes the Prometheus textfile
(``certkit status --format prometheus --out FILE``): an alert sees a renewal
that keeps failing.  Output goes to the journal (``journalctl -u
certkit-renew``).  The service is hardened (read-only system but for what
renewal writes, private /tmp, no new privileges).

Two scopes: ``system`` (root's units in /etc/systemd/system: servers installed
here or over SSH, with ``--restart``), and ``user`` (``systemctl --user``: a
person's own store, renewing their docker contexts).  Where there is no
systemd, :func:`cron_line` gives the crontab line doing the same.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import files, paths
from .errors import OperationError, UsageError

Scope = Literal["system", "user"]
ON_CALENDAR = "*-*-* 00,12:00:00"  # twice a day
RANDOMIZED_DELAY = "1h"  # hosts that share a CA or an SSH bastion do not all renew at once
SERVICE = f"{paths.SCHEDULE_UNIT}.service"
TIMER = f"{paths.SCHEDULE_UNIT}.timer"
_TEXTFILE_KEY = "X-CertkitTextfile"  # systemd ignores X- keys: `schedule remove` reads it


@dataclass(frozen=True)
class Schedule:
    """What the timer runs: the choices of ``certkit schedule install``, as plain data."""

    scope: Scope = "system"
    restart: bool = False
    fleet: str | None = None  # an Ansible inventory (absolute path)
    renew_at: float | None = None  # None: the default fraction (2/3)
    textfile: str | None = None  # the Prometheus textfile, or none
    certkit: tuple[str, ...] = ()  # how to run certkit: the console script or python -m
    env: dict[str, str] = field(default_factory=dict)  # CERTKIT_HOME, DOCKER_CONFIG

    def renew_argv(self) -> list[str]:
        argv = [*self.certkit, "renew", "--due"]
        if self.renew_at is not None:
            argv += ["--renew-at", f"{self.renew_at:g}"]
        return argv + (["--restart"] if self.restart else [])

    def fleet_argv(self) -> list[str] | None:
        if self.fleet is None:
            return None
        return [*self.certkit, "fleet", "apply", self.fleet] + (
            ["--restart"] if self.restart else []
        )

    def textfile_argv(self) -> list[str] | None:
        if self.textfile is None:
            return None
        return [*self.certkit, "status", "--format", "prometheus", "--out", self.textfile]


def certkit_command() -> tuple[str, ...]:
    """How the units run certkit: this very installation, by absolute path."""
    script = Path(sys.argv[0]).absolute()
    if script.name == "certkit" and script.is_file():
        return (str(script),)
    return (sys.executable, "-m", "certkit")


def default_textfile() -> str | None:
    """Debian's node_exporter textfile (``paths.TEXTFILE``) when certkit may write there.

    Debian's ``/var/lib/prometheus`` belongs to the prometheus user, and certkit
    writes only into directories nobody but root controls: then there is no
    default, and ``--textfile`` names a root-owned directory node_exporter reads.
    """
    try:
        return str(files.check_output_file(paths.TEXTFILE, force=True, flag="--textfile"))
    except UsageError:
        return None


def make_schedule(
    scope: Scope,
    *,
    restart: bool = False,
    fleet: str | None = None,
    renew_at: float | None = None,
    textfile: str | None = None,
) -> Schedule:
    """A :class:`Schedule` for this store and docker config, inputs checked (UsageError)."""
    from .records import check_renew_at

    if renew_at is not None:
        check_renew_at(renew_at)
    if fleet is not None:
        if not Path(fleet).is_file():
            raise UsageError(f"The inventory {fleet} does not exist: give the Ansible inventory.")
        fleet = os.path.abspath(fleet)
    if textfile is not None:
        if not textfile.endswith(".prom"):
            raise UsageError(
                f"--textfile {textfile}: node_exporter's textfile collector reads only *.prom "
                "files; name it certkit.prom."
            )
        # The checks `status --out` makes when the service writes it: fail now, not at 3 am.
        textfile = str(files.check_output_file(textfile, force=True, flag="--textfile"))
    env = {paths.STORE_ENV: str(paths.store_root())}
    if os.environ.get("DOCKER_CONFIG"):
        env["DOCKER_CONFIG"] = str(paths.docker_config_dir())
    return Schedule(scope, restart, fleet, renew_at, textfile, certkit_command(), env)


# ---------------------------------------------------------------- the unit files


def unit_quote(word: str) -> str:
    """One word of an ``ExecStart=`` or ``Environment=`` line, as systemd splits and expands
    them: ``%`` (specifiers) and ``$`` (variables) doubled, quoted when it holds blanks."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not any(c in word for c in " \t\"\\'") and word != ";":
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _exec(argv: list[str]) -> str:
    return " ".join(unit_quote(w) for w in argv)


def _writable(s: Schedule) -> list[str]:
    """What renewal writes, for ``ReadWritePaths=`` under ``ProtectSystem=strict`` (``-``:
    a path that does not exist is skipped instead of failing the service)."""
    out = [
        s.env[paths.STORE_ENV],
        str(paths.DAEMON_JSON.parent),  # daemon.json and certkit's TLS files
        str(paths.DROPIN_DIR),
        "/etc/ufw",  # a server's firewall rules, re-applied by a renewal
        "/etc/firewalld",
    ]
    if "DOCKER_CONFIG" in s.env:
        out.append(s.env["DOCKER_CONFIG"])
    else:
        out.append(str(Path.home() / ".docker"))
    if s.textfile is not None:
        out.append(str(Path(s.textfile).parent))
    if s.fleet is not None:
        out.append(str(Path.home() / ".ansible"))  # ansible's tmp and control sockets
    return [f"-{p}" for p in dict.fromkeys(out)]


# systemd.exec(5) sandboxing.  Not set, on purpose: ProtectKernelTunables (ufw writes
# sysctls when it reloads), MemoryDenyWriteExecute (cffi callbacks), PrivateDevices
# and a capability bound (an install may need any of root's usual powers).
_HARDENING = (
    "ProtectSystem=strict",
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
)


def _hardening(s: Schedule) -> list[str]:
    """:data:`_HARDENING`, less ``PrivateTmp`` when certkit itself lives under /tmp or
    /var/tmp (a checkout run from there): a private /tmp would hide its own program."""
    program = Path(s.certkit[0]).resolve() if s.certkit else Path("/usr/bin")
    under_tmp = any(program.is_relative_to(d) for d in (Path("/tmp"), Path("/var/tmp")))
    return [h for h in _HARDENING if not (under_tmp and h == "PrivateTmp=yes")]


def render_service(s: Schedule) -> str:
    """The oneshot service: renew what is due, the fleet, then always the textfile."""
    lines = [
        "# Written by `certkit schedule install`; `certkit schedule remove` removes it.",
        "[Unit]",
        "Description=certkit: renew certificates past "
        + ("2/3" if s.renew_at is None else f"{s.renew_at:g}")
        + " of their lifetime",
    ]
    if s.scope == "system":
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += ["", "[Service]", "Type=oneshot", "SyslogIdentifier=certkit"]
    lines += [f"Environment={unit_quote(f'{k}={v}')}" for k, v in sorted(s.env.items())]
    lines.append(f"ExecStart={_exec(s.renew_argv())}")
    fleet = s.fleet_argv()
    if fleet is not None:
        lines.append(f"ExecStart={_exec(fleet)}")
    textfile = s.textfile_argv()
    if textfile is not None:  # ExecStopPost: runs after a failed renewal too
        lines.append(f"ExecStopPost={_exec(textfile)}")
        lines.append(f"{_TEXTFILE_KEY}={unit_quote(str(s.textfile))}")
    if s.scope == "system":
        lines += _hardening(s)
        lines.append("ReadWritePaths=" + " ".join(unit_quote(p) for p in _writable(s)))
    else:
        lines.append("NoNewPrivileges=yes")  # user managers cannot set up mount namespaces
    return "\n".join(lines) + "\n"


def render_timer(s: Schedule) -> str:
    """Twice a day, a random delay of up to an hour, runs missed while off caught up."""
    return "\n".join(
        [
            "# Written by `certkit schedule install`; `certkit schedule remove` removes it.",
            "[Unit]",
            "Description=certkit: renew due certificates twice a day",
            "",
            "[Timer]",
            f"OnCalendar={ON_CALENDAR}",
            f"RandomizedDelaySec={RANDOMIZED_DELAY}",
            "Persistent=true",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )


def cron_line(s: Schedule, minute: int | None = None) -> str:
    """The crontab line doing what the timer does, for a machine without systemd.

    ``system`` scope: an ``/etc/cron.d`` line (with the user field, root); ``user``:
    a line for ``crontab -e``.  A random minute spreads the hosts; output goes to
    syslog through ``logger -t certkit``.
    """
    import shlex

    minute = random.randrange(60) if minute is None else minute
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(s.env.items()))
    steps = [shlex.join(s.renew_argv())]
    fleet = s.fleet_argv()
    if fleet is not None:
        steps.append(shlex.join(fleet))
    job = " && ".join(steps)
    textfile = s.textfile_argv()
    if textfile is not None:
        job = f"{{ {job}; }}; {shlex.join(textfile)}"
    job = f"{{ {job}; }} 2>&1 | logger -t certkit"
    user = " root" if s.scope == "system" else ""
    # cron gives % a meaning of its own (newline): escape it
    return f"{minute} 0,12 * * *{user} env {env} sh -c {shlex.quote(job)}".replace("%", "\\%")


# ---------------------------------------------------------------- systemctl


@dataclass
class ScheduleReport:
    """What ``schedule install|remove|status`` found or did."""

    scope: Scope
    unit_dir: str
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: bool = False
    enabled: bool = False  # systemctl was run (not under --root)
    service: str = ""  # the service's text (install)
    timer: dict[str, str] = field(default_factory=dict)  # systemctl show of the timer
    last: dict[str, str] = field(default_factory=dict)  # systemctl show of the service

    @property
    def installed(self) -> bool:
        return bool(self.timer.get("UnitFileState", "") not in ("", "not-found"))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "scope": self.scope,
            "unit_dir": self.unit_dir,
            "written": self.written,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "enabled": self.enabled,
            "timer": self.timer,
            "last_run": self.last,
        }


def unit_dir(scope: Scope, root: str | None = None) -> Path:
    """Where the units go: /etc/systemd/system (re-rooted by ``root``), or the user's."""
    if scope == "user":
        if root is not None:
            return Path(paths.system_paths(root).at(str(paths.user_unit_dir())))
        return paths.user_unit_dir()
    return Path(paths.system_paths(root).unit_dir)


def _systemctl(scope: Scope, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["systemctl", *(["--user"] if scope == "user" else []), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise OperationError(
            "systemctl is not installed: this machine has no systemd; use "
            "`certkit schedule install --cron` for a crontab line."
        ) from None
    if check and done.returncode != 0:
        raise OperationError(
            f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout.strip()}."
        )
    return done


def require_systemd(scope: Scope) -> None:
    """A UsageError unless systemd runs here (``sd_booted``: /run/systemd/system exists)."""
    if shutil.which("systemctl") is None or not os.path.isdir("/run/systemd/system"):
        flag = " --user" if scope == "user" else ""
        raise UsageError(
            "systemd does not run on this machine: print a crontab line instead with "
            f"`certkit schedule install{flag} --cron`."
        )


def _require_root(scope: Scope, root: str | None, verb: str) -> None:
    if scope == "system" and root is None and os.geteuid() != 0:
        raise UsageError(
            f"The system timer is root's: run `sudo certkit schedule {verb}`, or "
            f"`certkit schedule {verb} --user` for a timer of your own."
        )


def install(s: Schedule, root: str | None = None) -> ScheduleReport:
    """Write the timer and the service atomically, then enable and start the timer.

    Under ``root`` (tests, dry runs) only the files are written.  Running it again
    with the same choices changes nothing (``unchanged``).
    """
    where = unit_dir(s.scope, root)
    _require_root(s.scope, root, "install")
    if root is None:
        require_systemd(s.scope)
    report = ScheduleReport(s.scope, str(where), service=render_service(s))
    wanted = {where / SERVICE: report.service, where / TIMER: render_timer(s)}
    changed = [p for p, text in wanted.items() if files.read_text(p) != text]
    if changed:
        files.ensure_dir(where, files.PUBLIC_DIR)
        files.atomic_write_many([(p, wanted[p].encode(), files.PUBLIC_FILE) for p in changed])
        report.written = [str(p) for p in changed]
    report.unchanged = not changed
    if root is None:
        if changed:
            _systemctl(s.scope, "daemon-reload")
        _systemctl(s.scope, "enable", "--now", TIMER)
        report.enabled = True
        report.timer, report.last = timer_state(s.scope), service_state(s.scope)
    return report


_TIMER_PROPS = ("UnitFileState", "ActiveState", "NextElapseUSecRealtime", "LastTriggerUSec")
_SERVICE_PROPS = (
    "ActiveState",
    "Result",
    "ExecMainStatus",
    "ExecMainStartTimestamp",
    "ExecMainExitTimestamp",
)


def _show(scope: Scope, unit: str, props: tuple[str, ...]) -> dict[str, str]:
    done = _systemctl(scope, "show", unit, "--timestamp=utc", "-p", ",".join(props), check=False)
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {k: found.get(k, "") for k in props}


def timer_state(scope: Scope) -> dict[str, str]:
    """``systemctl show`` of the timer: whether it is enabled, its next and last run."""
    return _show(scope, TIMER, _TIMER_PROPS)


def service_state(scope: Scope) -> dict[str, str]:
    """``systemctl show`` of the service: how its last run ended, and when."""
    return _show(scope, SERVICE, _SERVICE_PROPS)


def status(scope: Scope) -> ScheduleReport:
    """The timer's next run and the service's last result."""
    require_systemd(scope)
    report = ScheduleReport(scope, str(unit_dir(scope)))
    report.timer, report.last = timer_state(scope), service_state(scope)
    return report


def _textfile_of(service: Path) -> str | None:
    text = files.read_text(service) or ""
    for line in text.splitlines():
        if line.startswith(f"{_TEXTFILE_KEY}="):
            import shlex

            return shlex.split(line.split("=", 1)[1].replace("%%", "%").replace("$$", "$"))[0]
    return None


def remove(scope: Scope, root: str | None = None) -> ScheduleReport:
    """Stop and disable the timer, delete both units and the textfile the service wrote,
    and make systemd forget them (daemon-reload, reset-failed): nothing is left behind."""
    where = unit_dir(scope, root)
    _require_root(scope, root, "remove")
    report = ScheduleReport(scope, str(where))
    service, timer = where / SERVICE, where / TIMER
    textfile = _textfile_of(service)
    present = [p for p in (timer, service) if p.exists()]
    if root is None and present:
        require_systemd(scope)
        _systemctl(scope, "disable", "--now", TIMER, check=False)
        _systemctl(scope, "stop", SERVICE, check=False)
    for p in present:
        p.unlink()
        report.removed.append(str(p))
    if textfile is not None and root is None and os.path.exists(textfile):
        os.unlink(textfile)
        report.removed.append(textfile)
    if present:
        files.fsync_dir(where)
        if root is None:
            _systemctl(scope, "daemon-reload")
            _systemctl(scope, "reset-failed", SERVICE, TIMER, check=False)
            report.enabled = True
    return report
