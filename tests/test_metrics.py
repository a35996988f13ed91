"""`certkit status --format prometheus`: read back with prometheus_client's own parser."""

from __future__ import annotations

import datetime as dt
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from support import cli_json, cli_ok, free_port, run_certkit

from certkit import api
from certkit.store import CAStore

NOT_AFTER = "certkit_cert_not_after_timestamp_seconds"


def samples(text: str) -> dict[str, list[Sample]]:
    """Metric name -> its samples, as Prometheus would scrape them."""
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def by_serial(found: list[Sample]) -> dict[str, float]:
    return {s.labels["serial"]: s.value for s in found}


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


@pytest.fixture
def umask_077() -> Iterator[None]:
    """A strict umask in this process and the commands it starts (0644 must still be 0644)."""
    old = os.umask(0o077)
    yield
    os.umask(old)


def test_one_expiry_sample_per_certificate_in_use(store: CAStore, tmp_path: Path) -> None:
    cli_ok("issue-server", "docker1.example.com", "--install", "--root", str(tmp_path / "r"))
    first = cli_json("client-context", "laptop", "--host", "docker1.example.com")
    cli_ok("client-context", "laptop", "--host", "docker1.example.com", "--force")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    expired = api.client_context("old", "docker1.example.com", not_after=past)
    cli_ok("ci", "export", "deploy", "--host", "docker1.example.com", "--out", str(tmp_path / "s"))

    metrics = samples(cli_ok("status", "--format", "prometheus"))
    in_use = [i for i in cli_json("list") if i["status"] != "superseded"]
    assert {i["kind"] for i in in_use} == {"ca", "server", "client", "ci"}
    assert by_serial(metrics[NOT_AFTER]) == {i["serial"]: epoch(i["not_after"]) for i in in_use}
    assert first["serial"] not in by_serial(metrics[NOT_AFTER])  # superseded: not in use
    labels = {s.labels["serial"]: s.labels for s in metrics[NOT_AFTER]}
    assert labels[expired.serial] == {
        "ca": "default", "kind": "client", "name": "old", "serial": expired.serial
    }  # fmt: skip
    flags = by_serial(metrics["certkit_cert_expired"])
    assert flags.pop(expired.serial) == 1 and set(flags.values()) == {0}
    ca_item = next(i for i in in_use if i["kind"] == "ca")
    (ca_sample,) = metrics["certkit_ca_not_after_timestamp_seconds"]
    assert ca_sample.labels == {"ca": "default"} and ca_sample.value == epoch(ca_item["not_after"])
    assert [(s.labels, s.value) for s in metrics["certkit_rotation_in_progress"]] == [
        ({"ca": "default"}, 0)
    ]
    assert "certkit_endpoint_verify_success" not in metrics  # only with --verify


def test_rotation_in_progress_is_exported(store: CAStore) -> None:
    cli_ok("rotate-ca", "start")
    metrics = samples(cli_ok("status", "--format", "prometheus"))
    assert [s.value for s in metrics["certkit_rotation_in_progress"]] == [1]


def test_out_is_written_atomically_0644(store: CAStore, tmp_path: Path, umask_077: None) -> None:
    out = tmp_path / "textfile" / "certkit.prom"
    out.parent.mkdir()
    out.write_text("# stale\n")
    os.chmod(out, 0o600)
    with open(out) as reader:  # node_exporter in the middle of reading the previous file
        r = run_certkit("status", "--format", "prometheus", "--out", str(out), "--json")
        assert r.returncode == 0, r.stderr
        assert reader.read() == "# stale\n"  # replaced by a rename, never rewritten in place
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["certkit.prom"]  # no temporary left
    assert len(samples(out.read_text())[NOT_AFTER]) == 1  # the CA
    assert r.stdout.startswith("{") and '"out": "' + str(out) in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/missing/certkit.prom"], "does not exist"),
        (["--out", "{tmp}"], "is a directory"),
        (["--json"], "add --out FILE"),
        (["--format", "xml"], "--format is text or prometheus"),
    ],
)
def test_bad_output_options_exit_2_and_write_nothing(
    store: CAStore, tmp_path: Path, args: list[str], message: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    fmt = [] if "--format" in args else ["--format", "prometheus"]
    before = sorted(tmp_path.rglob("*"))
    r = run_certkit("status", *fmt, *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_out_and_verify_need_the_prometheus_format(store: CAStore) -> None:
    r = run_certkit("status", "--verify")
    assert r.returncode == 2 and "--format prometheus" in r.stderr


def test_empty_store_is_an_error_not_an_empty_file(certkit_home: Path, tmp_path: Path) -> None:
    r = run_certkit("status", "--format", "prometheus", "--out", str(tmp_path / "c.prom"))
    assert r.returncode == 2 and "No CA" in r.stderr
    assert not (tmp_path / "c.prom").exists()


def test_verify_exports_a_failed_audit_for_an_unreachable_endpoint(
    store: CAStore, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    cli_ok(
        "issue-server", "localhost", "--install", "--root", str(tmp_path / "r"),
        "--listen", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    cli_ok("client-context", "local", "--host", "localhost", "--port", str(port))
    before = time.time()
    metrics = samples(cli_ok("status", "--format", "prometheus", "--verify"))
    labels = {"host": "localhost", "port": str(port)}
    assert [(s.labels, s.value) for s in metrics["certkit_endpoint_verify_success"]] == [
        (labels, 0)
    ]
    (when,) = metrics["certkit_endpoint_verify_timestamp_seconds"]
    assert when.labels == labels and before <= when.value <= time.time()
