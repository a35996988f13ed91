"""Property tests (hypothesis): generated input never makes certkit crash.

The parsers of host names, endpoints, ports, listen addresses, SSH
destinations, daemon.json text and systemd unit text either return a value
or raise certkit's own one-sentence error (exit 2 or 1), never anything else;
the whole install planner is run on generated daemon.json and unit text.  At
the CLI, generated arguments never give a traceback, and an exit 2 leaves the
store, the sandbox root and the docker config byte-for-byte unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import run_certkit
from test_hardening import snapshot

from certkit import names
from certkit.errors import CertkitError
from certkit.host.daemonjson import edit_daemon_json, parse_daemon_json
from certkit.host.hostfiles import HostFiles
from certkit.host.options import InstallOptions
from certkit.host.plan import plan_install, write_steps
from certkit.host.ssh import check_ssh_options, parse_destination
from certkit.host.systemd import service_values
from certkit.paths import system_paths

# Text that looks like what users and hosts send: host-ish characters, plus anything.
HOSTISH = st.text(alphabet=st.sampled_from("abcXYZ019.-_:[]%*/@ \t\n\x00é\u2028"), max_size=40)
ANY_TEXT = st.text(max_size=60)
HOSTS = st.one_of(HOSTISH, ANY_TEXT, st.ip_addresses().map(str))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
DAEMON_JSON_TEXT = st.one_of(
    ANY_TEXT,
    JSON_VALUES.map(json.dumps),
    st.dictionaries(
        st.sampled_from(["hosts", "tls", "tlsverify", "tlscert", "tlskey", "live-restore", "x"]),
        JSON_VALUES,
        max_size=5,
    ).map(lambda d: json.dumps(d, indent=2)),
)
UNIT_TEXT = st.lists(
    st.one_of(
        st.just("[Service]"),
        st.just("ExecStart="),
        st.builds(lambda a: f"ExecStart=/usr/bin/dockerd {a}", ANY_TEXT),
        st.builds(lambda a: f"ExecStart=/usr/bin/dockerd -H {a}", HOSTISH),
        st.builds(lambda a: f"ExecStart=/usr/bin/dockerd {a} \\", HOSTISH),
        ANY_TEXT,
    ),
    max_size=6,
).map("\n".join)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _b64_json(fields: dict[str, Any]) -> str:
    import base64

    return base64.b64encode(json.dumps(fields).encode()).decode()


def only_certkit_errors(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except CertkitError as e:
        assert e.message and "\n" not in e.message.strip(), repr(e.message)
        return None


@FAST
@given(HOSTS)
def test_host_names_parse_or_refuse(value: str) -> None:
    parsed = only_certkit_errors(names.parse_names, [value])
    if parsed is not None:
        for name in parsed.all():  # what a certificate would hold: no zone, no space, no port
            assert "%" not in name and " " not in name and "/" not in name


@FAST
@given(HOSTS, st.integers(min_value=-5, max_value=70000))
def test_endpoints_parse_or_refuse(host: str, port: int) -> None:
    endpoint = only_certkit_errors(names.format_host, host, port)
    if endpoint is not None:
        # The one rule: whatever format_host accepts, parse_endpoint reads back the same.
        back = names.parse_endpoint(endpoint)
        assert back[1] == port and "%" not in back[0]
    only_certkit_errors(names.parse_endpoint, host)
    only_certkit_errors(names.check_port, port)
    only_certkit_errors(names.check_listen, host, port)


@FAST
@given(HOSTS, st.lists(ANY_TEXT, max_size=3))
def test_ssh_destinations_and_options_parse_or_refuse(spec: str, options: list[str]) -> None:
    only_certkit_errors(parse_destination, spec)
    only_certkit_errors(check_ssh_options, options)


@FAST
@given(DAEMON_JSON_TEXT)
def test_daemon_json_parses_or_refuses(text: str) -> None:
    config = only_certkit_errors(parse_daemon_json, text, "daemon.json")
    if config is not None:
        new = {**config, "tlsverify": True}
        assert json.loads(edit_daemon_json(text, config, new)) == new


@FAST
@given(UNIT_TEXT)
def test_unit_text_parses(text: str) -> None:
    assert isinstance(service_values(text, "ExecStart"), list)


@settings(max_examples=200, deadline=None)
@given(DAEMON_JSON_TEXT, UNIT_TEXT, st.sampled_from(["auto", "systemd", "daemon-json", "x"]))
def test_install_plan_on_generated_hosts(daemon_json: str, unit: str, method: str) -> None:
    files = HostFiles(
        daemon_json=daemon_json,
        units=[("/lib/systemd/system/docker.service", unit)],
    )
    sp = system_paths("/sandbox")
    plan = only_certkit_errors(
        plan_install,
        files,
        sp,
        InstallOptions(method=method, remove_insecure=True),
        b"CA",
        b"CERT",
        b"KEY",
    )
    if plan is not None:
        if plan.new_daemon_json is not None:
            assert isinstance(json.loads(plan.new_daemon_json), dict)
        steps = write_steps(plan)
        final = {c.path: c.content for c in steps.writes}
        assert final == {c.path: c.content for c in plan.changes}


# ---------------------------------------------------------------- the CLI


CLI_ARGS = st.one_of(
    st.tuples(st.just("issue-server"), HOSTS, st.just("--out"), HOSTISH),
    st.tuples(
        st.just("issue-server"),
        HOSTS,
        st.just("--install"),
        st.just("--root"),
        st.just("{root}"),
        st.just("--listen"),
        HOSTISH,
    ),
    st.tuples(st.just("client-context"), HOSTISH, st.just("--host"), HOSTS),
    st.tuples(
        st.just("client-context"),
        HOSTISH,
        st.just("--host"),
        HOSTS,
        st.just("--port"),
        st.integers(-1, 70000).map(str),
    ),
    st.tuples(st.just("issue-client"), HOSTISH, st.just("--out"), HOSTISH),
    st.tuples(st.just("ci"), st.just("export"), HOSTISH, st.just("--host"), HOSTS),
)


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("props")
    world = {"home": base / "home", "docker": base / "docker", "root": base / "root"}
    (world["root"] / "etc" / "docker").mkdir(parents=True)
    (world["root"] / "etc" / "docker" / "daemon.json").write_text('{\n  "debug": true\n}\n')
    env = {"CERTKIT_HOME": str(world["home"]), "DOCKER_CONFIG": str(world["docker"])}
    assert run_certkit("init-ca", env=env).returncode == 0
    world["cwd"] = base / "cwd"
    world["cwd"].mkdir()
    return world


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(CLI_ARGS)
def test_cli_never_crashes_and_exit_2_writes_nothing(
    cli_world: dict[str, Path], args: tuple[str, ...]
) -> None:
    if any("\x00" in a for a in args):  # argv cannot hold NUL: the OS refuses, not certkit
        return
    env = {"CERTKIT_HOME": str(cli_world["home"]), "DOCKER_CONFIG": str(cli_world["docker"])}
    argv = [a.replace("{root}", str(cli_world["root"])) for a in args]
    watched = (cli_world["home"], cli_world["docker"], cli_world["root"], cli_world["cwd"])
    before = snapshot(*watched)
    r = run_certkit(*argv, env=env, cwd=str(cli_world["cwd"]))
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode in (0, 1, 2), (r.returncode, r.stderr)
    if r.returncode == 2:
        after = snapshot(*watched)
        lock = str(cli_world["home"] / "cas" / "default" / ".lock")
        after.pop(lock, None)
        before.pop(lock, None)
        assert after == before, f"exit 2 changed files: {argv} {r.stderr}"


# ---------------------------------------------------------------- bundles, archives, dumps

BUNDLE_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.integers(-2, 3), ANY_TEXT),
        "host": st.one_of(HOSTS, st.integers()),
        "port": st.one_of(st.integers(-10, 70000), ANY_TEXT),
        "context": st.one_of(ANY_TEXT, st.just("runner1\n"), st.just("default")),
        "ca": ANY_TEXT,
        "cert": ANY_TEXT,
        "key": ANY_TEXT,
        "not_after": ANY_TEXT,
    },
)


@FAST
@given(st.one_of(ANY_TEXT, BUNDLE_FIELDS.map(json.dumps), BUNDLE_FIELDS.map(_b64_json)))
def test_ci_bundles_decode_or_refuse(text: str) -> None:
    from certkit.ci import decode_bundle

    only_certkit_errors(decode_bundle, text)


def _tar_of(members: list[tuple[str, bytes]]) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


MEMBER_NAMES = st.one_of(
    st.sampled_from(
        ["meta.json", "./meta.json", "tls/docker/ca.pem", "tls/docker/key.pem", "../x", "/etc/x"]
    ),
    ANY_TEXT.filter(lambda s: s and "\x00" not in s),
)


@FAST
@given(
    st.one_of(
        st.binary(max_size=600),
        st.lists(st.tuples(MEMBER_NAMES, st.binary(max_size=200)), max_size=5).map(_tar_of),
    )
)
def test_context_archives_read_or_refuse(data: bytes) -> None:
    from certkit.dockercli import read_archive

    only_certkit_errors(read_archive, data)


@FAST
@given(st.lists(st.one_of(ANY_TEXT, st.just("CERTKIT-FILE 644 /etc/docker/daemon.json"),
                          st.just("CERTKIT-EOF")), max_size=8))  # fmt: skip
def test_remote_dumps_parse_or_refuse(lines: list[str]) -> None:
    from certkit.host.scripts import parse_dump

    only_certkit_errors(parse_dump, lines)


# ---------------------------------------------------------------- every name, every option

# Names a user gives: plausible ones, and the same with what a regex ending in "$" lets
# through (a trailing newline), control characters, a wildcard, a trailing dot, spaces.
GOOD_NAME = st.from_regex(r"[a-z][a-z0-9]{1,8}", fullmatch=True)
BAD_TAIL = st.sampled_from(["\n", "\r", "\t", "\x1b[2J", "\x85", "\x7f", "\r\n"])
NAMES = st.one_of(
    st.builds(lambda n, t: n + t, GOOD_NAME, BAD_TAIL),
    st.builds(lambda t, n: t + n, BAD_TAIL, GOOD_NAME),
    st.builds(lambda a, t, b: a + t + b, GOOD_NAME, BAD_TAIL, GOOD_NAME),
)
# Every option that takes a name of one kind (CA, client, context, host, SAN, prefix,
# description), each run through the real CLI.
NAME_OPTIONS: list[tuple[str, ...]] = [
    ("init-ca", "--ca", "{}"),
    ("list", "--ca", "{}"),
    ("issue-client", "{}", "--out", "{cwd}/o"),
    ("issue-client", "--count", "2", "--prefix", "{}", "--out", "{cwd}/o"),
    ("client-context", "{}", "--host", "docker1.example.com"),
    ("client-context", "ctx", "--host", "{}"),
    ("client-context", "ctx2", "--host", "docker1.example.com", "--description", "{}"),
    ("issue-server", "{}", "--out", "{cwd}/s"),
    ("issue-server", "docker1.example.com", "--san", "{}", "--out", "{cwd}/s"),
    ("setup", "{}", "--install", "--root", "{root}"),
    ("setup", "docker2.example.com", "--install", "--root", "{root}", "--context", "{}"),
    ("ci", "export", "{}", "--host", "docker1.example.com"),
    ("ci", "export", "job", "--host", "docker1.example.com", "--context", "{}"),
]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(NAME_OPTIONS), NAMES)
def test_every_name_option_refuses_a_bad_name_with_exit_2_and_writes_nothing(
    cli_world: dict[str, Path], option: tuple[str, ...], name: str
) -> None:
    """Issue 26: one validator per kind of name, a full-string match, at every option."""
    if "\x00" in name:
        return
    env = {"CERTKIT_HOME": str(cli_world["home"]), "DOCKER_CONFIG": str(cli_world["docker"])}
    where = {"cwd": str(cli_world["cwd"]), "root": str(cli_world["root"])}
    argv = [name if a == "{}" else a.format(**where) for a in option]
    watched = (cli_world["home"], cli_world["docker"], cli_world["root"], cli_world["cwd"])
    before = snapshot(*watched)
    r = run_certkit(*argv, "--json", env=env, cwd=str(cli_world["cwd"]))
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (argv, r.returncode, r.stdout, r.stderr)
    after = snapshot(*watched)
    lock = str(cli_world["home"] / "cas" / "default" / ".lock")
    after.pop(lock, None)
    before.pop(lock, None)
    assert after == before, f"exit 2 changed files: {argv} {r.stderr}"
