"""`certkit metrics rules|dashboard` in Debian's real Prometheus and node_exporter.

promtool checks the shipped rules and runs a rules test on synthetic series; then a
live Prometheus scrapes node_exporter's textfile collector on loopback ports: a
certificate issued for one day fires the expiring alert in /api/v1/alerts, renewing
it clears the alert, and every dashboard query returns data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import cli_json, cli_ok, free_port, run_certkit, stop_process_group, wait_port

from certkit.dashboard import queries
from certkit.store import CAStore

NODE_EXPORTER = "prometheus-node-exporter"


def require(tool: str) -> str:
    """The tool's path; CI (CERTKIT_REQUIRE_PROMETHEUS=1) fails instead of skipping."""
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CERTKIT_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"{tool} is required (CERTKIT_REQUIRE_PROMETHEUS=1) but not installed")
        pytest.skip(f"{tool} is not installed (apt-get install prometheus {NODE_EXPORTER})")
    return found


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], capture_output=True, text=True, timeout=120)


# ---- the rules, offline


def test_promtool_checks_the_shipped_rules(tmp_path: Path) -> None:
    out = tmp_path / "certkit.yml"
    done = cli_json("metrics", "rules", "--out", str(out))
    assert done["alerts"] == [
        "CertkitCertificateExpiringSoon",
        "CertkitCertificateExpired",
        "CertkitRenewalOverdue",
        "CertkitEndpointVerifyFailing",
        "CertkitRotationTooLong",
        "CertkitMetricsStale",
    ]
    assert out.stat().st_mode & 0o777 == 0o644
    r = promtool("check", "rules", str(out))
    assert r.returncode == 0 and "SUCCESS: 6 rules found" in r.stdout, r.stdout + r.stderr
    # --json without --out: the same rules as one JSON document, which Prometheus reads too
    as_json = tmp_path / "certkit.json"
    as_json.write_text(cli_ok("metrics", "rules", "--json"))
    assert promtool("check", "rules", str(as_json)).returncode == 0


def test_a_broken_rule_fails_promtool(tmp_path: Path) -> None:
    """The check above can fail: promtool refuses a rules file with a bad expression."""
    out = tmp_path / "certkit.yml"
    cli_ok("metrics", "rules", "--out", str(out))
    out.write_text(out.read_text().replace(" > 0", " >> 0", 1))
    assert promtool("check", "rules", str(out)).returncode != 0


CERT = 'ca="default",kind="server",name="docker1",serial="AA"'
DESC = (
    "server certificate docker1 (CA default, serial AA) expires in {left}. "
    "Next: certkit status --ca default (prints the renew command)."
)


def expected(
    rules: dict[str, Any], name: str, labels: dict[str, str], value: str = ""
) -> dict[str, Any]:
    """What promtool must report for alert ``name`` on ``labels``: its annotations rendered
    by hand (labels substituted, ``$value | humanizeDuration`` as ``value``)."""
    (rule,) = [r for r in rules["groups"][0]["rules"] if r["alert"] == name]
    annotations = {}
    for key, text in rule["annotations"].items():
        for label, v in labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", v)
        annotations[key] = text.replace("{{ $value | humanizeDuration }}", value)
    assert "{{" not in str(annotations)
    return {"exp_labels": {"severity": rule["labels"]["severity"], **labels},
            "exp_annotations": annotations}  # fmt: skip


