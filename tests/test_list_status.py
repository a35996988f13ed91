"""`certkit list` and `certkit status`: the inventory of every CA, expiry, renew commands."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

from support import run_certkit

from certkit import ca, names
from certkit.origins import CIOrigin
from certkit.store import CAStore


def _init(name: str = "default") -> CAStore:
    args = ["init-ca"] if name == "default" else ["init-ca", "--ca", name]
    r = run_certkit(*args)
    assert r.returncode == 0, r.stderr
    return CAStore(name)


def test_status_exits_1_with_the_renew_command_inside_the_window() -> None:
    store = _init()
    ca.issue(store, "client", "laptop", "laptop", days=365)

    r = run_certkit("status", "--warn-days", "400")
    assert r.returncode == 1, r.stdout
    assert "EXPIRING client laptop" in " ".join(r.stdout.split())
    assert "renew: certkit renew client laptop" in r.stdout

    r = run_certkit("status", "--warn-days", "10")
    assert r.returncode == 0, r.stdout
    assert r.stdout.startswith("OK: 2 certificates, none needs renewal yet (window 10 days)")


def test_status_reports_expired_items_and_every_kind_of_renew_command() -> None:
    store = _init()
    prod = _init("prod")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    ca.issue(
        store, "server", "docker1.lan", "docker1.lan", names.parse_names(["docker1.lan"]), days=5
    )
    ca.issue(prod, "ci", "gha", "gha", not_after=past)
    ca.issue(prod, "client", "ops laptop", "ops", days=20)

    r = run_certkit("status", "--json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False and data["warn_days"] == 30
    renew = {(i["kind"], i["name"]): i["renew"] for i in data["attention"]}
    assert renew == {
        ("server", "docker1.lan"): "certkit renew server docker1.lan",
        ("ci", "gha"): "certkit renew ci gha --ca prod",
        ("client", "ops laptop"): "certkit renew client 'ops laptop' --ca prod",
    }
    # Soonest first: the expired one leads.
    assert data["attention"][0]["status"] == "expired"

    human = run_certkit("status").stdout
    assert f"gha (CA prod): expired on {past:%Y-%m-%d}" in human

    # A CA inside the window is renewed by rotating it.
    r = run_certkit("status", "--ca", "prod", "--warn-days", "4000", "--json")
    renew = [i["renew"] for i in json.loads(r.stdout)["attention"] if i["kind"] == "ca"]
    assert renew == ["certkit rotate-ca start --ca prod"]


def test_superseded_and_replaced_certificates_do_not_count() -> None:
    store = _init()
    old = ca.issue(store, "client", "laptop", "laptop", days=5)
    new = ca.issue(store, "client", "laptop", "laptop", days=365)
    retired = ca.issue(store, "server", "gone", "gone", days=2)
    with store.transaction() as inv:  # what `renew` does to the record it replaces
        rec = inv.get(retired.record.serial)
        assert rec is not None
        rec.superseded_by = "feed"

    assert run_certkit("status").returncode == 0

    items = json.loads(run_certkit("list", "--json").stdout)
    by_serial = {i["serial"]: i for i in items}
    assert by_serial[old.record.serial]["status"] == "superseded"
    assert by_serial[old.record.serial]["superseded_by"] == new.record.serial
    assert by_serial[new.record.serial]["status"] == "valid"
    assert by_serial[retired.record.serial]["status"] == "superseded"


def test_list_shows_kind_names_expiry_installed_paths_and_filters() -> None:
    store = _init()
    server = ca.issue(
        store, "server", "docker1", "docker1", names.parse_names(["docker1", "10.0.0.5"])
    )
    ca.mark_installed(store, server.record.serial, ["/etc/docker/certkit/server-cert.pem"])
    ca.issue(store, "client", "laptop", "laptop")
    _init("other")

    items = json.loads(run_certkit("list", "--json").stdout)
    assert [(i["ca"], i["kind"], i["name"]) for i in items] == [
        ("default", "ca", "default"),
        ("default", "server", "docker1"),
        ("default", "client", "laptop"),
        ("other", "ca", "other"),
    ]
    srv = items[1]
    assert srv["sans"] == ["docker1", "10.0.0.5"]
    assert srv["installed"] == ["/etc/docker/certkit/server-cert.pem"]
    assert srv["serial"] == server.record.serial and srv["status"] == "valid"
    assert 363 < srv["days_left"] <= 365
    assert srv["renew"] == "certkit renew server docker1"

    human = run_certkit("list").stdout
    assert "names:   docker1, 10.0.0.5" in human
    assert "at:      /etc/docker/certkit/server-cert.pem" in human
    assert server.record.serial in human

    only = json.loads(run_certkit("list", "--kind", "client", "--ca", "default", "--json").stdout)
    assert [i["name"] for i in only] == ["laptop"]


def test_bad_input_and_empty_store() -> None:
    r = run_certkit("list")
    assert r.returncode == 0 and "Nothing issued yet" in r.stdout
    # No store (cron with another HOME): not "all is well".
    r = run_certkit("status")
    assert r.returncode == 2 and "CERTKIT_HOME" in r.stderr, r.stdout + r.stderr
    _init()
    r = run_certkit("list", "--kind", "server")
    assert r.returncode == 0 and "No server certificate in the inventory" in r.stdout
    r = run_certkit("list", "--kind", "robot")
    assert r.returncode == 2 and "Unknown kind 'robot'" in r.stderr
    r = run_certkit("status", "--ca", "missing")
    assert r.returncode == 2 and "certkit init-ca --ca missing" in r.stderr
    r = run_certkit("status", "--warn-days", "-1")
    assert r.returncode == 2


def test_status_imports_neither_docker_nor_cryptography() -> None:
    _init()
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "certkit", "status"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "certkit.inventory" in imported  # the measurement really covers status
    assert not {m for m in imported if m.split(".")[0] in ("docker", "cryptography", "requests")}


def test_short_lived_ci_certificates_are_not_always_expiring() -> None:
    """A 30-day CI certificate against the 30-day default window: due at a third left."""
    assert run_certkit("init-ca").returncode == 0
    store = CAStore()
    ca.issue(store, "ci", "gha", "ci:gha", days=30, origin=CIOrigin(host="h", port=2376))
    fresh = run_certkit("status")
    assert fresh.returncode == 0, fresh.stdout
    # It does expire within the window: the OK line must not claim otherwise.
    assert "none expires within" not in fresh.stdout
    assert "none needs renewal yet (window 30 days)" in fresh.stdout
    with store.transaction() as inv:
        (rec,) = inv.find(kind="ci")
        rec.not_after = (dt.datetime.now(dt.UTC) + dt.timedelta(days=9)).isoformat()
        rec.not_before = (
            dt.datetime.fromisoformat(rec.not_after) - dt.timedelta(days=30)
        ).isoformat()
    due = run_certkit("status")
    assert due.returncode == 1
    assert "certkit renew ci gha" in due.stdout
