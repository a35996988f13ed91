"""`certkit client-context`, `certkit env`, `certkit context export|import` against a real dockerd.

One dockerd serves the whole module: TLS on 127.0.0.1 with a server
certificate from the certkit API (``ca.issue``) and ``tlsverify``, as
``certkit issue-server --install`` would set it up.  Each test then makes
its own contexts and talks to it with the real docker CLI (28.x on PATH and
Debian's 20.10 where present), docker-py 7.2 and strict Python TLS.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import (
    Dockerd,
    dockerd_available,
    refused,
    run_certkit,
    short_tempdir,
    start_dockerd,
    strict_context,
    tls_get,
    tlsverify_settings,
    write_tcp_daemon_json,
)

from certkit import ca, certs, dockercli, names
from certkit.origins import ClientOrigin
from certkit.store import CAStore

DOCKER_CLIS = [
    cli
    for cli in dict.fromkeys([shutil.which("docker"), "/usr/bin/docker"])
    if cli and os.access(cli, os.X_OK)
]
# The system bundle, as CI images and corporate machines point requests at it.
SYSTEM_BUNDLE = next(
    (
        p
        for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
        if os.path.exists(p)
    ),
    None,
)


@dataclass
class Daemon:
    home: Path  # CERTKIT_HOME holding the CA that signed the server and must sign clients
    port: int
    version: str  # what `docker version` must print as the server version
    dockerd: Dockerd


def _server_version(sock: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock)
        s.sendall(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return str(json.loads(data.partition(b"\r\n\r\n")[2])["Version"])


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    if not dockerd_available():
        if os.environ.get("CERTKIT_REQUIRE_DOCKERD") == "1":
            pytest.fail("dockerd is required (CERTKIT_REQUIRE_DOCKERD=1) but not installed")
        pytest.skip("dockerd is not installed")
    base = short_tempdir()
    home = base / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CERTKIT_HOME", str(home))
        ca.init_ca()
        store = CAStore()
        server = ca.issue(
            store, "server", "localhost", "localhost", names.parse_names(["localhost", "127.0.0.1"])
        )
        ca_file = base / "ca.pem"
        ca_file.write_bytes(store.trust_bundle_pem())
    daemon = write_tcp_daemon_json(
        base, tlsverify_settings(ca_file, server.cert_path, server.key_path)
    )
    d = start_dockerd(base, **daemon.start_args())
    try:
        yield Daemon(home, daemon.port, _server_version(daemon.unix_socket), d)
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pki(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    """The module's daemon, with this test's CERTKIT_HOME pointing at its CA."""
    monkeypatch.setenv("CERTKIT_HOME", str(daemon.home))
    return daemon


def docker(
    config: Path, *args: str, cli: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if not DOCKER_CLIS:
        pytest.skip("the docker CLI is not installed")
    full_env = {**os.environ, "DOCKER_CONFIG": str(config), **(env or {})}
    return subprocess.run(
        [cli or DOCKER_CLIS[0], *args], env=full_env, capture_output=True, text=True, timeout=60
    )


def server_version(config: Path, name: str, cli: str | None = None) -> str:
    res = docker(config, "--context", name, "version", "--format", "{{.Server.Version}}", cli=cli)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip()


def client_context(pki: Daemon, name: str, config: Path, *extra: str) -> dict[str, object]:
    res = run_certkit(
        "client-context", name, "--host", "localhost", "--port", str(pki.port),
        "--docker-config", str(config), "--json", *extra,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    result: dict[str, object] = json.loads(res.stdout)
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------- the docker CLI


def test_docker_cli_reaches_the_daemon_through_the_context(pki: Daemon, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    result = client_context(pki, "it", config)
    for cli in DOCKER_CLIS:
        assert server_version(config, "it", cli) == pki.version, cli
    listed = docker(config, "context", "ls", "--format", "{{.Name}} {{.DockerEndpoint}}")
    assert f"it tcp://localhost:{pki.port}" in listed.stdout.splitlines()

    # The inventory knows the certificate, where it went and how to make it again.
    record = next(r for r in CAStore().inventory().find("client", "it"))
    tls_dir = config / "contexts" / "tls" / dockercli.context_id("it") / "docker"
    assert record.installed == [str(tls_dir)]
    assert isinstance(record.origin, ClientOrigin)
    assert record.origin.host == "localhost" and record.origin.port == pki.port
    assert record.origin.docker_config == str(config)
    assert result["serial"] == record.serial

    # The client certificate is a proper client certificate, trusted with the CA's bundle.
    cert = certs.load_cert((tls_dir / "cert.pem").read_bytes())
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (tls_dir / "ca.pem").read_bytes() == CAStore().trust_bundle_pem()


def test_every_key_type_is_accepted_by_the_daemon(pki: Daemon, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    for key_type in ("ec-p384", "rsa-2048", "ed25519"):
        name = f"k-{key_type}"
        client_context(pki, name, config, "--key-type", key_type)
        assert server_version(config, name) == pki.version, key_type


def test_use_makes_it_current_for_plain_docker_commands(pki: Daemon, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    result = client_context(pki, "current", config, "--use")
    assert result["used"] is True
    res = docker(config, "version", "--format", "{{.Server.Version}}")
    assert res.returncode == 0 and res.stdout.strip() == pki.version, res.stderr


def test_use_warns_that_docker_host_overrides_contexts(pki: Daemon, tmp_path: Path) -> None:
    res = run_certkit(
        "client-context", "shadowed", "--host", "localhost", "--port", str(pki.port),
        "--docker-config", str(tmp_path), "--use",
        env={"DOCKER_HOST": "tcp://elsewhere:2376"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "DOCKER_HOST is set (tcp://elsewhere:2376)" in res.stderr
    assert "unset DOCKER_HOST" in res.stderr


def test_a_client_without_a_certificate_is_refused(pki: Daemon, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    client_context(pki, "it", config)
    tls_dir = dockercli.read_context("it", config).tls_dir
    ca_file = tls_dir / "ca.pem"
    good = strict_context(ca_file, tls_dir / "cert.pem", tls_dir / "key.pem")
    assert tls_get("127.0.0.1", pki.port, "/_ping", good, "localhost") == (200, b"OK")
    assert refused("127.0.0.1", pki.port, strict_context(ca_file), "localhost")


def test_expired_client_certificate_is_refused(pki: Daemon, tmp_path: Path) -> None:
    from certkit.client import client_context as api_client_context

    config = tmp_path / "docker"
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    api_client_context("old", "localhost", pki.port, docker_config=config, not_after=yesterday)
    res = docker(config, "--context", "old", "version")
    assert res.returncode != 0
    # TLS 1.3: the client may see the alert, or only the reset that follows it.
    assert "bad certificate" in res.stderr or "connection reset" in res.stderr, res.stderr
    assert "certificate has expired" in pki.dockerd.log()
    verify = run_certkit("verify", "--context", "old", "--docker-config", str(config))
    assert verify.returncode == 1
    assert "expired" in verify.stdout


# ---------------------------------------------------------------- files and modes


def test_key_is_private_even_under_umask_000(pki: Daemon, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    script = (
        f"umask 000 && {sys.executable} -m certkit client-context loose --host localhost "
        f"--port {pki.port} --docker-config {config}"
    )
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    info = dockercli.read_context("loose", config)
    for name in dockercli.TLS_FILES:
        assert mode(info.tls_dir / name) == 0o600, name
    assert mode(info.tls_dir) == mode(info.tls_dir.parent) == 0o700
    assert mode(config / "contexts" / "tls") == 0o700
    assert mode(info.meta_path) == 0o644 and mode(info.meta_path.parent) == 0o755
    assert mode(config) == 0o700
    assert json.loads(info.meta_path.read_text()) == {
        "Name": "loose",
        "Metadata": {"Description": f"certkit: localhost:{pki.port} (CA default)"},
        "Endpoints": {"docker": {"Host": f"tcp://localhost:{pki.port}", "SkipTLSVerify": False}},
    }
    assert server_version(config, "loose") == pki.version


def test_use_keeps_auths_byte_for_byte(pki: Daemon, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    # What `docker login` leaves behind (the docker CLI indents with tabs).
    original = (
        '{\n\t"auths": {\n\t\t"registry.example.com": {\n'
        '\t\t\t"auth": "dXNlcjpzM2NyZXQ=",\n\t\t\t"identitytoken": "tok\\u0026en"\n\t\t}\n\t},\n'
        '\t"credsStore": "pass",\n\t"currentContext": "old"\n}'
    )
    (config / "config.json").write_text(original)
    client_context(pki, "fresh", config, "--use")
    after = (config / "config.json").read_text()
    assert after == original.replace('"currentContext": "old"', '"currentContext": "fresh"')
    assert docker(config, "context", "show").stdout.strip() == "fresh"


def test_client_only_writes_just_the_three_files(pki: Daemon, tmp_path: Path) -> None:
    out = tmp_path / "app-certs"
    res = run_certkit(
        "client-context", "app", "--client-only", "--out", str(out),
        "--host", "localhost", "--port", str(pki.port),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert mode(out) == 0o700 and mode(out / "key.pem") == 0o600
    assert not (Path(os.environ["DOCKER_CONFIG"]) / "contexts").exists()  # no context
    if shutil.which("curl"):
        curl = subprocess.run(
            ["curl", "-sS", "--cacert", str(out / "ca.pem"), "--cert", str(out / "cert.pem"),
             "--key", str(out / "key.pem"), f"https://localhost:{pki.port}/_ping"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert curl.stdout == "OK", curl.stderr
    again = run_certkit("client-context", "app", "--client-only", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr


# ---------------------------------------------------------------- refusals


def test_bad_input_is_refused_and_nothing_is_issued(pki: Daemon, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    client_context(pki, "taken", config)
    before = CAStore().inventory().count()
    for args, why in (
        (["default", "--host", "localhost"], "reserved"),
        (["bad name", "--host", "localhost"], "not a valid docker context name"),
        (["taken", "--host", "localhost"], "--force"),
        (["ok", "--host", "no such host!"], "not a valid host name"),
        (["ok", "--host", "localhost", "--port", "70000"], "out of range"),
        (["ok"], "--host is required"),
        (["ok", "--host", "localhost", "--ca", "nope"], "certkit init-ca --ca nope"),
    ):
        res = run_certkit("client-context", *args, "--docker-config", str(config))
        assert res.returncode == 2, (args, res.stderr)
        assert why in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
    blocker = tmp_path / "a-file"  # a config dir that cannot be created (works as root too)
    blocker.write_text("")
    args = ["ok", "--host", "localhost", "--docker-config", str(blocker / "docker")]
    res = run_certkit("client-context", *args)
    assert res.returncode == 2 and "cannot be written" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    args = ["ok", "--client-only", "--out", str(blocker / "certs")]
    res = run_certkit("client-context", *args)
    assert res.returncode == 2 and "point --out at" in res.stderr, res.stderr
    assert CAStore().inventory().count() == before
    assert not dockercli.context_exists("ok", config)
    first = next(r for r in CAStore().inventory().find("client", "taken"))
    replaced = client_context(pki, "taken", config, "--force")
    assert server_version(config, "taken") == pki.version
    old = CAStore().inventory().get(first.serial)
    assert old is not None and old.superseded_by == replaced["serial"]


# ---------------------------------------------------------------- docker-py


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def _bundle_env(config: Path) -> dict[str, str]:
    if SYSTEM_BUNDLE is None:
        pytest.skip("no system CA bundle on this machine")
    return {
        **os.environ,
        "DOCKER_CONFIG": str(config),
        "REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE,
        "CURL_CA_BUNDLE": SYSTEM_BUNDLE,
    }


def test_docker_py_with_the_context_files_even_with_ca_bundle_variables(
    pki: Daemon, tmp_path: Path
) -> None:
    config = tmp_path / "docker"
    client_context(pki, "it", config)
    tls_dir = dockercli.read_context("it", config).tls_dir
    explicit = (
        "import docker\n"
        "tls = docker.tls.TLSConfig(\n"
        f"    client_cert=('{tls_dir}/cert.pem', '{tls_dir}/key.pem'),\n"
        f"    ca_cert='{tls_dir}/ca.pem', verify=True)\n"
        f"client = docker.DockerClient(base_url='tcp://localhost:{pki.port}', tls=tls,"
        " version='1.41')\n"
        "client.api.trust_env = False\n"
        "print(client.version()['Version'])\n"
    )
    from_context = (
        "import docker\n"
        "client = docker.DockerClient.from_context('it', version='1.41')\n"
        "client.api.trust_env = False\n"
        "print(client.version()['Version'])\n"
    )
    env = _bundle_env(config)
    for code in (explicit, from_context):
        res = _python(code, env)
        assert res.returncode == 0, res.stderr[-2000:]
        assert res.stdout.strip() == pki.version

    # Without trust_env=False the variables win over ca.pem (psf/requests#3829):
    # this is why certkit prints the advice.  If docker-py ever fixes it, this
    # assertion fails and the advice can go.
    broken = _python(from_context.replace("client.api.trust_env = False\n", ""), env)
    assert broken.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in broken.stderr
    res = run_certkit(
        "client-context", "it2", "--host", "localhost", "--port", str(pki.port),
        "--docker-config", str(config), env=env,
    )  # fmt: skip
    assert "REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are set" in res.stderr
    assert "client.api.trust_env = False" in res.stderr
    assert 'from_context("it2", version="1.41")' in res.stderr


def _eval_env_then_python(name: str, code: str, env: dict[str, str]) -> tuple[str, str, int]:
    """Run ``eval "$(certkit env NAME)"`` in bash, then ``code`` with what it exported."""
    py = sys.executable
    script = f'eval "$({py} -m certkit env {name} --shell bash)" && {py} -c "$CODE"'
    res = subprocess.run(
        ["bash", "-c", script], env={**env, "CODE": code}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    return res.stdout, res.stderr, res.returncode


def test_docker_py_from_env_with_certkit_env(pki: Daemon, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    client_context(pki, "it", config)
    plain = "import docker; print(docker.from_env().version()['Version'])"
    advised = (
        "import docker; client = docker.from_env(version='1.41'); "
        "client.api.trust_env = False; print(client.version()['Version'])"
    )
    clean = {k: v for k, v in _bundle_env(config).items() if not k.endswith("CA_BUNDLE")}
    out, err, rc = _eval_env_then_python("it", plain, clean)
    assert rc == 0 and out.strip() == pki.version, err[-2000:]
    assert "docker-py" not in run_certkit("env", "it", env=clean).stdout

    with_vars = _bundle_env(config)
    shown = run_certkit("env", "it", "--shell", "bash", env=with_vars)
    assert "# docker-py: REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are set" in shown.stdout
    assert 'client = docker.from_env(version="1.41"); client.api.trust_env = False' in shown.stdout
    out, err, rc = _eval_env_then_python("it", plain, with_vars)
    assert rc != 0 and "CERTIFICATE_VERIFY_FAILED" in err  # what the advice is about
    out, err, rc = _eval_env_then_python("it", advised, with_vars)
    assert rc == 0 and out.strip() == pki.version, err[-2000:]


# ---------------------------------------------------------------- moving contexts


def test_export_and_import_interoperate_with_the_docker_cli(pki: Daemon, tmp_path: Path) -> None:
    here, there = tmp_path / "laptop", tmp_path / "workstation"
    client_context(pki, "it", here)

    # certkit -> docker
    archive = tmp_path / "it.dockercontext"
    res = run_certkit(
        "context", "export", "it", "--out", str(archive), "--docker-config", str(here)
    )
    assert res.returncode == 0, res.stderr
    assert mode(archive) == 0o600
    for i, cli in enumerate(DOCKER_CLIS):
        imported = docker(there, "context", "import", f"moved{i}", str(archive), cli=cli)
        assert imported.returncode == 0, imported.stderr
        assert server_version(there, f"moved{i}", cli) == pki.version

    # docker -> certkit
    for i, cli in enumerate(DOCKER_CLIS):
        theirs = tmp_path / f"from-docker{i}.tar"
        exported = docker(here, "context", "export", "it", str(theirs), cli=cli)
        assert exported.returncode == 0, exported.stderr
        res = run_certkit(
            "context", "import", str(theirs), f"back{i}", "--docker-config", str(there)
        )
        assert res.returncode == 0, res.stderr
        assert server_version(there, f"back{i}") == pki.version
        info = dockercli.read_context(f"back{i}", there)
        assert mode(info.tls_dir / "key.pem") == 0o600


# ---------------------------------------------------------------- scripts/demo

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo"


def _sandbox_dir(output: str) -> Path:
    line = next(x for x in output.splitlines() if x.startswith("Sandbox: $DEMO = "))
    return Path(line.split(" = ", 1)[1].split(" ", 1)[0])


def test_demo_runs_end_to_end_and_cleans_up(daemon: Daemon) -> None:
    if os.geteuid() != 0:
        pytest.skip("the demo starts dockerd, which needs root")
    res = subprocess.run([str(DEMO)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "$ docker --context demo version" in out
    assert f"Version:          {daemon.version}" in out  # the server section
    assert "client didn't provide a certificate" in out  # dockerd refused the bare request
    assert "\n    OK\n" in out  # and accepted the one with the context's certificate
    work = _sandbox_dir(out)
    assert "Cleaned up: dockerd stopped" in out
    assert not work.exists()


def test_demo_without_dockerd_stops_after_writing_the_files(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with the basics but no dockerd
    bin_dir.mkdir()
    for tool in ("bash", "mktemp", "sed", "awk", "sort", "rm", "mkdir", "id", "dirname", "seq",
                 "sleep", "cat", "grep", "tail", "setsid", "pgrep"):  # fmt: skip
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    res = subprocess.run(
        [str(DEMO)], env={**os.environ, "PATH": str(bin_dir)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "dockerd is not installed here" in res.stdout
    assert '"tlsverify": true' in res.stdout  # the daemon.json was written and shown
    assert not _sandbox_dir(res.stdout).exists()
