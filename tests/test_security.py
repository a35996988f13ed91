"""Trust boundaries on the client side, attacked the way issue 20 found them.

Each test plays the attacker: whoever hands over a context archive or a CI
bundle, whoever could plant a meta.json, or a Docker host that answers with
terminal escapes.  The shells are real (bash; zsh and fish where installed,
.ci/run installs them); PowerShell and cmd cannot run here, so their output
is checked by a parser of their quoting rules.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from support import run_certkit
from test_context_store import CA, CERT, KEY

from certkit import certs, dockercli

CERTKIT = f"{sys.executable} -m certkit"


def _archive(meta: dict[str, object], extra: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    """An export tar with ``meta`` as meta.json and the three TLS files."""
    buf = io.BytesIO()
    members = [
        ("meta.json", json.dumps(meta).encode()),
        ("tls/docker/ca.pem", CA),
        ("tls/docker/cert.pem", CERT),
        ("tls/docker/key.pem", KEY),
        *extra,
    ]
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _meta(host: str, name: str = "prod", **endpoint: object) -> dict[str, object]:
    return {
        "Name": name,
        "Metadata": {},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False, **endpoint}},
    }


def _import(tmp_path: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    archive = tmp_path / "evil.dockercontext"
    archive.write_bytes(data)
    return run_certkit(
        "context", "import", str(archive), *args, "--docker-config", str(tmp_path / "c")
    )


def _plant(config: Path, name: str, host: str) -> None:
    """A context written as the docker CLI would, then its meta.json replaced by an attacker."""
    info = dockercli.write_context(name, "docker1", 2376, CA, CERT, KEY, docker_config=config)
    info.meta_path.write_text(json.dumps(_meta(host, name)))


# ---------------------------------------------------------------- certkit env: shell injection

EVIL_HOSTS = [
    "tcp://docker1:2376\u201d; Start-Process calc.exe; \u201c",  # PowerShell's other quotes
    'tcp://docker1:2376"; touch /tmp/certkit-pwned; "',
    "tcp://docker1:2376\nSET PWNED=1",  # a second command line for cmd's FOR /f
    "tcp://docker1:2376\r\n",
    "tcp://docker*:2376",  # globbed by the unquoted eval $(certkit env X)
    "tcp://docker1:2376/$(id)",
    "tcp://docker1:2376`id`",
    "tcp://user@docker1:2376",
    "tcp://docker1:2376 ; id",
    "tcp://docker1:2376\x1b]0;title\x07",
]


@pytest.mark.parametrize("host", EVIL_HOSTS)
def test_import_refuses_a_host_that_is_not_an_endpoint(host: str, tmp_path: Path) -> None:
    res = _import(tmp_path, _archive(_meta(host)))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "c").exists()  # nothing written


@pytest.mark.parametrize("shell", dockercli.SHELLS)
@pytest.mark.parametrize("host", EVIL_HOSTS)
def test_env_refuses_a_planted_host_in_every_shell(shell: str, host: str, tmp_path: Path) -> None:
    """A meta.json written by someone else is checked again before it becomes shell code."""
    _plant(tmp_path / "c", "prod", host)
    res = run_certkit("env", "prod", "--shell", shell, "--docker-config", str(tmp_path / "c"))
    assert res.returncode == 2, res.stdout
    assert res.stdout == "" and "Traceback" not in res.stderr
    assert "\x1b" not in res.stderr


def test_import_stores_the_canonical_endpoint(tmp_path: Path) -> None:
    res = _import(tmp_path, _archive(_meta("tcp://Docker1.Example.COM:2376")), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["host"] == "tcp://docker1.example.com:2376"


# The characters a docker config path may hold that each shell treats specially.
ODD = "sp ace  two*glob?[x] 'q\" $HOME `id` ;&|<>()!%^#~ \\back \u2019\u201c é"


def _odd_context(tmp_path: Path, host: str = "docker1") -> tuple[Path, dockercli.ContextInfo]:
    config = tmp_path / ODD
    info = dockercli.write_context("prod", host, 2376, CA, CERT, KEY, docker_config=config)
    return config, info


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


SHOW = 'printf "%s\\n" "$DOCKER_TLS_VERIFY" "$DOCKER_HOST" "$DOCKER_CERT_PATH"'


def _plant_globs(cwd: Path) -> None:
    """Files an unquoted ``eval $(certkit env X)`` would glob into the assignments."""
    (cwd / "export").mkdir()
    trap = cwd / 'DOCKER_HOST="tcp:'
    trap.mkdir()
    (trap / '1:2376"').write_text("")
    (trap / "1]:2376'").write_text("")
    (cwd / "DOCKER_HOST=tcp:").mkdir()
    (cwd / "DOCKER_HOST=tcp:" / "1").write_text("")


@pytest.mark.parametrize("shell", ["bash", "zsh"])
@pytest.mark.parametrize("quoted", [True, False])
def test_posix_shells_get_every_character_back(shell: str, quoted: bool, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (.ci/run installs it)")
    config, info = _odd_context(tmp_path, "::1")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _plant_globs(cwd)
    sub = f"$({CERTKIT} env prod --shell bash --docker-config {_sq(str(config))})"
    word = '"' + sub + '"' if quoted else sub
    script = f"eval {word}; {SHOW}"
    out = subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["1", "tcp://[::1]:2376", str(info.tls_dir)]


def test_fish_gets_every_character_back(tmp_path: Path) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (.ci/run installs it)")
    config, info = _odd_context(tmp_path, "::1")
    cmd = f"{CERTKIT} env prod --shell fish --docker-config {_sq(str(config))}"
    script = f"eval ({cmd}); printf '%s\\n' $DOCKER_TLS_VERIFY $DOCKER_HOST $DOCKER_CERT_PATH"
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "x")}
    out = subprocess.run(
        ["fish", "--no-config", "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["1", "tcp://[::1]:2376", str(info.tls_dir)]


_PS_QUOTES = "'\u2018\u2019\u201a\u201b"


def _powershell_assignments(text: str) -> dict[str, str]:
    """``$Env:K = '...'`` lines, decoded by PowerShell's rules for verbatim strings.

    In a single-quoted string every character is literal except the four
    single-quote characters, which end it unless doubled; anything after the
    closing quote would be code.
    """
    found = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        prefix, _, rest = line.partition(" = ")
        assert prefix.startswith("$Env:") and rest[:1] in _PS_QUOTES, line
        value, i = "", 1
        while True:
            c = rest[i]
            if c in _PS_QUOTES:
                if i + 1 < len(rest) and rest[i + 1] in _PS_QUOTES:
                    value, i = value + c, i + 2
                    continue
                assert rest[i + 1 :] == "", f"code after the string: {line!r}"
                break
            value, i = value + c, i + 1
        found[prefix.removeprefix("$Env:")] = value
    return found


def test_powershell_gets_every_character_back(tmp_path: Path) -> None:
    config, info = _odd_context(tmp_path, "::1")
    res = run_certkit("env", "prod", "--shell", "powershell", "--docker-config", str(config))
    assert res.returncode == 0, res.stderr
    assert _powershell_assignments(res.stdout) == {
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_HOST": "tcp://[::1]:2376",
        "DOCKER_CERT_PATH": str(info.tls_dir),
    }


def test_cmd_gets_only_allow_listed_values(tmp_path: Path) -> None:
    config, _ = _odd_context(tmp_path)
    res = run_certkit("env", "prod", "--shell", "cmd", "--docker-config", str(config))
    assert res.returncode == 2 and res.stdout == ""
    assert "cmd cannot be given safely" in res.stderr
    plain = tmp_path / "plain dir (x86)"
    info = dockercli.write_context("prod", "::1", 2376, CA, CERT, KEY, docker_config=plain)
    res = run_certkit("env", "prod", "--shell", "cmd", "--docker-config", str(plain))
    assert res.returncode == 0, res.stderr
    sets = [line for line in res.stdout.splitlines() if not line.startswith("REM")]
    assert sets == [
        'SET "DOCKER_TLS_VERIFY=1"',
        'SET "DOCKER_HOST=tcp://[::1]:2376"',
        f'SET "DOCKER_CERT_PATH={info.tls_dir}"',
    ]
    for line in sets:  # one quoted SET each: nothing cmd would expand or end the quote with
        assert not set(line[5:-1]) & set('"%!^&|<>\r\n')


def test_env_refuses_a_config_path_with_a_control_character(tmp_path: Path) -> None:
    config = tmp_path / "a\nb"
    dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY, docker_config=config)
    res = run_certkit("env", "prod", "--docker-config", str(config))
    assert res.returncode == 2 and res.stdout == ""
    assert "control characters" in res.stderr


# ---------------------------------------------------------------- import: what an archive may say


@pytest.mark.parametrize(
    ("host", "endpoint"),
    [
        ("tcp://docker1:2376", {"SkipTLSVerify": True}),
        ("tcp://docker1:2376", {"SkipTLSVerify": 1}),
        ("ssh://root@docker1", {}),
        ("unix:///var/run/docker.sock", {}),
        ("npipe:////./pipe/docker_engine", {}),
        ("https://docker1:2376", {}),
    ],
)
def test_import_refuses_a_context_that_does_not_verify_a_tls_daemon(
    host: str, endpoint: dict[str, object], tmp_path: Path
) -> None:
    res = _import(tmp_path, _archive(_meta(host, **endpoint)))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "SkipTLSVerify" in res.stderr or "tcp://" in res.stderr
    assert not (tmp_path / "c").exists()


def _raw_tar(*members: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _raw_zip(*members: tuple[str, bytes]) -> bytes:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # duplicates on purpose
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


GOOD = json.dumps(_meta("tcp://docker1:2376")).encode()
EVIL = json.dumps(_meta("tcp://evil.example:2376")).encode()


@pytest.mark.parametrize(
    "data",
    [
        _raw_tar(("meta.json", GOOD), ("meta.json", EVIL)),  # tar: the last one wins
        _raw_tar(("meta.json", GOOD), ("./meta.json", EVIL)),
        _raw_tar(("meta.json", GOOD), ("tls/docker/ca.pem", CA), ("tls/docker/./ca.pem", CA)),
        _raw_zip(("meta.json", GOOD), ("./meta.json", EVIL)),  # slipped past the zip check
        _raw_zip(("meta.json", GOOD), ("tls/docker/key.pem", KEY), ("tls/./docker/key.pem", KEY)),
    ],
)
def test_import_refuses_duplicate_members(data: bytes, tmp_path: Path) -> None:
    res = _import(tmp_path, data, "x1")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "twice" in res.stderr
    assert not (tmp_path / "c").exists()


def _pax_override() -> bytes:
    """A member named harmlessly in its header whose PAX ``path`` record says otherwise."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("meta.json")
        info.size = len(GOOD)
        tar.addfile(info, io.BytesIO(GOOD))
        info = tarfile.TarInfo("tls/docker/ca.pem")
        info.pax_headers = {"path": "../../.bashrc"}
        info.size = 3
        tar.addfile(info, io.BytesIO(b"x=1"))
    return buf.getvalue()


