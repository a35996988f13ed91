"""`certkit setup HOST --ssh root@HOST --restart` against a real systemd host (tests/lab.py).

The one-command path a new user takes: a stock Debian docker.service reached
over SSH, restarted by certkit, verified, then reached with the docker CLI and
with docker-py; the second run restarts nothing and changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from lab import Lab, lab_fixture  # noqa: F401 (fixture "lab")
from support import run_certkit

from certkit import api

pytestmark = pytest.mark.lab

SERVER_CERT = "/etc/docker/certkit/server-cert.pem"


def test_setup_over_ssh_restarts_verifies_and_is_idempotent(
    lab: Lab, docker_config: Path, certkit_home: Path
) -> None:
    host = lab.host()
    args = ["setup", host.address, *host.cli_args("root"), "--context", "lab", "--restart"]
    r = run_certkit(*args, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    first = json.loads(r.stdout)
    assert first["ca"]["created"] is True and first["restarted"] is True
    assert first["verify"]["ok"] is True, first["verify"]
    assert first["server"]["install"]["method"] == "systemd"

    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],  # the selected context
        env={**os.environ, "DOCKER_CONFIG": str(docker_config)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert docker.returncode == 0 and docker.stdout.strip(), docker.stderr
    assert api.docker_client("lab").version()["Version"] == docker.stdout.strip()

    installed = host.path(SERVER_CERT).read_bytes()
    started = host.check("systemctl show docker --property=ExecMainStartTimestamp")
    r = run_certkit(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Nothing changed." in r.stdout and "Verify: " in r.stdout  # --restart: still checked
    assert host.path(SERVER_CERT).read_bytes() == installed
    assert host.check("systemctl show docker --property=ExecMainStartTimestamp") == started
