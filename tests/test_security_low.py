"""Issue 27's low findings and issue 26's "every untrusted parser survives any depth" class,
each as the attack that worked before.

Real parts: the certkit CLI in a subprocess, the docker CLI writing the context that
docker-py is pointed at, the PKCS#11 URI parser and PIN reader as the store uses them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support import run_certkit

from certkit import dockercli
from certkit.checks import PASS, Check
from certkit.errors import UsageError
from certkit.fleet.action import spec_from
from certkit.pkcs11 import parse_uri, read_pin
from certkit.untrusted import loads_json

DEEP = "[" * 200_000 + "]" * 200_000  # RecursionError in json.loads, a traceback before
DEEP_ENV = "[" * 20_000 + "]" * 20_000  # as deep, small enough for one environment variable


def one_sentence(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("certkit: error: "), r.stderr
    return lines[0]


# ---------------------------------------------------------------- secrets on disk


def test_a_pin_file_readable_by_group_or_others_is_refused(tmp_path: Path) -> None:
    pin = tmp_path / "pin"
    pin.write_text("1234\n")
    uri = parse_uri(f"pkcs11:token=t;object=k;module-path=/x.so;pin-source=file:{pin}")
    for mode in (0o644, 0o640, 0o604):
        pin.chmod(mode)
        with pytest.raises(UsageError, match=f"readable by group or others .mode 0{mode:o}"):
            read_pin(uri, "t")
    pin.chmod(0o600)
    assert read_pin(uri, "t") == "1234"


def test_a_certkit_home_another_user_controls_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "store"
    home.mkdir()
    home.chmod(0o777)  # anyone could swap the CA in it
    r = run_certkit("init-ca", env={"CERTKIT_HOME": str(home)})
    assert "CERTKIT_HOME" in one_sentence(r) and "writable by other users" in r.stderr
    assert list(home.iterdir()) == []
    if os.geteuid() == 0:  # owned by another user (only root can make one here)
        home.chmod(0o700)
        os.chown(home, 65534, 65534)
        r = run_certkit("init-ca", env={"CERTKIT_HOME": str(home)})
        assert "is owned by uid 65534" in one_sentence(r)
    link = tmp_path / "link"
    link.symlink_to(home)
    assert "symbolic link" in one_sentence(run_certkit("list", env={"CERTKIT_HOME": str(link)}))


# ---------------------------------------------------------------- never plain HTTP


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_context_import_refuses_a_tcp_context_without_tls(tmp_path: Path) -> None:
    meta = json.dumps(dockercli.meta_document("prod", "tcp://docker1:2376")).encode()
    archive = tmp_path / "plain.dockercontext"
    archive.write_bytes(_tar({"meta.json": meta}))
    line = one_sentence(run_certkit("context", "import", str(archive)))
    assert "without ca.pem, cert.pem, key.pem" in line and "only mutual-TLS" in line
    assert not dockercli.context_exists("prod")


def test_docker_client_refuses_a_context_that_speaks_plain_http(tmp_path: Path) -> None:
    from certkit.api import docker_client

    config = tmp_path / "docker"
    done = subprocess.run(
        ["docker", "--config", str(config), "context", "create", "plain",
         "--docker", "host=tcp://127.0.0.1:2375"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0 and "unknown flag" in done.stderr:
        pytest.skip("this docker CLI cannot create contexts")
    assert done.returncode == 0, done.stderr
    with pytest.raises(UsageError, match="docker-py would speak plain HTTP"):
        docker_client("plain", docker_config=config, version="1.41")


# ---------------------------------------------------------------- forged lines


def test_a_line_break_in_untrusted_text_cannot_forge_a_report_line() -> None:
    san = "docker1.example.com\nPASS  server-cert           valid"
    check = Check("server-names", "FAIL", f"the certificate names {san}")
    assert "\n" not in check.message and "\\x0aPASS" in check.message
    assert check.to_json()["message"] == check.message
    assert Check("x", PASS, "a\tb").message == "a\tb"  # layout stays


def test_a_warning_quoting_a_daemon_json_value_stays_one_line(tmp_path: Path) -> None:
    code = (
        "from certkit.cli.output import warn; warn('daemon.json has hosts=tcp://x\\nPASS forged')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stderr.strip().splitlines() == [
        "certkit: warning: daemon.json has hosts=tcp://x\\x0aPASS forged"
    ]


# ---------------------------------------------------------------- any depth, any size


def test_json_of_any_depth_is_a_value_error_never_a_recursion_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        loads_json(DEEP)
    assert loads_json('{"a": [1]}') == {"a": [1]}


def test_a_deeply_nested_context_archive_is_one_sentence(tmp_path: Path) -> None:
    archive = tmp_path / "deep.dockercontext"
    archive.write_bytes(_tar({"meta.json": DEEP.encode()}))
    assert "meta.json without a docker endpoint" in one_sentence(
        run_certkit("context", "import", str(archive))
    )


def test_a_deeply_nested_ci_bundle_is_one_sentence(tmp_path: Path) -> None:
    for text in (DEEP_ENV, base64.b64encode(DEEP_ENV.encode()).decode()):
        r = run_certkit("ci", "bootstrap", env={"CERTKIT_BUNDLE": text, "HOME": str(tmp_path)})
        assert "CERTKIT_BUNDLE" in one_sentence(r)


def test_a_deeply_nested_docker_context_on_disk_is_one_sentence(tmp_path: Path) -> None:
    config = tmp_path / "docker"
    meta_dir = config / "contexts" / "meta" / dockercli.context_id("deep")
    meta_dir.mkdir(parents=True)
    (meta_dir / "meta.json").write_text(DEEP)
    r = run_certkit("env", "deep", "--docker-config", str(config))
    assert "Traceback" not in r.stderr and r.returncode == 2, r.stderr


@pytest.mark.parametrize(
    ("args", "hostvars"),
    [
        ({"port": "1e400"}, {}),
        ({"port": "nan"}, {}),
        ({"days": "inf"}, {}),
        ({"renew_within": ["x"] * 3}, {}),
        ({"sans": {"a": 1}}, {}),
        ({"sans": ["*.corp.example.com"]}, {}),
        ({"allow_from": ['::%x" address="::/0']}, {}),
    ],
)
def test_hostile_inventory_variables_are_one_sentence(
    args: dict[str, object], hostvars: dict[str, object]
) -> None:
    with pytest.raises(UsageError):
        spec = spec_from(args, {"inventory_hostname": "h1", **hostvars})
        spec.names()


def test_a_line_break_in_a_fleet_hosts_message_stays_on_its_line() -> None:
    from certkit.cli.fleet import _host_line

    line = _host_line("h1", {"failed": True, "msg": "boom\n  ok       h2: converged"}, False)
    assert "\n" not in line and line.startswith("  FAILED   h1: boom\\x0a")