def _device() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("meta.json"), io.BytesIO(b""))
        dev = tarfile.TarInfo("tls/docker/key.pem")
        dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(dev)
    return buf.getvalue()


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", GOOD)
        info = zipfile.ZipInfo("tls/docker/cert.pem")
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, b"\0" * (64 * 1024 * 1024))
    data = buf.getvalue()
    assert len(data) < 1024 * 1024
    return data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_pax_override(), "unsafe path"),
        (_device(), "not a regular file"),
        (_zip_bomb(), "over 4 MiB"),
        (_raw_tar(("meta.json", GOOD), ("tls\\docker\\key.pem", KEY)), "unsafe path"),
    ],
)
def test_import_keeps_refusing_archive_tricks(data: bytes, why: str, tmp_path: Path) -> None:
    """What held before issue 20 (PAX paths, devices, zip bombs, backslashes): kept."""
    res = _import(tmp_path, data, "x1")
    assert res.returncode == 2, res.stdout + res.stderr
    assert why in res.stderr
    assert not (tmp_path / "c").exists()
    assert not (tmp_path.parent / ".bashrc").exists()


def test_import_use_with_an_invalid_config_json_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "c"
    config.mkdir()
    (config / "config.json").write_text("[not an object")
    res = _import(tmp_path, _archive(_meta("tcp://docker1:2376")), "--use")
    assert res.returncode == 2, res.stdout + res.stderr
    assert sorted(p.name for p in config.iterdir()) == ["config.json"]


