"""The docker context store as certkit writes it, checked against the real docker CLI.

No daemon needed: the docker CLI reads, lists, exports and imports contexts
offline.  ``docker`` on PATH is 28.x here; ``/usr/bin/docker`` (20.10) is
tried too where it exists, since both are in use.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from support import run_certkit

from certkit import certs, dockercli, names
from certkit.errors import OperationError, UsageError


def _pems() -> tuple[bytes, bytes, bytes]:
    """Real PEMs: the docker CLI checks that what it is given parses."""
    ca_key = certs.generate_key()
    ca = certs.make_ca(ca_key, "test CA", 1)
    key = certs.generate_key()
    cert = certs.make_leaf(ca, ca_key, key.public_key(), "client", "prod", None, 1)
    return certs.cert_pem(ca), certs.cert_pem(cert), certs.key_pem(key)


CA, CERT, KEY = _pems()
DOCKER_CLIS = [
    cli
    for cli in dict.fromkeys([shutil.which("docker"), "/usr/bin/docker"])
    if cli and os.access(cli, os.X_OK)
]


def docker(
    cli: str, config: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    res = subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def cli() -> str:
    if not DOCKER_CLIS:
        pytest.skip("the docker CLI is not installed")
    return DOCKER_CLIS[0]


# ---------------------------------------------------------------- names and hosts


@pytest.mark.parametrize("name", ["prod", "a1", "docker1.lan", "ci+deploy", "x_y-z"])
def test_valid_context_names(name: str) -> None:
    assert dockercli.validate_context_name(name) == name


@pytest.mark.parametrize("name", ["default", "x", "-prod", ".hidden", "a b", "a/b", "", "é1"])
def test_invalid_context_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError):
        dockercli.validate_context_name(name)


def test_context_id_is_the_sha256_of_the_name() -> None:
    assert dockercli.context_id("t1") == (
        "628b49d96dcde97a430dd4f597705899e09a968f793491e4b704cae33a40dc02"
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docker1.example.com", "tcp://docker1.example.com:2376"),
        ("10.0.0.5", "tcp://10.0.0.5:2376"),
        ("::1", "tcp://[::1]:2376"),
        ("[2001:db8::7]", "tcp://[2001:db8::7]:2376"),
    ],
)
def test_hosts_are_formatted_as_docker_expects(host: str, expected: str) -> None:
    assert names.format_host(host, 2376) == expected


@pytest.mark.parametrize("host", ["10.0.0.300", "tcp://x", "a b", "*.example.com", "user@host"])
def test_bad_hosts_are_refused(host: str) -> None:
    with pytest.raises(UsageError):
        names.format_host(host, 2376)


def test_default_names_come_from_the_host() -> None:
    assert dockercli.default_name_for("docker1.example.com") == "docker1"
    assert dockercli.default_name_for("10.0.0.5") == "10-0-0-5"
    assert dockercli.default_name_for("::1") == "docker-1"
    # The name follows the endpoint's normalised host: lower case, IDN as A-labels.
    assert dockercli.default_name_for("Docker1.Example.COM") == "docker1"
    assert dockercli.default_name_for("bücher.example") == "xn--bcher-kva"


# ---------------------------------------------------------------- the store format


def test_written_context_is_byte_identical_to_docker_context_create(
    cli: str, tmp_path: Path
) -> None:
    """meta.json exactly as the docker CLI writes it, and the same modes on every path."""
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    for name, data in (("ca.pem", CA), ("cert.pem", CERT), ("key.pem", KEY)):
        (tmp_path / name).write_bytes(data)
    docker(
        cli,
        theirs,
        "context",
        "create",
        "prod",
        "--description",
        "Prod daemon",
        "--docker",
        f"host=tcp://[::1]:2376,ca={tmp_path}/ca.pem,cert={tmp_path}/cert.pem,"
        f"key={tmp_path}/key.pem",
    )
    info = dockercli.write_context(
        "prod", "::1", 2376, CA, CERT, KEY, description="Prod daemon", docker_config=ours
    )
    rel = f"contexts/meta/{dockercli.context_id('prod')}/meta.json"
    assert info.meta_path == ours / rel
    assert (ours / rel).read_bytes() == (theirs / rel).read_bytes()
    assert json.loads(info.meta_path.read_text()) == {
        "Name": "prod",
        "Metadata": {"Description": "Prod daemon"},
        "Endpoints": {"docker": {"Host": "tcp://[::1]:2376", "SkipTLSVerify": False}},
    }
    for path in sorted((theirs / "contexts").rglob("*")):
        mine = ours / path.relative_to(theirs)
        assert mode(mine) == mode(path), mine
        if path.is_file():
            assert mine.read_bytes() == path.read_bytes()
    listed = docker(cli, ours, "context", "ls", "--format", "{{.Name}} {{.DockerEndpoint}}")
    assert "prod tcp://[::1]:2376" in listed.stdout


def test_modes_hold_under_umask_000(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        info = dockercli.write_context(
            "prod", "docker1", 2376, CA, CERT, KEY, docker_config=tmp_path
        )
    finally:
        os.umask(old)
    assert mode(info.tls_dir / "key.pem") == 0o600
    assert mode(info.tls_dir / "ca.pem") == 0o600
    for d in (info.tls_dir, info.tls_dir.parent, info.tls_dir.parent.parent):
        assert mode(d) == 0o700, d
    assert mode(info.meta_path) == 0o644
    assert mode(info.meta_path.parent) == 0o755
    assert mode(tmp_path) == 0o700  # a config dir certkit creates is private


def test_existing_context_is_not_replaced_without_force(tmp_path: Path) -> None:
    dockercli.write_context("prod", "old", 2376, CA, CERT, KEY, docker_config=tmp_path)
    with pytest.raises(UsageError, match="--force"):
        dockercli.write_context("prod", "new", 2376, CA, CERT, KEY, docker_config=tmp_path)
    assert dockercli.read_context("prod", tmp_path).host == "tcp://old:2376"
    dockercli.write_context(
        "prod", "new", 2376, b"ca2", CERT, KEY, docker_config=tmp_path, force=True
    )
    info = dockercli.read_context("prod", tmp_path)
    assert info.host == "tcp://new:2376"
    assert (info.tls_dir / "ca.pem").read_bytes() == b"ca2"
    assert not list(info.tls_dir.glob(".*.tmp"))  # no temp file left behind


def test_read_context_of_a_missing_context_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="certkit client-context"):
        dockercli.read_context("nope", tmp_path)


# ---------------------------------------------------------------- config.json

DOCKER_LOGIN_CONFIG = """{
\t"auths": {
\t\t"registry.example.com": {
\t\t\t"auth": "dXNlcjpwYXNzd29yZA=="
\t\t}
\t},
\t"credsStore": "pass",
\t"proxies": {"default": {"httpProxy": "http://proxy:3128"}},
\t"plugins": {"x": {"k": "v\\u003cw\\u003e"}}
}"""


def test_set_current_context_keeps_every_other_byte(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    tmp_path.chmod(0o755)
    config.write_text(DOCKER_LOGIN_CONFIG)
    dockercli.set_current_context("prod", tmp_path)
    text = config.read_text()
    assert text == DOCKER_LOGIN_CONFIG[:-2] + ',\n\t"currentContext": "prod"\n}'
    assert mode(config) == 0o600
    assert mode(tmp_path) == 0o755  # an existing dir keeps its owner's mode
    # Switching again replaces only the value.
    dockercli.set_current_context("staging", tmp_path)
    assert config.read_text() == text.replace('"prod"', '"staging"')
    assert dockercli.current_context(tmp_path) == "staging"


def test_set_current_context_creates_a_private_config(tmp_path: Path) -> None:
    target = tmp_path / "new"
    dockercli.set_current_context("prod", target)
    assert json.loads((target / "config.json").read_text()) == {"currentContext": "prod"}
    assert mode(target) == 0o700 and mode(target / "config.json") == 0o600


def test_set_current_context_follows_a_symlinked_config(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles-config.json"
    real.write_text('{"auths": {}}')
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").symlink_to(real)
    dockercli.set_current_context("prod", tmp_path / "cfg")
    assert (tmp_path / "cfg" / "config.json").is_symlink()
    assert json.loads(real.read_text()) == {"auths": {}, "currentContext": "prod"}


def test_a_broken_config_json_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"auths": {')
    with pytest.raises(UsageError, match="not a JSON object"):
        dockercli.set_current_context("prod", tmp_path)
    assert (tmp_path / "config.json").read_text() == '{"auths": {'


def test_docker_cli_sees_the_current_context(cli: str, tmp_path: Path) -> None:
    docker(cli, tmp_path, "context", "create", "other", "--docker", "host=tcp://o:2376")
    dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY, docker_config=tmp_path)
    dockercli.set_current_context("prod", tmp_path)
    shown = docker(cli, tmp_path, "context", "show")
    assert shown.stdout.strip() == "prod"


def test_docker_host_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dockercli.docker_host_override_warning() is None
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere:2376")
    warning = dockercli.docker_host_override_warning()
    assert warning and "unset DOCKER_HOST" in warning and "tcp://elsewhere:2376" in warning


# ---------------------------------------------------------------- certkit env


def _env_output(*args: str) -> str:
    res = run_certkit("env", *args, env={"SHELL": "/bin/bash"})
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_env_in_every_shell(docker_config: Path) -> None:
    info = dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY)
    assert _env_output("prod") == (
        'export DOCKER_TLS_VERIFY="1"\n'
        'export DOCKER_HOST="tcp://docker1:2376"\n'
        f'export DOCKER_CERT_PATH="{info.tls_dir}"\n'
        "# Run this command to configure your shell: \n"
        '# eval "$(certkit env prod)"\n'
    )
    fish = _env_output("prod", "--shell", "fish")
    assert f"set -gx DOCKER_CERT_PATH '{info.tls_dir}';" in fish
    assert "# eval (certkit env prod --shell fish)" in fish
    ps = _env_output("prod", "--shell", "powershell")
    assert "$Env:DOCKER_HOST = 'tcp://docker1:2376'" in ps and "| Invoke-Expression" in ps
    cmd = _env_output("prod", "--shell", "cmd")
    assert 'SET "DOCKER_TLS_VERIFY=1"\n' in cmd and "REM Run this command" in cmd
    assert _env_output("prod", "--unset").startswith(
        "unset DOCKER_TLS_VERIFY\nunset DOCKER_HOST\nunset DOCKER_CERT_PATH\n"
    )
    assert "Remove-Item Env:\\DOCKER_HOST" in _env_output(
        "prod", "--shell", "powershell", "--unset"
    )
    bad = run_certkit("env", "prod", "--shell", "tcsh")
    assert bad.returncode == 2 and "Unknown shell" in bad.stderr


def test_env_output_evaluates_in_bash_even_with_odd_paths(tmp_path: Path) -> None:
    """``eval $(certkit env NAME)`` sets the variables, with spaces and $ in the path."""
    odd = tmp_path / "my docker $HOME"
    info = dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY, docker_config=odd)
    script = (
        f"eval $({_certkit()} env prod --shell bash --docker-config {_sq(odd)}); "
        'printf "%s\\n" "$DOCKER_TLS_VERIFY" "$DOCKER_HOST" "$DOCKER_CERT_PATH"'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["1", "tcp://docker1:2376", str(info.tls_dir)]


def test_env_hint_is_a_command_that_works_with_runs_of_spaces(tmp_path: Path) -> None:
    """The printed ``eval`` line, run as shown, keeps a path with two spaces intact."""
    odd = tmp_path / "two  spaces"
    info = dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY, docker_config=odd)
    out = _env_output("prod", "--docker-config", str(odd))
    hint = out.splitlines()[-1].removeprefix("# ")
    assert hint.startswith('eval "$(certkit env prod')
    script = (
        hint.replace("certkit env", f"{_certkit()} env", 1) + '; printf "%s" "$DOCKER_CERT_PATH"'
    )
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == str(info.tls_dir)


def test_an_unwritable_config_dir_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OperationError, match="Cannot write to the docker config dir"):
        dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY, docker_config=blocker / "d")
    with pytest.raises(UsageError, match="cannot be written"):
        dockercli.check_writable(blocker / "d")
    dockercli.check_writable(tmp_path / "new" / "dir")  # creatable: fine


def test_no_home_directory_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME unset in a container whose uid has no passwd entry: say what to set."""
    from certkit import paths

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(UsageError, match="set DOCKER_CONFIG"):
        paths.docker_config_dir(None)


