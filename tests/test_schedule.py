"""Automatic renewal: the 2/3-of-the-lifetime rule, ``renew --due`` and ``certkit schedule``.

The rule's edges are pinned on dates given explicitly (the rule takes ``now``);
the commands run for real: ``renew --due`` against a store, ``schedule
install`` into a ``--root`` sandbox, and the whole timer on a lab host
(tests/lab.py: a real systemd with Debian's docker.service), where
``systemctl start certkit-renew.service`` renews an installed server
certificate and dockerd serves the new serial.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from lab import VENV_CERTKIT, Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_json, cli_ok, run_certkit

from certkit import defaults
from certkit.due import due_by_age
from certkit.records import is_due, renew_after
from certkit.schedule import Schedule, cron_line, render_service, unit_quote
from certkit.store import CAStore

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


# ---------------------------------------------------------------- the rule


def test_due_at_two_thirds_of_the_lifetime_to_the_second() -> None:
    end = T0 + dt.timedelta(days=90)
    assert renew_after(T0, end) == T0 + dt.timedelta(days=60)
    assert not is_due(T0, end, T0 + dt.timedelta(days=60) - dt.timedelta(seconds=1))
    assert is_due(T0, end, T0 + dt.timedelta(days=60))  # >=: due at that very moment
    assert is_due(T0, end, end + dt.timedelta(days=1))  # expired: still due
    assert not is_due(T0, end, T0 - dt.timedelta(days=1))  # not yet valid


def test_fraction_is_configurable_and_checked() -> None:
    end = T0 + dt.timedelta(days=100)
    assert renew_after(T0, end, 0.5) == T0 + dt.timedelta(days=50)
    assert renew_after(T0, end, 1) == end
    assert defaults.RENEW_AT_FRACTION == 2 / 3
    for bad in ("0", "-0.5", "1.5"):
        r = run_certkit("renew", "--due", "--renew-at", bad)
        assert r.returncode == 2, r.stderr
        assert "--renew-at is a fraction of the lifetime above 0 and at most 1" in r.stderr


def test_renew_due_options_that_do_not_go_together_are_refused(store: CAStore) -> None:
    r = run_certkit("renew", "--due", "--expiring-within", "30")
    assert r.returncode == 2 and "not both" in r.stderr
    r = run_certkit("renew", "--renew-at", "0.5")
    assert r.returncode == 2 and "--renew-at goes with --due" in r.stderr


def test_a_record_is_due_by_its_own_dates(store: CAStore) -> None:
    cli_ok("client-context", "laptop", "--host", "docker1.example.com", "--days", "30")
    (record,) = [r for r in store.inventory().find(kind="client")]
    start = dt.datetime.fromisoformat(record.not_before)
    assert record.renew_after() == renew_after(start, record.not_after_dt)
    later = record.renew_after()
    assert [r.name for r in due_by_age(store, 2 / 3, later)] == ["laptop"]
    assert due_by_age(store, 2 / 3, later - dt.timedelta(seconds=1)) == []


def test_renew_due_renews_only_what_is_past_the_fraction(store: CAStore) -> None:
    # Two clients issued now, with backdated starts of 5 minutes (certs.BACKDATE): one valid
    # for 3 days (5 min = 0.116% of its life), one for a year (0.001%).  Nothing is faked:
    # at --renew-at 0.001 the first one really is past that fraction, the second is not.
    cli_ok("client-context", "short", "--host", "docker1.example.com", "--days", "3")
    cli_ok("client-context", "long", "--host", "docker1.example.com", "--days", "365")
    nothing = cli_json("renew", "--due")
    assert nothing["due"] == [] and nothing["renewed"] == [] and nothing["renew_at"] == 2 / 3
    assert "Nothing is past 0.667 of its lifetime." in cli_ok("renew", "--due")

    dry = cli_json("renew", "--due", "--renew-at", "0.001", "--dry-run")
    assert [d["name"] for d in dry["due"]] == ["short"]
    assert dry["renewed"] == []
    done = cli_json("renew", "--due", "--renew-at", "0.001")
    assert [r["name"] for r in done["renewed"]] == ["short"]
    assert done["due"][0]["renew_after"] < dt.datetime.now(dt.UTC).isoformat()
    active = {r.name: r for r in store.inventory().newest_active().values()}
    assert active["short"].serial == done["renewed"][0]["serial"]


def test_status_shows_when_the_next_certificate_is_renewed(store: CAStore) -> None:
    cli_ok("client-context", "laptop", "--host", "docker1.example.com", "--days", "90")
    out = cli_ok("status")
    data = cli_json("status")
    after = data["next_expiry"]["renew_after"]
    start = dt.datetime.fromisoformat(store.inventory().find(kind="client")[0].not_before)
    assert abs(dt.datetime.fromisoformat(after) - (start + dt.timedelta(days=60))) < (
        dt.timedelta(minutes=4)
    )  # 2/3 of 90 days and the 5-minute backdate
    left = (dt.datetime.fromisoformat(after) - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    assert f"renew --due renews it in {int(left)} days." in out  # 59: issued a moment ago


# ---------------------------------------------------------------- the unit files


def test_unit_words_are_quoted_as_systemd_splits_them() -> None:
    assert unit_quote("/usr/bin/certkit") == "/usr/bin/certkit"
    assert unit_quote("/srv/my store") == '"/srv/my store"'
    assert unit_quote("100%") == "100%%"  # a specifier otherwise
    assert unit_quote("$HOME") == "$$HOME"
    assert unit_quote('a"b') == '"a\\"b"'


def test_service_renews_then_writes_the_textfile_even_after_a_failure() -> None:
    s = Schedule(
        "system",
        restart=True,
        fleet="/srv/hosts.ini",
        textfile="/var/lib/prometheus/node-exporter/certkit.prom",
        certkit=("/usr/bin/certkit",),
        env={"CERTKIT_HOME": "/root/certkit home"},
    )
    text = render_service(s)
    assert "ExecStart=/usr/bin/certkit renew --due --restart\n" in text
    assert "ExecStart=/usr/bin/certkit fleet apply /srv/hosts.ini --restart\n" in text
    assert (
        "ExecStopPost=/usr/bin/certkit status --format prometheus --out "
        "/var/lib/prometheus/node-exporter/certkit.prom\n" in text
    )
    assert 'Environment="CERTKIT_HOME=/root/certkit home"' in text
    for line in ("ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes"):
        assert f"\n{line}\n" in text
    writable = next(x for x in text.splitlines() if x.startswith("ReadWritePaths="))
    assert '"-/root/certkit home"' in writable and "-/etc/docker" in writable
    user = render_service(Schedule("user", certkit=("/usr/bin/certkit",)))
    assert "ProtectSystem" not in user and "ExecStart=/usr/bin/certkit renew --due\n" in user


def test_cron_line_runs_the_same_steps() -> None:
    s = Schedule(
        "system",
        restart=True,
        textfile="/tmp/x.prom",
        certkit=("/usr/bin/certkit",),
        env={"CERTKIT_HOME": "/root/s"},
    )
    line = cron_line(s, minute=7)
    fields = line.split(" ", 6)
    assert fields[:6] == ["7", "0,12", "*", "*", "*", "root"]
    argv = shlex.split(fields[6])
    assert argv[:4] == ["env", "CERTKIT_HOME=/root/s", "sh", "-c"]
    assert "/usr/bin/certkit renew --due --restart;" in argv[4]
    assert argv[4].endswith("2>&1 | logger -t certkit")
    user = cron_line(Schedule("user", certkit=("/usr/bin/certkit",)), minute=7)
    assert user.startswith("7 0,12 * * * env ")


def test_install_into_a_root_is_atomic_idempotent_and_removed(
    store: CAStore, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    first = cli_json("schedule", "install", "--root", str(root), "--textfile", "none")
    units = root / "etc/systemd/system"
    assert sorted(Path(p).name for p in first["written"]) == [
        "certkit-renew.service",
        "certkit-renew.timer",
    ]
    timer = (units / "certkit-renew.timer").read_text()
    for line in ("OnCalendar=*-*-* 00,12:00:00", "RandomizedDelaySec=1h", "Persistent=true"):
        assert line in timer
    assert oct((units / "certkit-renew.timer").stat().st_mode & 0o777) == "0o644"
    again = cli_json("schedule", "install", "--root", str(root), "--textfile", "none")
    assert again["unchanged"] is True and again["written"] == []
    assert not list(units.glob(".*"))  # no temp file left by the atomic writes
    changed = cli_json(
        "schedule", "install", "--root", str(root), "--textfile", "none", "--renew-at", "0.5"
    )
    assert [Path(p).name for p in changed["written"]] == ["certkit-renew.service"]
    assert "renew --due --renew-at 0.5" in (units / "certkit-renew.service").read_text()
    removed = cli_json("schedule", "remove", "--root", str(root))
    assert len(removed["removed"]) == 2 and list(units.iterdir()) == []


def test_bad_schedule_input_is_one_sentence(store: CAStore, tmp_path: Path) -> None:
    r = run_certkit("schedule", "install", "--system", "--user", "--root", str(tmp_path))
    assert r.returncode == 2 and "Give --system or --user, not both." in r.stderr
    r = run_certkit("schedule", "install", "--fleet", str(tmp_path / "nope.ini"), "--cron")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run_certkit("schedule", "install", "--textfile", str(tmp_path / "m.txt"), "--cron")
    assert r.returncode == 2 and "reads only *.prom" in r.stderr


# ---------------------------------------------------------------- a real systemd


def _served_serial(host: LabHost, tls: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    ctx.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    with (
        socket.create_connection((host.address, 2376), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=host.address) as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _context_tls(docker_config: Path, name: str) -> Path:
    for meta in (docker_config / "contexts/meta").rglob("meta.json"):
        if json.loads(meta.read_text())["Name"] == name:
            return docker_config / "contexts/tls" / meta.parent.name / "docker"
    raise AssertionError(f"no docker context {name!r}")


# A root-owned directory node_exporter would read (--collector.textfile.directory): Debian's
# /var/lib/prometheus belongs to the prometheus user, where certkit refuses to write.
TEXTFILE = "/var/lib/node_exporter/textfile/certkit.prom"
CERT = "/etc/docker/certkit/server-cert.pem"


@pytest.mark.lab
def test_the_timer_renews_a_due_server_on_a_real_systemd(lab: Lab) -> None:
    host = lab.host()

    def certkit(*args: str) -> str:
        r = host.certkit(*args)
        assert r.returncode == 0, f"certkit {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout

    def run_service() -> None:
        done = host.sh("systemctl start certkit-renew.service", timeout=300)
        log = host.journal("certkit-renew")
        assert done.returncode == 0, done.stderr + log[-3000:]
        assert host.check("systemctl show -p Result --value certkit-renew").strip() == "success"

    def docker_started() -> str:
        return host.check("systemctl show -p ExecMainStartTimestampMonotonic --value docker")

    certkit("init-ca")
    certkit("issue-server", host.address, "--install", "--restart", "--days", "3")
    certkit("client-context", "self", "--host", host.address)
    tls = _context_tls(host.path("/root/.docker"), "self")
    first = x509.load_pem_x509_certificate(host.path(CERT).read_bytes()).serial_number
    assert _served_serial(host, tls) == first

    # Installed with the default rule: the timer is listed, the service hardened.
    host.check("install -d -m 0755 /var/lib/node_exporter/textfile")
    default = host.certkit("schedule", "install", "--restart")  # Debian's dir: prometheus's
    assert "no Prometheus textfile: certkit may not write into" in default.stderr
    assert "ExecStopPost" not in host.path("/etc/systemd/system/certkit-renew.service").read_text()
    out = certkit("schedule", "install", "--restart", "--textfile", TEXTFILE)
    assert "certkit-renew.timer enabled and started; next run:" in out
    timers = host.check("systemctl list-timers --all --no-pager")
    assert "certkit-renew.timer" in timers and "certkit-renew.service" in timers
    assert (
        "ProtectSystem=strict" in host.path("/etc/systemd/system/certkit-renew.service").read_text()
    )

    # Nothing due (minutes into a 3-day life): nothing changes, docker is not restarted,
    # the textfile is written.
    cert_before, started = host.path(CERT).read_bytes(), docker_started()
    run_service()
    assert host.path(CERT).read_bytes() == cert_before
    assert docker_started() == started
    assert "Nothing is past 0.667 of its lifetime." in host.journal("certkit-renew")
    metrics = host.path(TEXTFILE).read_text()
    assert f'serial="{first:x}"' in metrics
    status = certkit("schedule", "status")
    assert "Last run succeeded (exit 0)" in status

    # The same timer at --renew-at 0.001: the certificate, 5 minutes (its backdate) into
    # a 3-day life, is past 0.1% of it, really: renewed, dockerd restarted, new serial served.
    certkit("schedule", "install", "--restart", "--renew-at", "0.001", "--textfile", TEXTFILE)
    run_service()
    second = x509.load_pem_x509_certificate(host.path(CERT).read_bytes()).serial_number
    assert second != first
    assert _served_serial(host, tls) == second
    assert docker_started() != started
    assert f'serial="{second:x}"' in host.path(TEXTFILE).read_text()
    assert f'serial="{first:x}"' not in host.path(TEXTFILE).read_text()

    # A renewal that fails (the certificate directory replaced by a file: nothing can be
    # installed there): the service fails, the textfile is still written (ExecStopPost),
    # and `schedule status` says so, exit 1.
    host.check("mv /etc/docker/certkit /etc/docker/certkit.away && touch /etc/docker/certkit")
    written = host.path(TEXTFILE).stat().st_mtime_ns
    assert host.sh("systemctl start certkit-renew.service", timeout=300).returncode != 0
    assert host.check("systemctl show -p Result --value certkit-renew").strip() == "exit-code"
    log = host.journal("certkit-renew")[-3000:]
    assert host.path(TEXTFILE).stat().st_mtime_ns > written, log
    failed = host.certkit("schedule", "status")
    assert failed.returncode == 1 and "Last run failed (exit " in failed.stdout, failed.stdout
    host.check("rm /etc/docker/certkit && mv /etc/docker/certkit.away /etc/docker/certkit")
    assert _served_serial(host, tls) == second  # dockerd was never touched

    # Removed: no unit, no timer in systemd's memory, no textfile.
    out = certkit("schedule", "remove")
    assert "removed /etc/systemd/system/certkit-renew.timer" in out
    assert "certkit-renew" not in host.check("systemctl list-timers --all --no-pager")
    assert "certkit-renew" not in host.check("systemctl list-units --all --no-pager")
    for unit in ("certkit-renew.service", "certkit-renew.timer"):
        load = host.check(f"systemctl show -p LoadState --value {unit}").strip()
        assert load == "not-found", unit
        assert not host.path(f"/etc/systemd/system/{unit}").exists()
    assert not host.path("/etc/systemd/system/timers.target.wants/certkit-renew.timer").exists()
    assert not host.path(TEXTFILE).exists()
    assert host.certkit("schedule", "status").returncode == 1


@pytest.mark.lab
def test_a_user_timer_renews_that_users_contexts(lab: Lab) -> None:
    """``schedule install --user``: ops's own timer, under ops's systemd user manager,
    renews ops's docker context; nothing of root's is touched."""
    host = lab.host()
    # ops runs this checkout's virtualenv, whose python lives under root's pyenv: let ops
    # into /root (the lab's overlay only: nothing on this machine changes).
    host.check("chmod 755 /root")
    uid = host.check("id -u ops").strip()
    host.check("loginctl enable-linger ops")  # what the install output advises
    deadline = time.monotonic() + 30
    while host.sh(f"systemctl is-active user@{uid}.service").stdout.strip() != "active":
        assert time.monotonic() < deadline, host.journal(f"user@{uid}")[-2000:]
        time.sleep(0.2)
    env = (
        f"XDG_RUNTIME_DIR=/run/user/{uid} HOME=/home/ops "
        "CERTKIT_HOME=/home/ops/certkit DOCKER_CONFIG=/home/ops/.docker"
    )

    def as_ops(command: str) -> str:
        done = host.sh(f"cd /home/ops && runuser -u ops -- env {env} {command}")
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        return done.stdout

    certkit = str(VENV_CERTKIT)
    as_ops(f"{certkit} init-ca")
    as_ops(f"{certkit} client-context laptop --host docker1.example.com --days 3")
    cert = host.path("/home/ops/.docker")
    before = {p: p.read_bytes() for p in cert.glob("contexts/tls/*/docker/cert.pem")}
    assert len(before) == 1

    out = as_ops(f"{certkit} schedule install --user --renew-at 0.001")
    assert "certkit-renew.timer enabled and started" in out
    unit = host.path("/home/ops/.config/systemd/user/certkit-renew.service").read_text()
    assert "Environment=CERTKIT_HOME=/home/ops/certkit" in unit and "--restart" not in unit
    assert "certkit-renew.timer" in as_ops("systemctl --user list-timers --all --no-pager")
    as_ops("systemctl --user start certkit-renew.service")
    ((path, old),) = before.items()
    assert path.read_bytes() != old, "the context's certificate was not renewed"
    status = as_ops(f"{certkit} schedule status --user")
    assert "Last run succeeded (exit 0)" in status
    assert re.search(r"next run \w{3} \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC\.", status), status
    assert not host.path("/etc/systemd/system/certkit-renew.timer").exists()

    as_ops(f"{certkit} schedule remove --user")
    assert "certkit-renew" not in as_ops("systemctl --user list-timers --all --no-pager")
    assert not list(host.path("/home/ops/.config/systemd/user").glob("certkit-renew.*"))
