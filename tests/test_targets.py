"""The target registry: a new way of reaching hosts is one kind registered, nothing else.

``MemoryHost`` below is a whole new kind of target (beside this machine, SSH and
Ansible): a Docker host whose files live in a dictionary.  The test registers it
through :func:`certkit.targets.register` (its recorded options, how the command
line names it, how a record reopens it) and then drives every lifecycle step
that reaches a host: ``issue-server``, ``setup``, ``renew server`` (single and
bulk), CA rotation's bundle re-install and the firewall commands.  The library
has no branch for it: each step finds the host through the registry from the
record alone.

The other half of the file is the rule of :mod:`certkit.placement`: a failed
install leaves the inventory as it was (the new certificate "not installed",
never in use), and a run killed in the middle is settled by the next one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from certkit import certs, placement, targets
from certkit.due import renew_due
from certkit.errors import OperationError
from certkit.fwrules import remove_rules_of, show_rules
from certkit.host.hostfiles import HostFiles
from certkit.host.plan import InstallPlan
from certkit.host.target import Target
from certkit.install_options import InstallOptions
from certkit.origins import ServerOrigin
from certkit.paths import SystemPaths
from certkit.records import NOT_INSTALLED
from certkit.renew import renew
from certkit.server import issue_server
from certkit.store import CAStore

UNIT = "[Service]\nExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd.sock\n"
CERT = "/etc/docker/certkit/server-cert.pem"
CA = "/etc/docker/certkit/ca.pem"


@dataclass(frozen=True)
class MemoryRef:
    """What the inventory records for a memory host: its name (the kind's own option)."""

    kind: ClassVar[str] = "memory"
    name: str = ""


@dataclass
class MemoryHost:
    """A Docker host held in memory: path -> bytes."""

    name: str
    files: dict[str, bytes] = field(default_factory=dict)
    applied: list[InstallPlan] = field(default_factory=list)
    system: SystemPaths = field(default_factory=lambda: SystemPaths(PurePosixPath("/")))
    fail: bool = False  # the next apply fails (as a rolled-back restart does)

    @property
    def ref(self) -> MemoryRef:
        return MemoryRef(self.name)

    def check(self, *, restart: bool) -> None:
        pass

    def read_files(self) -> HostFiles:
        sp = self.system

        def text(path: object) -> str | None:
            data = self.files.get(str(path))
            return None if data is None else data.decode()

        cert_paths = [str(p) for p in sp.cert_files.values()]
        dropins = sorted(p for p in self.files if PurePosixPath(p).parent == sp.dropin_dir)
        return HostFiles(
            daemon_json=text(sp.daemon_json),
            units=[(str(u), text(u) or "") for u in sp.unit_files if str(u) in self.files],
            dropins=[(p, text(p) or "") for p in dropins],
            cert_files={p: self.files[p] for p in cert_paths if p in self.files},
        )

    def apply(self, plan: InstallPlan, *, restart: bool) -> bool:
        if self.fail:
            raise OperationError(f"dockerd on {self.name} did not come back: rolled back.")
        self.applied.append(plan)
        for change in plan.changes:
            self.files[change.path] = change.content
        return restart

    def where(self, path: str) -> str:
        return f"memory:{self.name}:{path}"

    def run_script(self, script: str) -> list[str]:
        return []

    def served_serial(self) -> str:
        return certs.serial_hex(certs.load_cert(self.files[CERT]))


HOSTS: dict[str, MemoryHost] = {}


def _from_reach(reach: targets.Reach, recorded: Any) -> MemoryRef | None:
    """The command line names a memory host as ``--ssh memory:NAME``."""
    if reach.ssh and reach.ssh.startswith("memory:"):
        return MemoryRef(reach.ssh.removeprefix("memory:"))
    if isinstance(recorded, MemoryRef) and reach.ssh is None and reach.root is None:
        return recorded
    return None


@pytest.fixture
def memory() -> Iterator[dict[str, MemoryHost]]:
    """The memory kind, registered for the test (and removed after it)."""
    kind = targets.TargetKind(
        "memory",
        MemoryRef,
        lambda ref, cert_dir: HOSTS[ref.name],
        lambda ref: f"the memory host {ref.name}",
        _from_reach,
    )
    targets.register(kind)
    HOSTS.clear()
    HOSTS["h1"] = MemoryHost("h1", {"/lib/systemd/system/docker.service": UNIT.encode()})
    yield HOSTS
    del targets.REGISTRY["memory"]


def cli(*args: str) -> Any:
    """certkit's command line in this process (where the memory kind is registered)."""
    from certkit.cli import app

    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, f"certkit {' '.join(args)}: {r.output} {r.exception!r}"
    return json.loads(r.stdout)


def _record(store: CAStore, serial: str) -> ServerOrigin:
    rec = store.inventory().get(serial)
    assert rec is not None and isinstance(rec.origin, ServerOrigin)
    return rec.origin


def test_a_registered_kind_reaches_every_step_from_its_record(
    store: CAStore, memory: dict[str, MemoryHost]
) -> None:
    host = memory["h1"]
    target: Target = host  # mypy-checked: MemoryHost satisfies the protocol structurally

    # issue-server: the command line names it; the record keeps the kind and its options.
    first = cli("issue-server", "docker1.example.com", "--ssh", "memory:h1",
                "--method", "daemon-json")  # fmt: skip
    assert host.served_serial() == first["serial"]
    assert _record(store, first["serial"]).target == MemoryRef("h1") == target.ref
    stored = json.loads(json.dumps(targets.ref_to_json(MemoryRef("h1"))))
    assert targets.ref_from_json(stored) == MemoryRef("h1")
    config = json.loads(host.files["/etc/docker/daemon.json"])
    assert config["tlsverify"] is True and "tcp://0.0.0.0:2376" in config["hosts"]

    # renew server NAME: no flag, reopened from the record.
    renewed = cli("renew", "server", "docker1.example.com")
    assert host.served_serial() == renewed["serial"] != first["serial"]
    assert renewed["installed"][0].startswith("memory:h1:")

    # Bulk renewal.
    report = renew_due(store, 10_000)
    assert [r.name for r in report.renewed] == ["docker1.example.com"] and report.ok
    assert host.served_serial() == report.renewed[0].serial

    # Rotation: the servers' bundle-only step puts both CAs into the host's ca.pem.
    cli("rotate-ca", "start")
    bundled = renew(store, "server", "docker1.example.com", bundle_only=True)
    assert bundled.serial == report.renewed[0].serial
    assert host.files[CA].count(b"BEGIN CERTIFICATE") == 2

    # The firewall commands read (and record) through the same reference.
    shown = show_rules(store, "docker1.example.com")
    assert shown.host == "the memory host h1" and shown.manager is None
    assert remove_rules_of(store, "docker1.example.com").removed is False
    assert cli("firewall", "show", "docker1.example.com")["host"] == "the memory host h1"

    # setup on a second memory host: one command, named on the command line too.
    memory["h2"] = MemoryHost("h2", {"/lib/systemd/system/docker.service": UNIT.encode()})
    done = cli("setup", "docker2.example.com", "--ssh", "memory:h2", "--method", "daemon-json")
    assert memory["h2"].served_serial() == done["server"]["serial"]
    assert _record(store, done["server"]["serial"]).target == MemoryRef("h2")
    again = cli("setup", "docker2.example.com", "--ssh", "memory:h2", "--method", "daemon-json")
    assert again["changed"] is False


def _in_use(store: CAStore, name: str) -> str:
    found = store.inventory().newest_active("server", name).get(("server", name))
    assert found is not None
    return found.serial


def test_a_failed_install_leaves_the_inventory_as_it_was(
    store: CAStore, memory: dict[str, MemoryHost]
) -> None:
    """issue 26: the record follows what the host serves, never the failed attempt."""
    host = memory["h1"]
    options = InstallOptions(method="daemon-json")
    good = issue_server(store, "docker1", host, options=options)
    assert good.serial == host.served_serial() == _in_use(store, "docker1")

    host.fail = True
    elsewhere = InstallOptions(method="daemon-json", listen="192.0.2.1")
    with pytest.raises(OperationError):
        issue_server(store, "docker1", host, options=elsewhere)
    with pytest.raises(OperationError):
        renew(store, "server", "docker1")
    report = renew_due(store, 10_000)
    assert not report.ok and "could not install it" in report.failed[0]["error"]

    # The host still serves the first certificate, and so says the inventory.
    assert host.served_serial() == good.serial == _in_use(store, "docker1")
    tried = [r for r in store.inventory().find("server", "docker1") if r.serial != good.serial]
    assert len(tried) == 3 and {r.superseded_by for r in tried} == {NOT_INSTALLED}
    assert {r.status() for r in tried} == {"not installed"}
    assert all(r.installed == [] for r in tried)
    listed = {i["serial"]: i for i in cli("list")}
    assert listed[good.serial]["status"] == "valid"
    # Renewal replays the install that worked, not the failed options.
    host.fail = False
    renewed = renew(store, "server", "docker1")
    assert host.served_serial() == renewed.serial == _in_use(store, "docker1")
    assert "tcp://0.0.0.0:2376" in json.loads(host.files["/etc/docker/daemon.json"])["hosts"]


def test_a_run_killed_mid_install_is_settled_by_the_next(
    store: CAStore, memory: dict[str, MemoryHost]
) -> None:
    """An *installing* record (the run died between its two transactions) is finished
    when the host has its certificate, else recorded as not installed."""
    host = memory["h1"]
    options = InstallOptions(method="daemon-json")
    good = issue_server(store, "docker1", host, options=options)
    fresh = renew(store, "server", "docker1")  # then pretend the run died before recording
    with store.transaction() as inv:
        rec, old = inv.get(fresh.serial), inv.get(good.serial)
        assert rec is not None and old is not None
        rec.superseded_by, old.superseded_by = placement.INSTALLING, None
    assert _in_use(store, "docker1") == good.serial  # not in use before it is settled
    assert placement.settle(store, "docker1") == [fresh.serial]
    assert _in_use(store, "docker1") == fresh.serial == host.served_serial()
    assert store.inventory().get(good.serial).superseded_by == fresh.serial  # type: ignore[union-attr]

    # Died before the host got it: undone.
    later = renew(store, "server", "docker1")
    host.files[CERT] = store.issued_dir(fresh.serial).joinpath("cert.pem").read_bytes()
    with store.transaction() as inv:
        rec, old = inv.get(later.serial), inv.get(fresh.serial)
        assert rec is not None and old is not None
        rec.superseded_by, old.superseded_by = placement.INSTALLING, None
    renew(store, "server", "docker1")  # the next run settles first, then renews
    assert store.inventory().get(later.serial).superseded_by == NOT_INSTALLED  # type: ignore[union-attr]
    assert _in_use(store, "docker1") == host.served_serial()


@pytest.mark.parametrize(
    ("reach", "recorded", "expected"),
    [
        # issue-server / setup: the flags alone say which kind.
        (targets.Reach(), None, targets.LocalRef()),
        (targets.Reach(root="/sb"), None, targets.LocalRef("/sb")),
        (targets.Reach(ssh="ops@h:22", sudo=True), None, targets.SSHRef("ops@h:22", True)),
        # renew / firewall: no flag reopens the record as it is, key and options included.
        (targets.Reach(), targets.SSHRef("h", identity="/k", ssh_options=("Port=2",)),
         targets.SSHRef("h", identity="/k", ssh_options=("Port=2",))),
        (targets.Reach(identity="/other"), targets.SSHRef("h", identity="/k"),
         targets.SSHRef("h", identity="/other")),
        (targets.Reach(), targets.AnsibleRef("h1", "/inv", "root@10.0.0.7"),
         targets.AnsibleRef("h1", "/inv", "root@10.0.0.7")),
        # A fleet host given SSH-only flags is reached over SSH where Ansible reached it.
        (targets.Reach(identity="/k"), targets.AnsibleRef("h1", "/inv", "ops@10.0.0.7", True),
         targets.SSHRef("ops@10.0.0.7", True, identity="/k")),
        (targets.Reach(ssh="root@h2"), targets.LocalRef(), targets.SSHRef("root@h2")),
    ],
)  # fmt: skip
def test_the_flags_and_the_record_name_one_host(
    reach: targets.Reach, recorded: Any, expected: Any
) -> None:
    assert targets.from_reach(reach, recorded) == expected


def test_a_record_of_an_unknown_kind_says_so_when_reopened() -> None:
    ref = targets.ref_from_json({"kind": "teleport", "user": "dock"})
    with pytest.raises(Exception, match="does not know the target kind 'teleport'"):
        targets.open_target(ref)