def _certkit() -> str:
    import sys

    return f"{sys.executable} -m certkit"


def _sq(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


def test_env_for_a_missing_context_is_exit_2() -> None:
    res = run_certkit("env", "nope")
    assert res.returncode == 2 and "certkit client-context" in res.stderr


# ---------------------------------------------------------------- export / import


def test_certkit_export_is_accepted_by_docker_context_import(tmp_path: Path) -> None:
    if not DOCKER_CLIS:
        pytest.skip("the docker CLI is not installed")
    ours = tmp_path / "ours"
    dockercli.write_context(
        "prod", "docker1", 2376, CA, CERT, KEY, description="d", docker_config=ours
    )
    data = dockercli.export_context("prod", ours)
    archive = tmp_path / "prod.dockercontext"
    archive.write_bytes(data)
    with tarfile.open(archive) as tar:
        assert [(m.name, m.mode) for m in tar.getmembers()] == [
            ("meta.json", 0o644),
            ("tls", 0o700),
            ("tls/docker", 0o700),
            ("tls/docker/ca.pem", 0o600),
            ("tls/docker/cert.pem", 0o600),
            ("tls/docker/key.pem", 0o600),
        ]
    for i, cli in enumerate(DOCKER_CLIS):
        theirs = tmp_path / f"theirs{i}"
        docker(cli, theirs, "context", "import", "moved", str(archive))
        inspect = json.loads(docker(cli, theirs, "context", "inspect", "moved").stdout)[0]
        assert inspect["Endpoints"]["docker"]["Host"] == "tcp://docker1:2376"
        assert sorted(inspect["TLSMaterial"]["docker"]) == ["ca.pem", "cert.pem", "key.pem"]
        tls = theirs / "contexts" / "tls" / dockercli.context_id("moved") / "docker"
        assert (tls / "key.pem").read_bytes() == KEY


def test_docker_context_export_is_accepted_by_certkit_import(tmp_path: Path) -> None:
    if not DOCKER_CLIS:
        pytest.skip("the docker CLI is not installed")
    for name, data in (("ca.pem", CA), ("cert.pem", CERT), ("key.pem", KEY)):
        (tmp_path / name).write_bytes(data)
    for i, cli in enumerate(DOCKER_CLIS):
        theirs, ours = tmp_path / f"theirs{i}", tmp_path / f"ours{i}"
        docker(
            cli,
            theirs,
            "context",
            "create",
            "prod",
            "--docker",
            f"host=tcp://docker1:2376,ca={tmp_path}/ca.pem,cert={tmp_path}/cert.pem,"
            f"key={tmp_path}/key.pem",
        )
        archive = tmp_path / f"prod{i}.dockercontext"
        docker(cli, theirs, "context", "export", "prod", str(archive))
        # The docker CLI ends its tar without the end-of-archive blocks: certkit copes.
        res = run_certkit("context", "import", str(archive), "--docker-config", str(ours))
        assert res.returncode == 0, res.stderr
        info = dockercli.read_context("prod", ours)
        assert info.host == "tcp://docker1:2376"
        assert (info.tls_dir / "key.pem").read_bytes() == KEY
        assert mode(info.tls_dir / "key.pem") == 0o600 and mode(info.tls_dir) == 0o700
        shown = docker(cli, ours, "context", "inspect", "prod")
        assert json.loads(shown.stdout)[0]["Name"] == "prod"


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


META = json.dumps(dockercli.meta_document("prod", "tcp://docker1:2376")).encode()


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([_file("meta.json", META), _file("../evil.pem")], "unsafe path"),
        ([_file("meta.json", META), _file("/etc/passwd")], "unsafe path"),
        ([_file("meta.json", META), _file("tls/docker/../../../x.pem")], "unsafe path"),
        (
            [_file("meta.json", META), _link("tls/docker/key.pem", "/etc/shadow", tarfile.SYMTYPE)],
            "link",
        ),
        (
            [_file("meta.json", META), _link("tls/docker/ca.pem", "meta.json", tarfile.LNKTYPE)],
            "link",
        ),
        (
            [_file("meta.json", META), _file("tls/docker/cert.pem", b"0" * (4 * 1024 * 1024 + 1))],
            "over 4 MiB",
        ),
        ([_file("meta.json", META), _file("tls/docker/id_rsa")], "only meta.json"),
        ([_file("meta.json", META), _file(".bashrc")], "only meta.json"),
        ([_file("tls/docker/ca.pem")], "no meta.json"),
        ([_file("meta.json", b"{}")], "without a docker endpoint"),
    ],
)
def test_import_refuses_anything_but_a_context(
    members: list[tuple[tarfile.TarInfo, bytes | None]], why: str, tmp_path: Path
) -> None:
    archive = tmp_path / "evil.tar"
    archive.write_bytes(_tar(*members))
    res = run_certkit(
        "context", "import", str(archive), "x1", "--docker-config", str(tmp_path / "c")
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert why in res.stderr
    assert not (tmp_path / "c").exists()  # nothing written
    assert not (tmp_path / "evil.pem").exists()


def test_import_refuses_a_truncated_file(tmp_path: Path) -> None:
    data = _tar(_file("meta.json", META), _file("tls/docker/key.pem", b"k" * 2000))
    cut = data[: data.index(b"k" * 100) + 1000]
    with pytest.raises(UsageError, match="truncated"):
        dockercli.read_archive(cut)


def test_import_keeps_an_existing_context_without_force(tmp_path: Path) -> None:
    dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY, docker_config=tmp_path)
    data = dockercli.export_context("prod", tmp_path)
    with pytest.raises(UsageError, match="--force"):
        dockercli.import_context(data, docker_config=tmp_path)
    info = dockercli.import_context(data, "prod2", docker_config=tmp_path)
    assert json.loads(info.meta_path.read_text())["Name"] == "prod2"