def test_doctor_fails_a_context_that_skips_tls_verification(tmp_path: Path) -> None:
    config = tmp_path / "c"
    info = dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY, docker_config=config)
    meta = json.loads(info.meta_path.read_text())
    meta["Endpoints"]["docker"]["SkipTLSVerify"] = True  # what `docker context create` can do
    info.meta_path.write_text(json.dumps(meta))
    (tmp_path / "root").mkdir()
    res = run_certkit(
        "doctor", "--root", str(tmp_path / "root"), "--docker-config", str(config), "--json"
    )
    assert res.returncode == 1, res.stdout + res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"]}
    assert checks["context prod"]["status"] == "FAIL"
    assert "SkipTLSVerify" in checks["context prod"]["message"]
    env = run_certkit("env", "prod", "--docker-config", str(config))
    assert env.returncode == 2 and env.stdout == ""


# ---------------------------------------------------------------- CI bundles, validate first


def _bundle_json(store: object) -> dict[str, object]:
    res = run_certkit(
        "ci", "export", "runner1", "--host", "docker1.example.com", "--format", "json"
    )
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def _encode(data: dict[str, object]) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def _bootstrap(tmp_path: Path, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "DOCKER_CONFIG": str(tmp_path / "runner-docker"),
        "GITHUB_ENV": str(github_env),
        "CERTKIT_BUNDLE": secret,
    }
    return subprocess.run(
        [sys.executable, "-m", "certkit", "ci", "bootstrap", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "runner-docker").exists()
    assert (tmp_path / "github_env").read_text() == ""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("context", "runner1\n"),  # "$" in a regex let this through, after writing the context
        ("context", "runner1\r"),
        ("context", "-runner1"),
        ("context", "run ner1"),
        ("host", "docker1.example.com\n"),
        ("host", "docker1.example.com\nHOST=evil"),
        ("host", "-oProxyCommand=id"),
        ("host", "ssh://docker1.example.com"),
        ("host", "docker1.example.com:2377"),
        ("host", "docker1\u201d.example.com"),
        ("port", 0),
        ("port", 65536),
        ("port", "2376"),
    ],
)
def test_a_crafted_bundle_is_refused_before_anything_is_written(
    field: str, value: object, store: object, tmp_path: Path
) -> None:
    data = _bundle_json(store)
    data[field] = value
    res = _bootstrap(tmp_path, _encode(data))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    _nothing_written(tmp_path)


