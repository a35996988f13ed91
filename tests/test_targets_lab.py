"""The registry and the install record against real systemd lab hosts.

* A host ``fleet apply`` installed is recorded as an Ansible host, and ``certkit
  renew server NAME`` reaches it through Ansible again (its inventory's user,
  key and known_hosts: plain SSH, with nothing recorded of those, could not).
* issue 26: a failed or rolled-back install, and a run killed after each of its
  inventory transactions, leave ``certkit list`` saying what the host serves
  (the serial read over TLS), and renewal replays the install that worked.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab import PLAIN_USER, Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_json, cli_ok, run_certkit
from test_fleet import fleet, inventory
from test_lab import context_tls, served_serial

from certkit.store import CAStore


def in_use(name: str) -> str:
    """The serial ``certkit list`` says is the server certificate in use for ``name``."""
    valid = [
        i["serial"]
        for i in cli_json("list", "--kind", "server")
        if i["name"] == name and i["status"] != "superseded"
    ]
    assert len(valid) == 1, valid
    return str(valid[0])


def serving(host: LabHost, tls: Path) -> str:
    return f"{served_serial(host, tls):032x}"


def test_a_fleet_host_renews_through_ansible(lab: Lab, tmp_path: Path, docker_config: Path) -> None:
    host = lab.host()
    cli_ok("init-ca")
    inv = inventory(tmp_path / "hosts.ini", [host])
    rc, out = fleet("apply", str(inv), "--restart", "--contexts")
    assert rc == 0, out
    record = CAStore().inventory().newest_active("server", host.address)[("server", host.address)]
    target = json.loads(json.dumps(record.origin.target.__dict__))  # type: ignore[union-attr]
    assert record.origin.target.kind == "ansible"  # type: ignore[union-attr]
    assert target == {"host": "h1", "inventory": str(inv), "ssh": f"root@{host.address}",
                      "become": False}  # fmt: skip
    tls = context_tls(docker_config, "h1")
    assert serving(host, tls) == record.serial

    renewed = cli_json("renew", "server", host.address, "--restart")
    assert renewed["restarted"] is True and renewed["serial"] != record.serial
    assert serving(host, tls) == renewed["serial"] == in_use(host.address)
    assert renewed["installed"][0].startswith(f"root@{host.address}:/etc/docker/certkit/")

    # Without the inventory, the same record cannot be reached: it went through Ansible.
    inv.rename(tmp_path / "gone.ini")
    r = run_certkit("renew", "server", host.address)
    assert r.returncode == 2 and "The Ansible inventory" in r.stderr, r.stderr
    assert in_use(host.address) == renewed["serial"]


def test_a_failed_or_killed_install_leaves_the_inventory_on_what_the_host_serves(
    lab: Lab, docker_config: Path
) -> None:
    host = lab.host()
    name = host.address
    done = cli_json("setup", name, *host.cli_args("root"), "--restart", "--context", "lab")
    tls = context_tls(docker_config, "lab")
    good = done["server"]["serial"]
    assert serving(host, tls) == good == in_use(name)

    # A user without sudo: nothing changes on the host, nor in the inventory.
    r = run_certkit("setup", name, *host.cli_args(PLAIN_USER), "--restart", "--context", "lab")
    assert r.returncode != 0, r.stdout
    assert serving(host, tls) == good == in_use(name)

    # A listen address dockerd cannot bind: restarted, failed, rolled back.
    args = ["issue-server", name, *host.cli_args("root"), "--listen", "192.0.2.1", "--restart"]
    r = run_certkit(*args)
    assert r.returncode == 1, r.stdout + r.stderr
    assert serving(host, tls) == good == in_use(name)
    statuses = {i["serial"]: i["superseded_by"] for i in cli_json("list", "--kind", "server")}
    # Both attempts were issued (the user without sudo failed at the write): not installed.
    assert sorted(v for k, v in statuses.items() if k != good) == ["(not installed)"] * 2

    # Killed after each transaction of a renewal with --restart (no flag: all recorded):
    # after its issuance (1st), then, on the next run, after settling what the first left
    # (1st), issuing (2nd) and recording the install (3rd).
    for commit in (1, 3):
        r = run_certkit("renew", "server", name, "--restart",
                        env={"CERTKIT_TEST_CRASH_AT": f"after-commit#{commit}"})  # fmt: skip
        assert r.returncode == -9, r.stdout + r.stderr
        assert serving(host, tls) == in_use(name)
    # The next renewal replays the install that worked (root, 0.0.0.0), not the failed ones.
    renewed = cli_json("renew", "server", name, "--restart")
    assert serving(host, tls) == renewed["serial"] == in_use(name)
    assert host.dockerd_args()[-2:] == ["-H", "tcp://0.0.0.0:2376"]
