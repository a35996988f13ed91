"""`docker certkit ...` through the real docker CLI (certkit install-docker-plugin)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import cli_json, cli_ok, free_port, run_certkit, write_tcp_daemon_json

from certkit import ca, names
from certkit.dockerplugin import ENDPOINT_COMMANDS, METADATA, translate
from certkit.errors import UsageError
from certkit.store import CAStore


def docker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real docker CLI, with this test's DOCKER_CONFIG and CERTKIT_HOME."""
    exe = shutil.which("docker")
    if exe is None:
        if os.environ.get("CERTKIT_REQUIRE_DOCKERD") == "1":
            pytest.fail("the docker CLI is required (CERTKIT_REQUIRE_DOCKERD=1)")
        pytest.skip("the docker CLI is not installed")
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


@pytest.fixture
def plugin(docker_config: Path) -> Path:
    done = cli_json("install-docker-plugin")
    path = docker_config / "cli-plugins" / "docker-certkit"
    assert done["path"] == str(path) and done["scope"] == "user" and done["changed"]
    return path


def test_install_writes_an_executable_the_docker_cli_lists(plugin: Path) -> None:
    assert plugin.stat().st_mode & 0o777 == 0o755
    assert plugin.parent.parent.stat().st_mode & 0o777 == 0o700  # made as the docker CLI does
    assert cli_json("install-docker-plugin")["changed"] is False  # a second run changes nothing
    r = subprocess.run(
        [str(plugin), "docker-cli-plugin-metadata"], capture_output=True, text=True, check=True
    )
    assert json.loads(r.stdout) == METADATA and METADATA["SchemaVersion"] == "0.1.0"
    listed = docker("--help")
    assert listed.returncode == 0
    (line,) = [ln for ln in listed.stdout.splitlines() if ln.strip().startswith("certkit")]
    assert line.split() == ["certkit*", *str(METADATA["ShortDescription"]).split()]
    assert "Invalid Plugins" not in listed.stdout