@pytest.mark.parametrize(
    "secret",
    [
        "eyJ2Ijo",  # base64 cut mid-way
        "e30=e30=",  # padding in the middle
        "Zm9v\nYmFy=\n=",
        "A",
        "////",
        base64.b64encode(b"\xff\xfe{").decode(),
    ],
)
def test_a_malformed_bundle_is_one_sentence(secret: str, tmp_path: Path) -> None:
    res = _bootstrap(tmp_path, secret)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("certkit: error:") and "Traceback" not in res.stderr
    _nothing_written(tmp_path)


def test_bootstrap_checks_the_config_path_and_config_json_before_writing(
    store: object, tmp_path: Path
) -> None:
    secret = _encode(_bundle_json(store))
    odd = tmp_path / "x\nA=1"  # DOCKER_CONFIG goes into $GITHUB_ENV: a second variable
    res = _bootstrap(tmp_path, secret, "--docker-config", str(odd))
    assert res.returncode == 2, res.stdout + res.stderr
    assert not odd.exists()
    _nothing_written(tmp_path)
    config = tmp_path / "runner-docker"
    config.mkdir()
    (config / "config.json").write_text("{broken")
    res = _bootstrap(tmp_path, secret)
    assert res.returncode == 2, res.stdout + res.stderr
    assert sorted(p.name for p in config.iterdir()) == ["config.json"]
    assert (tmp_path / "github_env").read_text() == ""


