"""certkit fleet apply as operators run it: bounded dead hosts, progress, timings, batches.

The lab test boots three real-systemd hosts, converges them (leaving SSH
control masters open, as any run does), then takes one host off the network
with a rule that drops everything in its own namespace: the link goes
silent, as when a cable is pulled, and only keep-alives can notice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_ok, run_certkit
from test_fleet import inventory

from certkit.fleet.target import AnsibleTarget
from certkit.host.remote import remote_paths
from certkit.targets import AnsibleRef

# ---------------------------------------------------------------- without hosts


def test_no_host_matched_is_one_sentence(tmp_path: Path) -> None:
    cli_ok("init-ca")
    inv = tmp_path / "hosts.ini"
    inv.write_text("[docker_hosts]\nh1 ansible_host=192.0.2.1\n")
    for args, words in (
        (["--group", "nosuch"], "group 'nosuch'"),
        (["--limit", "nosuch"], "--limit 'nosuch'"),
    ):
        r = run_certkit("fleet", "apply", str(inv), *args)
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.strip().splitlines() == [
            f"certkit: error: No host of the inventory matches {words}: "
            "check the names with ansible-inventory --graph."
        ]
        assert "\x1b" not in r.stderr + r.stdout


def test_bad_rolling_options_are_one_sentence(tmp_path: Path) -> None:
    cli_ok("init-ca")
    inv = tmp_path / "hosts.ini"
    inv.write_text("[docker_hosts]\nh1 ansible_host=192.0.2.1\n")
    for args, words in (
        (["--max-fail", "101"], "--max-fail must be a percentage"),
        (["--timeout", "0"], "--timeout must be 1 to 3600 seconds"),
        (["--pause", "-1"], "--pause must be 0 or more"),
    ):
        r = run_certkit("fleet", "apply", str(inv), *args)
        assert r.returncode == 2 and words in r.stderr, r.stderr


def _recording_local_sh(scripts: list[str]):  # type: ignore[no-untyped-def]
    """Ansible's ``sh -s`` transport, here: the script runs on this machine (a real host
    with sh and systemctl); each script is kept for the test to read."""

    def run(script: str) -> tuple[int, str, str]:
        scripts.append(script)
        done = subprocess.run(
            ["sh", "-s"], input=script, capture_output=True, text=True, timeout=120
        )
        return done.returncode, done.stdout, done.stderr

    return run


@pytest.mark.parametrize(
    ("probe", "installed", "read"), [(True, True, True), (False, False, True), (False, True, False)]
)
def test_read_step_probes_the_firewall_only_when_asked(
    tmp_path: Path, probe: bool, installed: bool, read: bool
) -> None:
    """Without certkit_allow_from the firewall is read on a first install only (for its
    warning about an open port), not on every run of an installed host."""
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    if installed:
        (cert_dir / "server-cert.pem").write_text("a certificate\n")
    scripts: list[str] = []
    target = AnsibleTarget(
        _recording_local_sh(scripts),
        remote_paths(None, str(cert_dir)),
        AnsibleRef(host="here"),
        "here",
    )
    target.firewall_probe = probe
    files = target.read_files()
    assert len(scripts) == 1 and "ufw status" in scripts[0]
    assert (files.firewall is not None) is read
    assert "docker info" in scripts[0]  # a restart's cost is still known


# ---------------------------------------------------------------- lab hosts


def _silence(host: LabHost) -> None:
    """Drop every packet in and out of the host (its own namespace): a silent link."""
    host.check(
        "nft add table inet cut && "
        "nft add chain inet cut in '{ type filter hook input priority -300; policy drop; }' && "
        "nft add chain inet cut out '{ type filter hook output priority -300; policy drop; }'"
    )


def _streamed(
    argv: list[str], cwd: Path, env: dict[str, str]
) -> tuple[int, list[tuple[float, str]]]:
    """Run ``argv``; its exit status and each stdout line with the second it arrived."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.monotonic() - started, line.rstrip("\n")))
    return proc.wait(timeout=300), lines


