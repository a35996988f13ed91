"""Team mode under failure and load: a 3-node Raft cluster loses its leader mid-run; numbers.

Every ``certkit login`` / ``team issue-client`` either succeeds (retried on the other
nodes while a new leader is elected) or fails with one sentence; nothing is recorded
that OpenBao did not issue.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bao_support import ROOT_TOKEN, BaoCluster, BaoNode, api, running_cluster, running_dev
from cryptography import x509
from support import REPO, run_certkit

from certkit.store import CAStore

pytestmark = [pytest.mark.bao, pytest.mark.slow]
OPERATIONS = 50


@pytest.fixture
def cluster(tmp_path: Path, certkit_home: Path) -> Iterator[BaoCluster]:
    with running_cluster(tmp_path) as c:
        yield c


def norm(serial: str) -> str:
    return serial.replace(":", "").lower().lstrip("0")


def test_the_leader_dies_during_50_logins_and_issuances(
    cluster: BaoCluster, tmp_path: Path, docker_config: Path
) -> None:
    env = {"BAO_ADDR": ",".join(cluster.addrs), "BAO_TOKEN": cluster.root_token,
           "CERTKIT_BAO_RETRY_SECONDS": "45"}  # fmt: skip
    for args in (("--ca", "root", "--mount", "pki-root", "--create"),
                 ("--mount", "pki-docker", "--create", "--parent-mount", "pki-root")):  # fmt: skip
        r = run_certkit("init-ca", "--issuer", "openbao", *args, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    leader = cluster.leader()
    api(leader.addr, "POST", "auth/userpass/users/alice", cluster.root_token,
        {"password": "pw", "token_policies": "certkit-person"})  # fmt: skip
    person = {**env, "BAO_TOKEN": "", "CERTKIT_BAO_PASSWORD": "pw"}
    results: list[tuple[int, str, float, str]] = []

    def run_all() -> None:
        for i in range(OPERATIONS):
            start = time.monotonic()
            if i % 2:
                r = run_certkit("team", "issue-client", f"ci-{i}", "--out",
                                str(tmp_path / f"c{i}"), env=env)  # fmt: skip
            else:
                r = run_certkit("login", "--username", "alice", "--host", "h.test",
                                "--context", f"ctx{i}", env=person)  # fmt: skip
            results.append((r.returncode, r.stderr, time.monotonic() - start, str(i)))

    worker = threading.Thread(target=run_all)
    worker.start()
    while len(results) < 10:
        time.sleep(0.05)
    killed_at = len(results)
    leader.kill()
    worker.join(900)
    assert len(results) == OPERATIONS
    failed = [(rc, err) for rc, err, _, _ in results if rc != 0]
    for rc, err in failed:  # a failure is one sentence, exit 1, never a traceback
        assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    slow = [t for rc, _, t, _ in results[killed_at:] if rc == 0]
    print(f"\nHA: leader killed after {killed_at} operations; {OPERATIONS - len(failed)} of "
          f"{OPERATIONS} succeeded, {len(failed)} failed in one sentence; the slowest success "
          f"after the kill took {max(slow):.1f} s (retried while a new leader was elected)",
          file=sys.stderr)  # fmt: skip
    assert len(failed) <= 5 and max(slow) > 1  # most retried on the other nodes, and waited
    # Nothing recorded that OpenBao did not issue: every serial in the store and in every
    # login context is among the certificates the surviving cluster holds.
    issued = {norm(s) for s in api(cluster.leader().addr, "LIST", "pki-docker/certs",
                                   cluster.root_token)["data"]["keys"]}  # fmt: skip
    inventory = CAStore("default").inventory()
    recorded = {norm(r.serial) for r in inventory.find("client")}
    clients = [i for rc, _, _, i in results if rc == 0 and int(i) % 2]
    assert len(recorded) == len(clients)  # one record per issue-client that succeeded
    for ctx in (docker_config / "contexts" / "tls").glob("*/docker/cert.pem"):
        recorded.add(f"{x509.load_pem_x509_certificate(ctx.read_bytes()).serial_number:x}")
    assert recorded and recorded <= issued, recorded - issued
    assert all((tmp_path / f"c{i}" / "cert.pem").exists() for i in clients)


@pytest.fixture
def bao_dev(tmp_path: Path, certkit_home: Path) -> Iterator[BaoNode]:
    with running_dev(tmp_path) as node:
        yield node


def test_numbers_login_and_100_clients_through_openbao_vs_local(
    bao_dev: BaoNode, tmp_path: Path
) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    from benchlib.openbao import team_numbers

    env = bao_dev.env()
    for args in (("--ca", "root", "--mount", "pki-root", "--create"),
                 ("--mount", "pki-docker", "--create", "--parent-mount", "pki-root")):  # fmt: skip
        r = run_certkit("init-ca", "--issuer", "openbao", *args, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
    numbers = team_numbers(env, tmp_path)
    print("\nteam mode numbers: " + json.dumps(numbers), file=sys.stderr)
    assert numbers["login_median_s"] < 5  # goal 1 s on an idle machine; this one is shared
    for where in ("bao-clients", "local-clients"):  # both runs made all 100
        assert len(list((tmp_path / where).glob("ci-*/cert.pem"))) == 100
    listed = api(bao_dev.addr, "LIST", "pki-docker/certs", ROOT_TOKEN)["data"]["keys"]
    assert len(listed) >= 100 + 5  # the clients and the five logins: all signed by OpenBao