def test_client_context_use_with_an_invalid_config_json_issues_nothing(
    store: object, docker_config: Path
) -> None:
    docker_config.mkdir(parents=True, exist_ok=True)
    (docker_config / "config.json").write_text('{"auths": {}')
    before = run_certkit("list", "--json").stdout
    res = run_certkit("client-context", "aa", "--host", "docker1", "--use")
    assert res.returncode == 2, res.stdout + res.stderr
    assert run_certkit("list", "--json").stdout == before  # no certificate issued or recorded
    assert sorted(p.name for p in docker_config.iterdir()) == ["config.json"]


# ---------------------------------------------------------------- verify: faked refusals


class ProbeCutter:
    """A TCP relay in front of a real dockerd that cuts the connections from ``cut_from`` on.

    A cut connection gets the whole TLS handshake relayed (the client's first
    record, every server byte), then is closed the moment the client sends
    anything more: the client's handshake has completed, the daemon never
    answers.  That is all someone in the middle needs to fake "refused".
    """

    def __init__(self, backend: int, cut_from: int) -> None:
        import socket
        import threading

        self.backend, self.cut_from, self.count = backend, cut_from, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.count += 1
            server = socket.create_connection(("127.0.0.1", self.backend))
            cut = self.count >= self.cut_from
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
            threading.Thread(target=self._upstream, args=(client, server, cut), daemon=True).start()

    @staticmethod
    def _pump(src: object, dst: object) -> None:
        import contextlib

        with contextlib.suppress(OSError):
            while data := src.recv(65536):  # type: ignore[attr-defined]
                dst.sendall(data)  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            dst.close()  # type: ignore[attr-defined]

    @staticmethod
    def _upstream(client: object, server: object, cut: bool) -> None:
        import contextlib

        first_record: int | None = None
        relayed = b""
        with contextlib.suppress(OSError):
            while data := client.recv(65536):  # type: ignore[attr-defined]
                if cut:
                    relayed += data
                    if first_record is None and len(relayed) >= 5:
                        first_record = 5 + int.from_bytes(relayed[3:5], "big")
                    if first_record is not None and len(relayed) > first_record:
                        break  # the client's second flight: its handshake is done
                server.sendall(data)  # type: ignore[attr-defined]
        for s in (client, server):
            with contextlib.suppress(OSError):
                s.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.listener.close()


def _verify(port: int, store: object, client: object) -> subprocess.CompletedProcess[str]:
    """``certkit verify localhost:PORT --json`` with the store's CA and ``client``'s files."""
    files = [
        ("--ca", store.cert_path),  # type: ignore[attr-defined]
        ("--cert", client.cert_path),  # type: ignore[attr-defined]
        ("--key", client.key_path),  # type: ignore[attr-defined]
    ]
    args = [x for flag, path in files for x in (flag, str(path))]
    return run_certkit("verify", f"localhost:{port}", *args, "--insecure-port", "0", "--json")