def test_the_metadata_answer_imports_neither_typer_nor_cryptography() -> None:
    """`docker --help` asks every plugin for its metadata: the answer must stay cheap."""
    code = (
        "import sys; from certkit.dockerplugin import main; main(['docker-cli-plugin-metadata']);"
        "print(sorted(m for m in ('typer', 'click', 'cryptography', 'docker') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    metadata, loaded = r.stdout.splitlines()
    assert json.loads(metadata) == METADATA and loaded == "[]"


def test_docker_certkit_runs_certkit_with_its_exit_codes(plugin: Path, tmp_path: Path) -> None:
    empty = docker("certkit", "status")  # no CA yet: certkit's usage error, exit 2
    assert empty.returncode == 2 and "No CA in" in empty.stderr, empty.stderr
    cli_ok("init-ca")
    ok = docker("certkit", "status")
    assert ok.returncode == 0 and ok.stdout == cli_ok("status")
    cli_ok("issue-server", "docker1.example.com", "--days", "2", "--out", str(tmp_path / "s"))
    due = docker("certkit", "status", "--json")
    assert due.returncode == 1 and json.loads(due.stdout)["attention"][0]["name"] == (
        "docker1.example.com"
    )
    bad = docker("certkit", "no-such-command")
    assert bad.returncode == 2 and "Usage: docker certkit" in bad.stderr
    helped = docker("help", "certkit", "status")
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: docker certkit status")


def test_docker_config_flag_is_honoured(plugin: Path, tmp_path: Path) -> None:
    """`docker --config DIR certkit client-context` writes the context into DIR."""
    cli_ok("init-ca")
    other = tmp_path / "other-config"
    shutil.copytree(plugin.parent, other / "cli-plugins")
    r = docker("--config", str(other), "certkit", "client-context", "prod", "--host", "h.example")
    assert r.returncode == 0, r.stderr
    listed = docker("--config", str(other), "context", "ls", "--format", "{{.Name}}")
    assert "prod" in listed.stdout.split()
    assert "prod" not in docker("context", "ls", "--format", "{{.Name}}").stdout.split()


def _tls_daemon(store: CAStore, dockerd: Any, sandbox: Path) -> int:
    issued = ca.issue(store, "server", "localhost", "localhost", names.parse_names(["localhost"]))
    settings = {
        "tlsverify": True,
        "tlscacert": str(store.cert_path),
        "tlscert": str(issued.cert_path),
        "tlskey": str(issued.key_path),
    }
    base = sandbox / "d1"
    base.mkdir()
    daemon = write_tcp_daemon_json(base, settings)
    dockerd(**daemon.start_args())
    return daemon.port


def test_docker_context_and_host_flags_reach_verify(
    store: CAStore, plugin: Path, dockerd: Any, sandbox: Path
) -> None:
    port = _tls_daemon(store, dockerd, sandbox)
    cli_ok("client-context", "prod", "--host", "localhost", "--port", str(port))
    cli_ok("client-context", "closed", "--host", "localhost", "--port", str(free_port()))
    assert docker("--context", "prod", "version").returncode == 0  # the context works

    r = docker("--context", "prod", "certkit", "verify", "--insecure-port", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Verifying tcp://localhost:{port} with context prod" in r.stdout
    r = docker("-c", "closed", "certkit", "verify", "--timeout", "2", "--insecure-port", "0")
    assert r.returncode == 1 and "with context closed" in r.stdout  # certkit's exit code
    # -H and the --tls* files, as a docker user types them without a context
    files = json.loads(docker("context", "inspect", "prod").stdout)[0]["Storage"]["TLSPath"]
    tls = Path(files) / "docker"
    r = docker(
        "-H", f"tcp://localhost:{port}", "--tlsverify", f"--tlscacert={tls / 'ca.pem'}",
        "--tlscert", str(tls / "cert.pem"), "--tlskey", str(tls / "key.pem"),
        "certkit", "verify", "--insecure-port", "0",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"localhost:{port} with " in r.stdout and str(tls / "cert.pem") in r.stdout
    # both the docker flag and certkit's own: refused, not guessed
    r = docker("--context", "prod", "certkit", "verify", "--context", "closed")
    assert r.returncode == 2 and "give one" in r.stderr
    # no flag: the context the docker CLI would use (DOCKER_CONTEXT, else the current one)
    r = docker("certkit", "verify", "--insecure-port", "0", env={"DOCKER_CONTEXT": "prod"})
    assert r.returncode == 0 and "with context prod" in r.stdout, r.stdout + r.stderr
    assert docker("context", "use", "closed").returncode == 0
    r = docker("certkit", "verify", "--timeout", "2", "--insecure-port", "0")
    assert r.returncode == 1 and "with context closed" in r.stdout
    # a flag that names nothing to status: a warning, and status runs
    r = docker("--context", "prod", "certkit", "status")
    assert r.returncode == 0 and "docker --context means nothing" in r.stderr


def test_translate_maps_docker_options_to_certkit() -> None:
    assert translate(["certkit", "status"]).args == ["status"]
    run = translate(["--config", "/c", "-D", "-l", "debug", "--tls", "certkit", "list"])
    assert run.args == ["list"] and run.env == {"DOCKER_CONFIG": "/c"} and run.ignored == []
    assert translate(["--context=prod", "certkit", "env"]).args == ["env", "prod"]
    assert translate(["-c", "prod", "certkit", "env", "--shell", "fish"]).args == [
        "env", "--shell", "fish", "prod"
    ]  # fmt: skip
    assert translate(["-H", "tcp://h:2376", "certkit", "verify", "--timeout", "3"]).args == [
        "verify", "--timeout", "3", "h:2376"
    ]  # fmt: skip
    assert translate(["help", "certkit", "verify"]).args == ["verify", "--help"]
    asked: list[str | None] = []

    def selected(config: str | None) -> str | None:
        asked.append(config)
        return None  # no context selected: certkit's own message follows

    assert translate(["--config", "/c", "certkit", "env"], lambda c: "ctx").args == ["env", "ctx"]
    assert translate(["certkit", "env"], lambda c: "default").args == ["env"]  # the local socket
    assert translate(["certkit", "verify", "h:1"], lambda c: "ctx").args == ["verify", "h:1"]
    assert translate(["--config", "/c", "certkit", "verify"], selected).args == ["verify"]
    assert asked == ["/c"]  # asked in the config dir docker was given
    for argv, message in [
        (["--bogus", "certkit", "status"], "is not a docker global option"),
        (["-c"], "needs a value"),
        (["status"], "is not a docker global option"),
        ([], "run it as `docker certkit"),
        (["-H", "unix:///x.sock", "certkit", "verify"], "tcp://HOST:PORT"),
        (["-c", "a", "-H", "tcp://h:1", "certkit", "verify"], "give one"),
        (["-c", "a", "certkit", "verify", "h:2376"], "give one"),
    ]:
        with pytest.raises(UsageError, match=message):
            translate(argv)


def test_endpoint_commands_know_the_value_options_of_their_command() -> None:
    """ENDPOINT_COMMANDS finds a command's arguments by skipping its options' values: the
    list must match the command's real options, or an option's value would pass for one."""
    from certkit.cli import app

    group = __import__("typer").main.get_command(app)
    for name, use in ENDPOINT_COMMANDS.items():
        command = group.commands[name]
        takes_value = {
            opt
            for p in command.params
            if p.param_type_name == "option" and not p.is_flag
            for opt in p.opts
        }
        assert use.value_options == takes_value, name
        if use.context_option is not None:
            assert use.context_option in takes_value


def test_system_install_is_rerooted_and_a_foreign_file_is_kept(
    tmp_path: Path, docker_config: Path
) -> None:
    root = tmp_path / "root"
    done = cli_json("install-docker-plugin", "--system", "--root", str(root))
    path = root / "usr/local/lib/docker/cli-plugins/docker-certkit"
    assert done["path"] == str(path) and done["scope"] == "system"
    assert path.stat().st_mode & 0o777 == 0o755
    assert (root / "usr/local/lib/docker").stat().st_mode & 0o777 == 0o755
    assert not docker_config.exists()  # --system leaves the user's config alone

    foreign = docker_config / "cli-plugins" / "docker-certkit"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("#!/bin/sh\necho someone else's\n")
    r = run_certkit("install-docker-plugin")
    assert r.returncode == 2 and "was not written by certkit" in r.stderr
    assert foreign.read_text() == "#!/bin/sh\necho someone else's\n"
    assert cli_json("install-docker-plugin", "--force")["changed"] is True
    r = run_certkit("install-docker-plugin", "--user", "--system")
    assert r.returncode == 2 and "exclude each other" in r.stderr
    r = run_certkit("install-docker-plugin", "--root", str(root))
    assert r.returncode == 2 and "--root goes with --system" in r.stderr
