"""The Python API: a provisioning script does what the CLI does, with the same guarantees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from certkit import api


def test_a_provisioning_script_runs_the_main_job(tmp_path: Path, docker_config: Path) -> None:
    info = api.init_ca("prod")
    store = api.CAStore("prod")
    root = tmp_path / "host"
    result = api.issue_server(
        store,
        "docker1.example.com",
        api.open_target(api.HostRef(sandbox=str(root))),
        sans=["10.0.0.5"],
        options=api.InstallOptions(method="daemon-json", listen="127.0.0.1", port=2376),
    )
    assert result.serial is not None and not result.dry_run
    config = json.loads((root / "etc/docker/daemon.json").read_text())
    assert config["tlsverify"] is True
    assert Path(config["tlscacert"]).read_bytes() == Path(info.cert_path).read_bytes()

    client = api.client_context("docker1", "docker1.example.com", ca="prod", use=True)
    assert client.context is not None
    assert client.context.host == "tcp://docker1.example.com:2376"
    assert json.loads((docker_config / "config.json").read_text())["currentContext"] == "docker1"

    kinds = sorted(item.kind for item in api.list_items())
    assert kinds == ["ca", "client", "server"]


def test_errors_are_typed() -> None:
    with pytest.raises(api.UsageError, match="Unknown key type"):
        api.init_ca("x", key_type="dsa")
    api.init_ca("x")
    with pytest.raises(api.UsageError, match="already exists"):
        api.init_ca("x")


def test_importing_the_api_never_loads_the_docker_sdk() -> None:
    code = "import sys, certkit.api; print('docker' in sys.modules or 'requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_modules_examples_run_as_doctests(tmp_path: Path) -> None:
    """The examples in certkit.api's docstring are real: they run against a sandbox host."""
    import doctest

    sandbox = str(tmp_path / "host")
    result = doctest.testmod(api, extraglobs={"sandbox": sandbox}, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0
    assert (tmp_path / "host/etc/docker/daemon.json").is_file()


def test_one_ca_handle_everywhere(tmp_path: Path, docker_config: Path) -> None:
    """A CA object or its name: every function that works with a CA takes either."""
    prod = api.CA("prod")
    info = api.init_ca(prod, permit=["example.com"])
    assert info.permitted == ["example.com"] and api.describe_ca("prod").name == "prod"
    server = api.issue_server(prod, "docker1.example.com", out=str(tmp_path / "srv"))
    by_name = api.issue_server("prod", "docker2.example.com", out=str(tmp_path / "srv2"))
    assert server.serial != by_name.serial
    with pytest.raises(api.UsageError, match="outside the names this CA may sign for"):
        api.issue_server(prod, "docker3.example.org", out=str(tmp_path / "srv3"))
    client = api.client_context("laptop", "docker1.example.com", ca=prod)
    files = api.client_files("bot", tmp_path / "bot", ca="prod")
    assert client.serial and files.serial
    assert {i.name for i in api.list_items(ca=prod)} == {
        "prod",
        "docker1.example.com",
        "docker2.example.com",
        "laptop",
        "bot",
    }
    serials = [i.serial for i in api.list_items(ca=prod)]
    assert serials == [i.serial for i in api.list_items(ca="prod")]
    settings = api.export_settings(prod, "deploy", host="docker1.example.com")
    assert api.export_ci("prod", settings).bundle.context == "deploy"
    assert api.renew(prod, "client", "laptop").old_serial == client.serial
    assert api.start_rotation("prod").state == "started"
    assert api.rotation_status(prod).state == "rotating"
    assert api.finish_rotation(prod, force=True).state == "finished"
    assert api.status(ca=prod).cas == ["prod"] == api.status(ca="prod").cas

    # A CA in another store: the functions that take the store from the handle use it;
    # the ones that find $CERTKIT_HOME themselves say so instead of using the wrong store.
    elsewhere = api.CA("lab", root=tmp_path / "other-store")
    api.init_ca(elsewhere)
    assert (tmp_path / "other-store/cas/lab/ca.pem").is_file()
    assert api.issue(elsewhere, "client", "x", "x").record.kind == "client"
    with pytest.raises(api.UsageError, match="set CERTKIT_HOME to use that store"):
        api.client_context("lab", "docker1.example.com", ca=elsewhere)