def test_verify_does_not_count_a_cut_connection_as_a_refusal(
    store: object, sandbox: Path, dockerd: object
) -> None:
    from support import write_tcp_daemon_json

    from certkit import ca, names
    from certkit.store import CAStore

    assert isinstance(store, CAStore)
    server = ca.issue(store, "server", "localhost", "localhost", names.parse_names(["localhost"]))
    client = ca.issue(store, "client", "it", "it")
    # A daemon that takes clients WITHOUT certificates: verify must never call it safe.
    tls = {"tls": True, "tlsverify": False, "tlscert": str(server.cert_path)}
    tls["tlskey"] = str(server.key_path)
    base = sandbox / "d1"
    base.mkdir()
    daemon = write_tcp_daemon_json(base, tls)
    dockerd(**daemon.start_args())  # type: ignore[operator]
    # verify's connections: first look, chain, /_ping, /version, then the two probes.
    relay = ProbeCutter(daemon.port, cut_from=5)
    try:
        res = _verify(relay.port, store, client)
    finally:
        relay.close()
    report = json.loads(res.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert relay.count >= 6, checks
    for probe in ("client-cert-required", "unknown-ca-refused"):
        assert checks[probe]["status"] == "WARN", checks[probe]
        assert "not proven" in checks[probe]["message"]
    assert res.returncode == 1 and report["ok"] is False and report["proven"] is False


def test_verify_shows_no_client_certificate_to_an_impostor(store: object, tmp_path: Path) -> None:
    """A machine in the middle with its own certificate for the name learns nothing from verify."""
    import socket
    import ssl
    import threading

    from certkit import ca, names
    from certkit.store import CAStore

    assert isinstance(store, CAStore)
    client = ca.issue(store, "client", "it", "it")
    fake_key = certs.generate_key()
    fake_ca = certs.make_ca(fake_key, "impostor CA", 1)
    leaf_key = certs.generate_key()
    leaf = certs.make_leaf(
        fake_ca, fake_key, leaf_key.public_key(), "server", "localhost",
        names.parse_names(["localhost"]), 1,
    )  # fmt: skip
    (tmp_path / "fake.pem").write_bytes(certs.cert_pem(leaf) + certs.cert_pem(fake_ca))
    (tmp_path / "fake-key.pem").write_bytes(certs.key_pem(leaf_key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "fake.pem", tmp_path / "fake-key.pem")
    ctx.load_verify_locations(store.cert_path)  # it would love the real client certificate
    ctx.verify_mode = ssl.CERT_OPTIONAL
    seen: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(raw, server_side=True) as s:
                    if der := s.getpeercert(binary_form=True):
                        seen.append(der)
                    s.sendall(
                        b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"
                    )
            except (OSError, ssl.SSLError):
                raw.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        res = _verify(listener.getsockname()[1], store, client)
    finally:
        listener.close()
    assert res.returncode == 1, res.stdout + res.stderr
    checks = {c["name"]: c["status"] for c in json.loads(res.stdout)["checks"]}
    assert checks["chain"] == "FAIL" and checks["handshake"] == "FAIL"
    assert checks["client-cert-required"] == "WARN"  # an impostor's word proves nothing
    mine = certs.load_cert(client.cert_path.read_bytes())
    from cryptography.hazmat.primitives.serialization import Encoding

    assert mine.public_bytes(Encoding.DER) not in seen


# ---------------------------------------------------------------- terminal escapes

ESCAPES = "\x1b]0;PWNED\x07\x1b[2J\x1b]52;c;ZWNobyBwd25lZA==\x07\x9b31m"


def _no_escapes(text: str) -> None:
    assert not any(c in text for c in "\x1b\x07\x9b"), repr(text)


def test_doctor_escapes_what_a_hosts_daemon_json_says(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc" / "docker").mkdir(parents=True)
    daemon = {
        "tls": True,
        "tlsverify": True,
        "tlscacert": f"/x{ESCAPES}",
        "tlscert": f"/y{ESCAPES}",
        "tlskey": f"/z{ESCAPES}",
        "hosts": [f"tcp://0.0.0.0:2376{ESCAPES}"],
    }
    (root / "etc" / "docker" / "daemon.json").write_text(json.dumps(daemon))
    res = run_certkit("doctor", "--root", str(root))
    assert res.returncode == 1
    _no_escapes(res.stdout + res.stderr)
    assert "\\x1b]0;PWNED" in res.stdout  # shown, harmlessly


def test_doctor_and_env_escape_a_planted_context(tmp_path: Path) -> None:
    config = tmp_path / "c"
    info = dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY, docker_config=config)
    meta = json.loads(info.meta_path.read_text())
    meta["Endpoints"]["docker"]["Host"] = f"tcp://docker1:2376{ESCAPES}"
    meta["Metadata"] = {"Description": ESCAPES}
    info.meta_path.write_text(json.dumps(meta))
    (tmp_path / "root").mkdir()
    for args in (["doctor", "--root", str(tmp_path / "root")], ["env", "prod"]):
        res = run_certkit(*args, "--docker-config", str(config))
        assert res.returncode in (1, 2), res.stdout + res.stderr
        _no_escapes(res.stdout + res.stderr)
    res = _import(tmp_path, _archive({**_meta("tcp://docker1:2376"), "Metadata": meta["Metadata"]}))
    assert res.returncode == 2 and "control characters" in res.stderr
    _no_escapes(res.stderr)


def test_someone_elses_config_json_link_is_not_followed(store: object, tmp_path: Path) -> None:
    """In a shared docker config dir, another user's config.json link must not pick our write.

    The link is owned by uid 4242, as if another member of the group that may
    write the directory had planted it (certkit used to resolve it by itself
    and rewrite the target, e.g. /etc/docker/daemon.json).
    """
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2775)
    victim = tmp_path / "daemon.json"
    victim.write_text('{"log-level": "info"}\n')
    link = shared / "config.json"
    link.symlink_to(victim)
    os.lchown(link, 4242, 4242)
    before = run_certkit("list", "--json").stdout
    res = run_certkit(
        "client-context", "aa", "--host", "docker1", "--use", "--docker-config", str(shared)
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "symlink owned by uid 4242" in res.stderr
    assert victim.read_text() == '{"log-level": "info"}\n'
    assert run_certkit("list", "--json").stdout == before
    assert sorted(p.name for p in shared.iterdir()) == ["config.json"]


@pytest.mark.parametrize(
    "command",
    [
        ["client-context", "aa\n", "--host", "docker1"],
        ["client-context", "aa", "--host", "docker1\n"],
        ["ci", "export", "runner1\n", "--host", "docker1"],
        ["ci", "export", "runner1", "--host", "docker1", "--context", "runner1\n"],
    ],
)
def test_names_with_a_trailing_newline_issue_nothing(
    command: list[str], store: object, docker_config: Path
) -> None:
    """``re.match("...$")`` accepts "name\\n": every name rule is a fullmatch now."""
    before = run_certkit("list", "--json").stdout
    res = run_certkit(*command)
    assert res.returncode == 2, res.stdout + res.stderr
    assert run_certkit("list", "--json").stdout == before
    assert not docker_config.exists()


def test_import_refuses_a_context_name_with_a_trailing_newline(tmp_path: Path) -> None:
    res = _import(tmp_path, _archive(_meta("tcp://docker1:2376", name="prod\n")))
    assert res.returncode == 2, res.stdout + res.stderr
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- issue 13, in the same files


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["x1", "--host", "fe80::1%eth0"], "IPv6 zone"),  # the docker CLI: invalid URL escape
        (["", "--host", "docker1"], "not a valid docker context name"),  # not the default name
        (["a" * 70, "--host", "docker1"], "or give --cn"),  # --cn was not given
    ],
)
def test_client_context_refuses_before_issuing(
    args: list[str], says: str, store: object, docker_config: Path
) -> None:
    before = run_certkit("list", "--json").stdout
    res = run_certkit("client-context", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert says in res.stderr
    assert run_certkit("list", "--json").stdout == before
    assert not docker_config.exists()


def test_verify_keeps_the_brackets_of_an_ipv6_endpoint(store: object) -> None:
    from support import free_port

    from certkit import ca

    client = ca.issue(store, "client", "it", "it")  # type: ignore[arg-type]
    port = free_port()
    res = run_certkit(
        "verify", f"[::1]:{port}", "--ca", str(client.cert_path), "--cert",
        str(client.cert_path), "--key", str(client.key_path), "--insecure-port", "0",
    )  # fmt: skip
    assert res.returncode == 1
    connect = next(line for line in res.stdout.splitlines() if line.startswith("FAIL"))
    assert connect.count(f"[::1]:{port}") == 2, connect  # the header is cli/inspect.py's


@pytest.mark.parametrize(
    ("mode", "owner", "says"),
    [(0o1777, 0, "writable by every user"), (0o700, 4242, "owned by uid 4242")],
)
def test_a_docker_config_dir_someone_else_controls_is_refused(
    mode: int, owner: int, says: str, store: object, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    os.chown(shared, owner, owner)
    before = run_certkit("list", "--json").stdout
    for args in (
        ["client-context", "aa", "--host", "docker1"],
        ["context", "import", str(_write(tmp_path, _archive(_meta("tcp://docker1:2376"))))],
    ):
        res = run_certkit(*args, "--docker-config", str(shared))
        assert res.returncode == 2, res.stdout + res.stderr
        assert says in res.stderr
    assert run_certkit("list", "--json").stdout == before
    assert list(shared.iterdir()) == []


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "ctx.dockercontext"
    path.write_bytes(data)
    return path