@pytest.mark.lab
@pytest.mark.slow
def test_dead_host_fails_alone_within_the_timeout(lab: Lab, tmp_path: Path) -> None:
    hosts = lab.boot(3)
    inv = inventory(tmp_path / "hosts.ini", hosts)
    # A relative CERTKIT_HOME: the workers run elsewhere, certkit resolves it first.
    home = Path(os.environ["CERTKIT_HOME"])
    env = {**os.environ, "CERTKIT_HOME": os.path.relpath(home, tmp_path)}
    certkit = [sys.executable, "-m", "certkit"]
    done = subprocess.run(
        [*certkit, "init-ca"], cwd=tmp_path, env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    apply = [*certkit, "fleet", "apply", str(inv), "--restart"]
    first = subprocess.run(
        [*apply, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    out = json.loads(first.stdout)
    assert first.returncode == 0 and out["failed"] == [], first.stdout + first.stderr
    for name in ("h1", "h2", "h3"):
        host = out["hosts"][name]
        assert 0 < host["seconds"] < out["seconds"] and host["started"] and host["ended"]
    timings = out["timings"]
    assert set(timings) >= {"setup", "ansible_start", "hosts", "total"}
    assert abs(timings["total"] - out["seconds"]) < 0.5

    # A health gate between batches: it fails after the second batch, the third is not run.
    rc, lines = _streamed(
        [*apply, "--serial", "1", "--gate", 'test "$CERTKIT_BATCH" != h2'], tmp_path, env
    )
    text = "\n".join(line for _, line in lines)
    assert rc == 1, text
    assert "  ok       h1: converged" in text and "  ok       h2: converged" in text
    assert "  FAILED   h3: not run: an earlier batch failed" in text
    assert "Stopped: the batch gate failed after h" in text

    # h2 goes silent with the control masters of the runs above still open.
    _silence(hosts[1])
    rc, lines = _streamed([*apply, "--timeout", "6", "--forks", "3"], tmp_path, env)
    text = "\n".join(line for _, line in lines)
    wall = lines[-1][0]
    assert rc == 1, text
    assert wall < 60, text  # the keep-alives' bound (6 s) plus a loaded machine's slack
    failed = [(t, ln) for t, ln in lines if ln.startswith("  FAILED   h2: ")]
    oks = [(t, ln) for t, ln in lines if ln.startswith("  ok       ")]
    assert len(failed) == 1 and len(oks) == 2, text
    assert lines[-1][1] == "Failed: h2."
    # Progress: the live hosts' lines came as they finished, before the dead host's.
    assert max(t for t, _ in oks) < failed[0][0] - 2, lines

    # Rolling with --max-fail 0: the first failed batch stops the run.
    rc, lines = _streamed(
        [*apply, "--timeout", "6", "--serial", "2", "--max-fail", "0"], tmp_path, env
    )
    text = "\n".join(line for _, line in lines)
    assert rc == 1, text
    assert "  ok       h1: converged" in text and "  FAILED   h2: " in text
    assert "  FAILED   h3: not run: an earlier batch failed" in text


def test_refusal_names_ansible_become_not_sudo() -> None:
    """A host script's "pass --sudo" (the --ssh wording) reads as the inventory's way."""
    from certkit.errors import UsageError
    from certkit.host.engine import REFUSED_PREFIX

    target = AnsibleTarget(
        _recording_local_sh([]), remote_paths(None, None), AnsibleRef(host="h1"), "h1"
    )
    with pytest.raises(UsageError) as caught:
        target.run_script(
            f'echo "{REFUSED_PREFIX}Writing /etc/docker needs root: connect as root or '
            'pass --sudo."; exit 3'
        )
    assert caught.value.message == (
        "Writing /etc/docker needs root: connect as root or set ansible_become=true for "
        "this host in the inventory."
    )
