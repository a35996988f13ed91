"""The host Target seam: a new way of reaching hosts is the protocol's few members, nothing else.

``MemoryHost`` below is a whole third target (beside this machine and SSH): a
Docker host whose files live in a dictionary.  Implementing the protocol is all
it takes for the one server pipeline (``certkit.server.issue_server``) to plan,
issue, install, record and re-run idempotently on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from certkit import certs
from certkit.host.hostfiles import HostFiles
from certkit.host.options import HostRef, InstallOptions
from certkit.host.plan import InstallPlan
from certkit.host.target import Target
from certkit.origins import ServerOrigin
from certkit.paths import SystemPaths
from certkit.server import issue_server
from certkit.store import CAStore

UNIT = "[Service]\nExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd.sock\n"


@dataclass
class MemoryHost:
    """A Docker host held in memory: path -> bytes."""

    files: dict[str, bytes] = field(default_factory=dict)
    applied: list[InstallPlan] = field(default_factory=list)
    system: SystemPaths = field(default_factory=lambda: SystemPaths(PurePosixPath("/")))

    @property
    def ref(self) -> HostRef:
        return HostRef(ssh="memory-host")

    def check(self, *, restart: bool) -> None:
        pass

    def read_files(self) -> HostFiles:
        sp = self.system

        def text(path: object) -> str | None:
            data = self.files.get(str(path))
            return None if data is None else data.decode()

        certs_dir = PurePosixPath(sp.cert_dir)
        cert_paths = [str(certs_dir / n) for n in ("ca.pem", "server-cert.pem", "server-key.pem")]
        dropins = sorted(p for p in self.files if PurePosixPath(p).parent == sp.dropin_dir)
        return HostFiles(
            daemon_json=text(sp.daemon_json),
            units=[(str(u), text(u) or "") for u in sp.unit_files if str(u) in self.files],
            dropins=[(p, text(p) or "") for p in dropins],
            cert_files={p: self.files[p] for p in cert_paths if p in self.files},
        )

    def apply(self, plan: InstallPlan, *, restart: bool) -> bool:
        self.applied.append(plan)
        for change in plan.changes:
            self.files[change.path] = change.content
        return False

    def where(self, path: str) -> str:
        return f"memory:{path}"


def test_a_third_target_needs_only_the_protocol(store: CAStore) -> None:
    host = MemoryHost({"/lib/systemd/system/docker.service": UNIT.encode()})
    target: Target = host  # mypy-checked: MemoryHost satisfies the protocol structurally
    options = InstallOptions(method="daemon-json")

    dry = issue_server(store, "docker1.example.com", target, options=options, dry_run=True)
    assert dry.serial is None and host.applied == []
    assert "/etc/docker/daemon.json" in (dry.install.plan.written if dry.install else [])

    result = issue_server(store, "docker1.example.com", target, options=options)
    config = json.loads(host.files["/etc/docker/daemon.json"])
    assert config["tlsverify"] is True and "tcp://0.0.0.0:2376" in config["hosts"]
    assert config["tlscert"] == "/etc/docker/certkit/server-cert.pem"
    served = certs.load_cert(host.files["/etc/docker/certkit/server-cert.pem"])
    assert certs.serial_hex(served) == result.serial
    assert certs.key_matches_cert(
        certs.load_key(host.files["/etc/docker/certkit/server-key.pem"]), served
    )
    # The drop-in takes -H fd:// out of ExecStart, so hosts in daemon.json cannot conflict.
    dropin = host.files["/etc/systemd/system/docker.service.d/certkit.conf"].decode()
    assert "-H" not in dropin.split("ExecStart=")[-1]

    record = store.inventory().get(result.serial or "")
    assert record is not None and isinstance(record.origin, ServerOrigin)
    assert record.origin.target == HostRef(ssh="memory-host")
    assert record.installed == sorted(f"memory:/etc/docker/certkit/{f}" for f in (
        "ca.pem", "server-cert.pem", "server-key.pem"))  # fmt: skip

    # Re-planning against what is now there changes only the certificate and key.
    again = issue_server(store, "docker1.example.com", target, options=options, dry_run=True)
    assert again.install is not None
    assert sorted(again.install.plan.written) == [
        "/etc/docker/certkit/server-cert.pem",
        "/etc/docker/certkit/server-key.pem",
    ]