def _zip(*members: tuple[str, bytes, int]) -> bytes:
    """A zip of (name, data, unix mode) entries; a name ending in / is a directory."""
    import warnings
    import zipfile

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # the duplicate-name case is on purpose
        for name, data, unix_mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = unix_mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _as_zip(tar_bytes: bytes) -> bytes:
    """The members of an export tar, zipped (what `docker context import` also takes)."""
    entries = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for m in tar:
            if m.isdir():
                entries.append((m.name + "/", b"", stat.S_IFDIR | 0o700))
            else:
                f = tar.extractfile(m)
                assert f is not None
                entries.append((m.name, f.read(), stat.S_IFREG | m.mode))
    return _zip(*entries)


def test_a_zipped_context_is_imported_like_the_docker_cli_does(tmp_path: Path) -> None:
    dockercli.write_context("prod", "docker1", 2376, CA, CERT, KEY, docker_config=tmp_path / "a")
    archive = tmp_path / "prod.zip"
    archive.write_bytes(_as_zip(dockercli.export_context("prod", tmp_path / "a")))
    ours = tmp_path / "b"
    res = run_certkit("context", "import", str(archive), "zipped", "--docker-config", str(ours))
    assert res.returncode == 0, res.stderr
    info = dockercli.read_context("zipped", ours)
    assert info.host == "tcp://docker1:2376"
    assert (info.tls_dir / "key.pem").read_bytes() == KEY
    assert mode(info.tls_dir / "key.pem") == 0o600
    for cli in DOCKER_CLIS:  # the same zip is what the docker CLI accepts
        docker(cli, tmp_path / f"c{len(cli)}", "context", "import", "zipped", str(archive))


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([("meta.json", META, 0o100644), ("../evil.pem", b"x", 0o100644)], "unsafe path"),
        ([("meta.json", META, 0o100644), ("tls/docker/key.pem", b"/etc/shadow", 0o120777)], "link"),
        ([("meta.json", META, 0o100644), ("tls/docker/id_rsa", b"x", 0o100644)], "only meta.json"),
        ([("meta.json", META, 0o100644), ("meta.json", META, 0o100644)], "twice"),
        ([("tls/docker/ca.pem", b"x", 0o100644)], "no meta.json"),
    ],
)
def test_zip_import_refuses_anything_but_a_context(
    members: list[tuple[str, bytes, int]], why: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=why):
        dockercli.import_context(_zip(*members), "x1", docker_config=tmp_path / "c")
    assert not (tmp_path / "c").exists()
