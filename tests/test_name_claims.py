"""Issue 27 item 6 (names) and issue 29's trailing dot: no host speaks for another.

The attack: an inventory's ``certkit_sans='["*.corp.example.com", "prod-db.corp.example.com"]'``
put both into one host's certificate, so root on that host could impersonate every Docker
host to every client.  Refused now: wildcards, names ending with a dot (dockerd built
with Go 1.24.8 does not start with ``localhost.`` in its certificate, moby#51367), and a
name already held by another host's active server certificate unless ``--force`` says it
moved, through issue-server, setup and the fleet's action.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import cli_json, cli_ok, run_certkit

from certkit.fleet.action import run_action
from certkit.store import CAStore


def servers(store: CAStore) -> list[str]:
    return sorted(r.name for r in store.inventory().find(kind="server"))


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("docker1.corp.example.com", "--san", "*.corp.example.com"), "is a wildcard"),
        (("*.corp.example.com",), "is a wildcard"),
        (("localhost.",), "ends with a dot"),
        (("docker1.example.com", "--san", "Docker1.Example.COM."), "ends with a dot"),
    ],
)
def test_wildcards_and_trailing_dots_are_refused_and_nothing_issued(
    store: CAStore, args: tuple[str, ...], why: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    r = run_certkit("issue-server", *args, "--out", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    assert why in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert servers(store) == [] and not out.exists()


def test_a_name_another_host_holds_is_refused_unless_it_moved(store: CAStore) -> None:
    cli_ok("issue-server", "db1.corp.example.com", "--san", "prod-db.corp.example.com")
    r = run_certkit("issue-server", "web1.corp.example.com", "--san", "prod-db.corp.example.com")
    assert r.returncode == 2
    assert (
        "'prod-db.corp.example.com' is already in the active server certificate of "
        "'db1.corp.example.com'"
    ) in r.stderr
    assert "run again with --force" in r.stderr
    assert servers(store) == ["db1.corp.example.com"]
    # The same host again is no clash (a re-issue), nor is a name nobody holds.
    cli_ok("issue-server", "db1.corp.example.com", "--san", "prod-db.corp.example.com")
    cli_ok("issue-server", "web1.corp.example.com", "--san", "www.corp.example.com")
    # The primary name is a name too: another host cannot take db1's own name as a SAN.
    r = run_certkit("issue-server", "web2.corp.example.com", "--san", "db1.corp.example.com")
    assert r.returncode == 2 and "'db1.corp.example.com' is already in" in r.stderr
    # --force: the name moved to web1.
    moved = cli_json(
        "issue-server", "web1.corp.example.com", "--san", "prod-db.corp.example.com", "--force"
    )
    assert moved["names"] == ["web1.corp.example.com", "prod-db.corp.example.com"]


def test_setup_refuses_a_name_another_host_holds_before_writing(
    store: CAStore, tmp_path: Path
) -> None:
    cli_ok("issue-server", "db1.corp.example.com", "--san", "prod-db.corp.example.com")
    root = tmp_path / "root"
    r = run_certkit(
        "setup", "web1.corp.example.com", "--install", "--root", str(root),
        "--san", "prod-db.corp.example.com",
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "is already in the active server certificate of 'db1.corp.example.com'" in r.stderr
    assert servers(store) == ["db1.corp.example.com"]
    assert not (root / "etc" / "docker" / "certkit").exists()


def test_the_fleet_action_refuses_before_touching_the_host(store: CAStore) -> None:
    cli_ok("issue-server", "db1.corp.example.com", "--san", "prod-db.corp.example.com")

    def never(script: str) -> tuple[int, str, str]:
        raise AssertionError("the host was reached")

    hostvars: dict[str, Any] = {
        "inventory_hostname": "web1",
        "ansible_host": "web1.corp.example.com",
    }
    for sans, why in (
        (["*.corp.example.com", "prod-db.corp.example.com"], "is a wildcard"),
        (["prod-db.corp.example.com"], "is already in the active server certificate"),
    ):
        res = run_action({"sans": sans}, hostvars, never, check=False)
        assert res["failed"] and why in res["msg"], res
    assert servers(store) == ["db1.corp.example.com"]


def test_issue_server_from_file_refuses_a_name_for_two_hosts(
    store: CAStore, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("web1.example.com shared.example.com\nweb2.example.com shared.example.com\n")
    r = run_certkit("issue-server", "--from-file", str(hosts))
    assert r.returncode == 2 and "a name belongs to one host" in r.stderr, r.stderr
    cli_ok("issue-server", "db1.example.com", "--san", "prod-db.example.com")
    hosts.write_text("web1.example.com\nweb2.example.com prod-db.example.com\n")
    r = run_certkit("issue-server", "--from-file", str(hosts))
    assert r.returncode == 2 and "active server certificate of 'db1.example.com'" in r.stderr
    assert servers(store) == ["db1.example.com"]  # nothing issued for web1 either


def test_the_fleet_action_lets_a_host_keep_its_own_names(store: CAStore) -> None:
    """A host named by its address with a DNS SAN is its own primary (all() lists DNS
    names first): adding a SAN must not clash with the host's own certificate."""
    cli_ok("issue-server", "10.0.0.5", "--san", "web1.corp.example.com")

    def unreachable(script: str) -> tuple[int, str, str]:
        return 255, "", "ssh: connect to host 10.0.0.5 port 22: Connection refused"

    hostvars: dict[str, Any] = {"inventory_hostname": "h1", "ansible_host": "10.0.0.5"}
    res = run_action(
        {"sans": ["web1.corp.example.com", "h1.lab"]}, hostvars, unreachable, check=True
    )
    assert "already in the active server certificate" not in res["msg"], res