def rules_test(rules: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A promtool rules test (JSON is YAML): every alert fires on its series, and only there.

    Time starts at 0; at 1h `time()` is 3600.  docker1 ends at 10 days, docker2 ended at
    30 minutes, docker3 is healthy; renew-after of docker1 passed at 10 minutes.
    """
    series = [
        (f"certkit_cert_not_after_timestamp_seconds{{{CERT}}}", "864000+0x300"),
        ('certkit_cert_not_after_timestamp_seconds{ca="default",kind="client",name="docker2",'
         'serial="BB"}', "1800+0x300"),
        ('certkit_cert_not_after_timestamp_seconds{ca="default",kind="server",name="docker3",'
         'serial="CC"}', "99999999+0x300"),
        (f"certkit_cert_renew_after_timestamp_seconds{{{CERT}}}", "600+0x300"),
        ('certkit_cert_renew_after_timestamp_seconds{ca="default",kind="server",name="docker3",'
         'serial="CC"}', "99999999+0x300"),
        ('certkit_endpoint_verify_success{host="docker1",port="2376"}', "0+0x300"),
        ('certkit_endpoint_verify_success{host="docker3",port="2376"}', "1+0x300"),
        ('certkit_rotation_in_progress{ca="default"}', "1+0x300"),
        ('certkit_rotation_in_progress{ca="other"}', "0+0x300"),
        ('certkit_cert_not_before_timestamp_seconds{ca="default",kind="ca",name="default",'
         'serial="DD"}', "0+0x300"),
        ('certkit_cert_not_before_timestamp_seconds{ca="other",kind="ca",name="other",'
         'serial="EE"}', "0+0x300"),
        ('node_textfile_mtime_seconds{file="certkit.prom"}', "0+0x300"),
    ]  # fmt: skip

    def alert(name: str, at: str, *expected: dict[str, Any]) -> dict[str, Any]:
        return {"eval_time": at, "alertname": name, "exp_alerts": list(expected)}

    server = {"ca": "default", "kind": "server", "name": "docker1", "serial": "AA"}
    return {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    alert("CertkitCertificateExpiringSoon", "1h", {
                        "exp_labels": {"severity": "warning", **server},
                        "exp_annotations": {
                            "summary": "Certificate expires soon",
                            "description": DESC.format(left="9d 23h 0m 0s"),
                        },
                    }),
                    alert("CertkitCertificateExpiringSoon", "5m"),  # `for: 15m` not yet held
                    alert("CertkitCertificateExpired", "1h", expected(
                        data, "CertkitCertificateExpired", {"ca": "default", "kind": "client",
                        "name": "docker2", "serial": "BB"})),
                    alert("CertkitRenewalOverdue", "1h",
                          expected(data, "CertkitRenewalOverdue", server)),
                    alert("CertkitEndpointVerifyFailing", "1h", expected(
                        data, "CertkitEndpointVerifyFailing", {"host": "docker1", "port": "2376"})),
                    alert("CertkitRotationTooLong", "1h",
                          expected(data, "CertkitRotationTooLong", {"ca": "default"})),
                    alert("CertkitMetricsStale", "1h"),  # written an hour ago: fine
                    alert("CertkitMetricsStale", "3h", expected(
                        data, "CertkitMetricsStale", {"file": "certkit.prom"}, "3h 0m 0s")),
                ],
            }
        ],
    }  # fmt: skip


def test_promtool_rules_test_fires_each_alert_on_its_series_only(tmp_path: Path) -> None:
    rules = tmp_path / "certkit.yml"
    # A rotation alert after 0.02 days (29 minutes), so the one test reaches it at 1h.
    args = ("metrics", "rules", "--rotation-days", "0.02")
    cli_ok(*args, "--out", str(rules))
    test_file = tmp_path / "certkit_test.yml"
    test_file.write_text(json.dumps(rules_test(rules, cli_json(*args))))
    r = promtool("test", "rules", str(test_file))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    # ... and it can fail: with a 5-day window docker1 (10 days left) no longer warns.
    cli_ok("metrics", "rules", "--warn-days", "5", "--rotation-days", "0.02", "--out", str(rules))
    r = promtool("test", "rules", str(test_file))
    assert r.returncode != 0 and "CertkitCertificateExpiringSoon" in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--for", "15 minutes"], "--for '15 minutes' is not a Prometheus duration"),
        (["--stale-after", ""], "--stale-after '' is not a Prometheus duration"),
        (["--warn-days", "0"], "--warn-days must be a positive number of days"),
        (["--textfile", "../x.prom"], "--textfile '../x.prom': give the file's name"),
    ],
)
def test_bad_settings_are_usage_errors(args: list[str], message: str) -> None:
    r = run_certkit("metrics", "rules", *args)
    assert r.returncode == 2 and message in r.stderr and r.stdout == ""


def test_out_into_a_missing_directory_is_refused(tmp_path: Path) -> None:
    r = run_certkit("metrics", "dashboard", "--out", str(tmp_path / "nope" / "d.json"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert not (tmp_path / "nope").exists()


# ---- live: node_exporter's textfile collector, scraped by Prometheus


class Prometheus:
    """A Prometheus on a loopback port scraping a node_exporter every second."""

    def __init__(self, base: Path, rules: Path, textfile_dir: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.base = base
        node_port, self.port = free_port(), free_port()
        self._start(
            "node_exporter",
            [require(NODE_EXPORTER), "--collector.disable-defaults", "--collector.textfile",
             f"--collector.textfile.directory={textfile_dir}",
             f"--web.listen-address=127.0.0.1:{node_port}"],
            node_port,
        )  # fmt: skip
        config = base / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(rules)],
                    "scrape_configs": [
                        {"job_name": "node", "static_configs": [
                            {"targets": [f"127.0.0.1:{node_port}"]}]}
                    ],
                }
            )
        )  # fmt: skip
        self._start(
            "prometheus",
            [require("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={base / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            self.port,
        )  # fmt: skip

    def _start(self, name: str, cmd: list[str], port: int) -> None:
        with open(self.base / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        wait_port("127.0.0.1", port, 30, proc)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def wait(self, what: str, ok: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                logs = (self.base / "prometheus.log").read_text()[-2000:]
                pytest.fail(f"{what} within {timeout}s; alerts: {self.alerts()}\n{logs}")
            time.sleep(0.3)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process_group(proc, timeout=10)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Prometheus, Path]]:
    """A live Prometheus with certkit's rules (`--for 0s`) and the textfile directory."""
    rules = tmp_path / "certkit.yml"
    cli_ok("metrics", "rules", "--for", "0s", "--out", str(rules))
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    prom = Prometheus(tmp_path, rules, textfile_dir)
    try:
        yield prom, textfile_dir / "certkit.prom"
    finally:
        prom.stop()


def firing(prom: Prometheus, alertname: str, **labels: str) -> list[dict[str, Any]]:
    return [
        a
        for a in prom.alerts()
        if a["labels"]["alertname"] == alertname
        and a["state"] == "firing"
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def test_a_short_lived_certificate_fires_in_prometheus_and_renewal_clears_it(
    store: CAStore, tmp_path: Path, prometheus: tuple[Prometheus, Path]
) -> None:
    prom, textfile = prometheus
    host = "docker1.example.com"
    root = str(tmp_path / "root")
    short = cli_json("issue-server", host, "--days", "1", "--install", "--root", root)
    cli_ok("status", "--format", "prometheus", "--verify", "--out", str(textfile))
    serial = short["serial"]
    prom.wait("the expiring alert fires", lambda: bool(
        firing(prom, "CertkitCertificateExpiringSoon", name=host, serial=serial)))  # fmt: skip
    (alert,) = firing(prom, "CertkitCertificateExpiringSoon")  # the CA (10 years) does not warn
    assert alert["labels"]["severity"] == "warning" and alert["labels"]["kind"] == "server"
    assert "expires in 23h" in alert["annotations"]["description"]
    # No docker context points at the installed endpoint: the live audit fails, and says so.
    prom.wait("the verify alert fires", lambda: bool(
        firing(prom, "CertkitEndpointVerifyFailing", host=host, port="2376")))  # fmt: skip
    _each_dashboard_query_returns_data(prom)

    cli_ok("renew", "server", host, "--days", "90", "--root", root)
    cli_ok("status", "--format", "prometheus", "--out", str(textfile))
    prom.wait("the expiring alert clears", lambda: not firing(
        prom, "CertkitCertificateExpiringSoon"))  # fmt: skip
    assert not firing(prom, "CertkitCertificateExpired")


def _each_dashboard_query_returns_data(prom: Prometheus) -> None:
    board = json.loads(cli_ok("metrics", "dashboard"))
    found = prom.api("label/ca/values", **{"match[]": "certkit_cert_not_after_timestamp_seconds"})
    assert found == ["default"]  # the `ca` variable's label_values()
    checked = []
    for title, expr in queries(board):
        query = expr.replace("$ca", ".*")  # the variable's "All" value
        assert "$" not in query, f"{title}: an unknown variable in {expr}"
        result = prom.api("query", query=query)["result"]
        assert result, f"panel {title!r}: {query} returned no data"
        checked.append(title)
    assert len(checked) == len(board["panels"]) == 11


def test_renew_after_is_two_thirds_of_the_lifetime(store: CAStore, tmp_path: Path) -> None:
    """The metric CertkitRenewalOverdue reads, checked against the certificate itself."""
    from cryptography import x509
    from prometheus_client.parser import text_string_to_metric_families

    cli_ok("issue-server", "docker1.example.com", "--days", "30", "--out", str(tmp_path / "s"))
    cert = x509.load_pem_x509_certificate((tmp_path / "s" / "server-cert.pem").read_bytes())
    text = cli_ok("status", "--format", "prometheus")
    found = {
        f.name: {s.labels["name"]: s.value for s in f.samples}
        for f in text_string_to_metric_families(text)
        if f.name.startswith("certkit_cert_")
    }
    start = cert.not_valid_before_utc.timestamp()
    end = cert.not_valid_after_utc.timestamp()
    assert found["certkit_cert_not_before_timestamp_seconds"]["docker1.example.com"] == start
    renew = found["certkit_cert_renew_after_timestamp_seconds"]["docker1.example.com"]
    assert renew == pytest.approx(start + (end - start) * 2 / 3, abs=1)
    assert start < renew < end - 9 * 86400  # 30 days: renew after 20, not at the last 9


def test_the_dashboard_layout_is_one_grafana_can_place() -> None:
    """No Grafana here to load it: the ids are unique, every panel fits the 24-column grid,
    none overlaps another, and every query uses the data source variable."""
    board = cli_json("metrics", "dashboard")
    assert board["uid"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "ca"]
