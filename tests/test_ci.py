"""`certkit ci export` and `certkit ci bootstrap`: one CI secret, a docker context in the job.

The end-to-end test plays both sides: the admin exports a bundle from the
store, then a bare "runner" (a clean environment: no CERTKIT_HOME store, an
empty HOME, a GITHUB_ENV file) bootstraps it, and the real docker CLI, given
only what bootstrap put into GITHUB_ENV, reaches a real dockerd over mutual
TLS.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import (
    refused,
    run_certkit,
    strict_context,
    tlsverify_settings,
    write_tcp_daemon_json,
)

from certkit import ca, certs, names
from certkit.ci import Bundle, check_bundle, decode_bundle
from certkit.errors import UsageError
from certkit.names import parse_endpoint
from certkit.origins import CIOrigin
from certkit.store import CAStore

HOST = "docker1.example.com"


# ---------------------------------------------------------------- helpers


def _init() -> CAStore:
    r = run_certkit("init-ca")
    assert r.returncode == 0, r.stderr
    return CAStore("default")


def _export(*args: str) -> str:
    r = run_certkit("ci", "export", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def run_clean(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run certkit with ONLY ``env`` (plus PATH): a bare CI runner, nothing inherited."""
    return subprocess.run(
        [sys.executable, "-m", "certkit", *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def _chunks(secret: str, size: int = 20) -> set[str]:
    """Every ``size``-character window of the secret's payload (PEM armour lines dropped)."""
    body = "".join(line for line in secret.splitlines() if not line.startswith("-----"))
    body = "".join(body.split())
    if len(body) < size:
        return {body} if body else set()
    return {body[i : i + size] for i in range(len(body) - size + 1)}


def assert_no_secret(output: str, *secrets: str) -> None:
    """No 20-character piece of any secret (bundle, key PEM) appears in ``output``."""
    assert "PRIVATE KEY" not in output
    flat = "".join(output.split())
    for secret in secrets:
        leaked = [c for c in _chunks(secret) if c in flat]
        assert not leaked, f"secret material in the output: {leaked[:1]}"


def _runner(tmp_path: Path, **extra: str) -> tuple[dict[str, str], Path, Path]:
    """A bare runner: empty HOME, a GITHUB_ENV file, a CERTKIT_HOME that must not appear."""
    home = tmp_path / "runner-home"
    home.mkdir(parents=True)
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    env = {
        "HOME": str(home),
        "CERTKIT_HOME": str(tmp_path / "no-store-here"),
        "GITHUB_ENV": str(github_env),
        **extra,
    }
    return env, home, github_env


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def _b64json(data: Any) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


# ---------------------------------------------------------------- the bundle format


def test_bundle_is_one_gitlab_maskable_line_that_round_trips() -> None:
    _init()
    text = _export("deploy", "--host", HOST)
    assert "\n" not in text  # piped: no trailing newline to end up in the secret
    # GitLab masking: one line, RFC 4648 base64 alphabet, at least 8 chars, at most 10,000.
    assert re.fullmatch(r"[A-Za-z0-9+/]{8,}={0,2}", text)
    assert len(text) < 10_000
    data = json.loads(base64.b64decode(text))
    assert list(data) == ["v", "host", "port", "context", "ca", "cert", "key", "not_after"]
    assert data["v"] == 1 and data["host"] == HOST and data["port"] == 2376
    assert data["context"] == "deploy"
    bundle = decode_bundle(text)
    assert bundle.encode() == text
    # Wrapped over lines, URL-safe, without padding, or the raw JSON: all read the same.
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    urlsafe = text.replace("+", "-").replace("/", "_").rstrip("=")
    assert decode_bundle(wrapped) == decode_bundle(urlsafe) == decode_bundle(json.dumps(data))
    checked = check_bundle(bundle)
    assert checked.ci_name == "deploy"
    assert 29 < checked.days_left <= 30.01  # default 30 days
    assert checked.warnings == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("docker1.example.com", ("docker1.example.com", 2376)),
        ("Docker1.Example.com:2377", ("docker1.example.com", 2377)),
        ("tcp://10.0.0.5:2376", ("10.0.0.5", 2376)),
        ("tcp://[2001:db8::1]:2400", ("2001:db8::1", 2400)),
        ("2001:db8::1", ("2001:db8::1", 2376)),
    ],
)
def test_parse_endpoint(value: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(value) == expected


@pytest.mark.parametrize("value", ["", "tcp://", "host:99999", "host:abc", "a b", "*.example.com"])
def test_parse_endpoint_refuses_junk(value: str) -> None:
    with pytest.raises(UsageError):
        parse_endpoint(value)


# ---------------------------------------------------------------- export


def test_export_prints_only_the_secret_and_records_a_ci_certificate() -> None:
    store = _init()
    r = run_certkit("ci", "export", "deploy", "--host", HOST)
    assert r.returncode == 0, r.stderr
    bundle = decode_bundle(r.stdout)
    # Messages go to stderr and say what happened and what to do next, without the key.
    assert "ci:deploy" in r.stderr and "valid until" in r.stderr
    assert "certkit ci bootstrap" in r.stderr
    assert_no_secret(r.stderr, r.stdout, bundle.key)
    assert "PRIVATE KEY" in bundle.key

    (rec,) = store.inventory().find(kind="ci")
    assert rec.name == "deploy" and rec.subject == "ci:deploy" and rec.superseded_by is None
    assert isinstance(rec.origin, CIOrigin)
    assert rec.origin.host == HOST and rec.origin.port == 2376
    cert = certs.load_cert(bundle.cert.encode())
    assert certs.serial_hex(cert) == rec.serial
    assert bundle.ca.encode() == store.trust_bundle_pem()
    assert certs.key_matches_cert(certs.load_key(bundle.key.encode()), cert)


def test_reexport_rotates_remembers_the_host_and_supersedes_the_old_one() -> None:
    store = _init()
    first = decode_bundle(_export("deploy", "--host", HOST, "--port", "2400", "--days", "10"))
    r = run_certkit("ci", "export", "deploy")  # no --host: remembered
    assert r.returncode == 0, r.stderr
    second = decode_bundle(r.stdout)
    assert (second.host, second.port) == (HOST, 2400)
    assert second.cert != first.cert and second.key != first.key
    assert "Superseded serial" in r.stderr

    old, new = sorted(store.inventory().find(kind="ci"), key=lambda x: x.created)
    assert old.superseded_by == new.serial and new.superseded_by is None
    assert 9 < check_bundle(second).days_left <= 10.01  # --days remembered too

    # A different NAME is a different secret: nothing superseded.
    _export("other", "--host", HOST)
    assert len(store.inventory().find(kind="ci", active=True)) == 2


def test_export_out_file_is_0600_even_under_umask_000(tmp_path: Path) -> None:
    _init()
    out = tmp_path / "bundle.txt"
    old = os.umask(0)
    try:
        r = run_certkit("ci", "export", "deploy", "--host", HOST, "--out", str(out), "--json")
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    secret = out.read_text()
    summary = json.loads(r.stdout)
    assert summary["out"] == str(out) and summary["name"] == "deploy"
    assert_no_secret(r.stdout + r.stderr, secret, decode_bundle(secret).key)


def test_export_json_mode_carries_the_secret_only_in_its_field() -> None:
    _init()
    r = run_certkit("ci", "export", "deploy", "--host", HOST, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["ok"] is True and data["format"] == "bundle"
    assert decode_bundle(data["secret"]).host == HOST
    assert_no_secret(r.stderr, data["secret"])


def test_export_json_format_is_the_structure() -> None:
    _init()
    data = json.loads(_export("deploy", "--host", HOST, "--format", "json"))
    assert data["v"] == 1 and "PRIVATE KEY" in data["key"]
    check_bundle(decode_bundle(json.dumps(data)))


@pytest.mark.parametrize(
    ("fmt", "needle"),
    [
        (
            "github",
            f"certkit ci export deploy --host {HOST} --format tar"
            " | gh secret set CERTKIT_DOCKER_TLS",
        ),
        ("gitlab", "--format tar | glab variable set CERTKIT_DOCKER_TLS --masked --protected"),
    ],
)
def test_recipe_formats_print_commands_that_pipe_the_secret_and_issue_nothing(
    fmt: str, needle: str
) -> None:
    store = _init()
    r = run_certkit("ci", "export", "deploy", "--host", HOST, "--format", fmt)
    assert r.returncode == 0, r.stderr
    assert needle in r.stdout
    assert "certkit ci bootstrap" in r.stdout
    assert "PRIVATE KEY" not in r.stdout
    assert store.inventory().find(kind="ci") == []  # nothing issued


def test_gitlab_recipe_has_an_api_variant_reading_stdin() -> None:
    _init()
    out = _export("deploy", "--host", HOST, "--format", "gitlab")
    assert '--form "value=<-"' in out and "masked=true" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["deploy"], "--host is needed"),
        (["deploy", "--host", HOST, "--format", "yaml"], "Unknown format"),
        (["default", "--host", HOST], "default"),
        (["bad name", "--host", HOST], "bad name"),
        (["deploy", "--host", "not a host"], "not a valid host name"),
        (["deploy", "--host", HOST, "--days", "0"], "--days"),
        (["deploy", "--host", HOST, "--format", "github", "--out", "x"], "--out"),
        (["deploy", "--host", HOST, "--out", "/nonexistent/dir/bundle"], "does not exist"),
    ],
)
def test_export_bad_input_is_one_sentence_exit_2_and_issues_nothing(
    args: list[str], needle: str
) -> None:
    store = _init()
    r = run_certkit("ci", "export", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stdout == ""
    assert store.inventory().find(kind="ci") == []


def test_export_without_a_ca_says_how_to_make_one() -> None:
    r = run_certkit("ci", "export", "deploy", "--host", HOST)
    assert r.returncode == 2
    assert "certkit init-ca" in r.stderr


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_on_a_bare_runner_writes_only_the_context(tmp_path: Path) -> None:
    _init()
    secret = _export("deploy", "--host", HOST)
    key = decode_bundle(secret).key
    env, home, github_env = _runner(tmp_path, CERTKIT_BUNDLE=secret)
    github_env.write_text("EARLIER=1")  # a previous step left no trailing newline

    r = run_clean("ci", "bootstrap", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "'deploy'" in r.stdout and "tcp://docker1.example.com:2376" in r.stdout
    assert "$GITHUB_ENV" in r.stdout
    assert_no_secret(r.stdout + r.stderr, secret, key)

    # No certkit store was created; only ~/.docker appeared in HOME.
    assert not Path(env["CERTKIT_HOME"]).exists()
    assert [p.name for p in home.iterdir()] == [".docker"]
    assert github_env.read_text() == "EARLIER=1\nDOCKER_CONTEXT=deploy\n"
    config = json.loads((home / ".docker" / "config.json").read_text())
    assert config["currentContext"] == "deploy"

    # Re-running (a persistent self-hosted runner) replaces the context in place.
    r = run_clean("ci", "bootstrap", "--json", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["context"] == "deploy" and data["docker_host"] == "tcp://docker1.example.com:2376"
    assert data["env"] == {"DOCKER_CONTEXT": "deploy"}
    assert_no_secret(r.stdout + r.stderr, secret, key)


def test_bootstrap_print_env_prints_only_export_lines(tmp_path: Path) -> None:
    _init()
    secret = _export("deploy", "--host", HOST, "--context", "prod-docker")
    env, home, _ = _runner(tmp_path, CERTKIT_BUNDLE=secret)
    del env["GITHUB_ENV"]
    cfg = tmp_path / "cfg"
    r = run_clean(
        "ci", "bootstrap", "--print-env", "--no-use", "--docker-config", str(cfg), env=env
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "export DOCKER_CONTEXT=prod-docker",
        f"export DOCKER_CONFIG={cfg}",
    ]
    assert not (cfg / "config.json").exists()  # --no-use: not made current
    assert list(home.iterdir()) == []


def test_bootstrap_from_the_four_variable_layout(tmp_path: Path) -> None:
    _init()
    dotenv = _export("deploy", "--host", HOST, "--port", "2400", "--format", "env")
    variables = dict(
        line.split("=", 1) for line in dotenv.splitlines() if line and not line.startswith("#")
    )
    assert set(variables) == {
        "CERTKIT_DOCKER_HOST",
        "CERTKIT_CONTEXT",
        "CERTKIT_CA_PEM",
        "CERTKIT_CERT_PEM",
        "CERTKIT_KEY_PEM",
    }
    assert variables["CERTKIT_DOCKER_HOST"] == f"tcp://{HOST}:2400"
    key_pem = base64.b64decode(variables["CERTKIT_KEY_PEM"]).decode()

    # As exported (base64 PEM values).
    env, _, _ = _runner(tmp_path, **variables)
    r = run_clean("ci", "bootstrap", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["docker_host"] == f"tcp://{HOST}:2400"
    assert_no_secret(r.stdout + r.stderr, key_pem, variables["CERTKIT_KEY_PEM"])

    # Raw PEM values, the key as a GitLab "File" variable (the value is a path).
    key_file = tmp_path / "key-file"
    key_file.write_text(key_pem)
    raw = {k: base64.b64decode(v).decode() for k, v in variables.items() if k.endswith("_PEM")}
    raw["CERTKIT_KEY_PEM"] = str(key_file)
    env2 = {**env, **raw, "CERTKIT_CONTEXT": "", "DOCKER_CONFIG": str(tmp_path / "d2")}
    r = run_clean("ci", "bootstrap", "--json", env=env2)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["context"] == "deploy"  # from the CN ci:deploy


def test_bootstrap_accepts_a_bundle_holding_two_cas_during_a_rotation(tmp_path: Path) -> None:
    store = _init()
    good = decode_bundle(_export("deploy", "--host", HOST))
    other_key = certs.generate_key()
    other_ca = certs.make_ca(other_key, "certkit CA next")
    # The new CA first, the CA that issued the certificate second.
    both = dataclasses.replace(good, ca=certs.cert_pem(other_ca).decode() + good.ca)
    assert check_bundle(both).issuer == certs.common_name(store.load_cert())
    env, _, _ = _runner(tmp_path, CERTKIT_BUNDLE=both.encode())
    r = run_clean("ci", "bootstrap", "--no-use", env=env)
    assert r.returncode == 0, r.stderr


def test_bootstrap_warns_about_docker_host_and_an_expiring_certificate(tmp_path: Path) -> None:
    store = _init()
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    issued = ca.issue(store, "ci", "deploy", "ci:deploy", not_after=soon)
    bundle = Bundle(
        HOST,
        2376,
        "deploy",
        issued.ca_pem.decode(),
        issued.cert_pem.decode(),
        issued.key_pem.decode(),
        issued.record.not_after,
    )
    env, _, _ = _runner(
        tmp_path, CERTKIT_BUNDLE=bundle.encode(), DOCKER_HOST="unix:///var/run/docker.sock"
    )
    r = run_clean("ci", "bootstrap", env=env)
    assert r.returncode == 0, r.stderr
    assert f"expires on {soon:%Y-%m-%d}" in r.stderr
    assert "certkit ci export deploy" in r.stderr
    assert "DOCKER_HOST" in r.stderr


def _bad_secrets(store: CAStore, good: str) -> dict[str, str]:
    """Each way a CI secret goes wrong, as the value of CERTKIT_BUNDLE."""
    bundle = decode_bundle(good)
    data = bundle.to_json()
    stranger_key = certs.generate_key()
    stranger_ca = certs.make_ca(stranger_key, "someone else's CA")
    leaf_key = certs.generate_key()
    foreign = certs.make_leaf(stranger_ca, stranger_key, leaf_key.public_key(), "ci", "ci:deploy")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    expired = ca.issue(store, "ci", "deploy", "ci:deploy", not_after=past)
    return {
        "empty": "   ",
        "truncated": good[: len(good) // 2 + 1],
        "truncated-on-a-boundary": good[: (len(good) // 8) * 4],
        "wrong version": _b64json({**data, "v": 2}),
        "key/cert mismatch": dataclasses.replace(
            bundle, key=certs.key_pem(certs.generate_key()).decode()
        ).encode(),
        "other CA": dataclasses.replace(
            bundle, cert=certs.cert_pem(foreign).decode(), key=certs.key_pem(leaf_key).decode()
        ).encode(),
        "expired": dataclasses.replace(
            bundle, cert=expired.cert_pem.decode(), key=expired.key_pem.decode()
        ).encode(),
    }


EXPECTED = {
    "empty": "CERTKIT_BUNDLE is empty or not set",
    "truncated": "CERTKIT_BUNDLE is truncated or corrupted",
    "truncated-on-a-boundary": "CERTKIT_BUNDLE is truncated or corrupted",
    "wrong version": "format version 2, but this certkit reads version 1",
    "key/cert mismatch": "private key in CERTKIT_BUNDLE does not belong to its certificate",
    "other CA": "was not issued by the CA in the bundle",
    "expired": "expired on",
}


def test_bad_secrets_are_distinct_clear_errors_that_write_nothing_and_echo_nothing(
    tmp_path: Path,
) -> None:
    store = _init()
    good = _export("deploy", "--host", HOST)
    bad = _bad_secrets(store, good)
    assert set(bad) == set(EXPECTED)
    messages = {}
    for case, secret in bad.items():
        env, home, github_env = _runner(tmp_path / case.replace("/", "-"), CERTKIT_BUNDLE=secret)
        r = run_clean("ci", "bootstrap", env=env)
        assert r.returncode == 2, (case, r.stdout, r.stderr)
        assert r.stdout == ""
        assert EXPECTED[case] in r.stderr, (case, r.stderr)
        assert "Traceback" not in r.stderr
        (line,) = r.stderr.strip().splitlines()  # one sentence
        messages[case] = re.sub(r"\d+", "N", line)  # the two truncations differ in length only
        # Nothing written anywhere.
        assert list(home.iterdir()) == [], case
        assert github_env.read_text() == "", case
        assert not Path(env["CERTKIT_HOME"]).exists()
        # The secret is never echoed, whole or in part.
        assert_no_secret(r.stderr, secret, good, decode_bundle(good).key)
    # Distinct: the two truncations share a message, every other case has its own.
    assert len(set(messages.values())) == len(EXPECTED) - 1
    assert "expired on" in messages["expired"] and "certkit ci export deploy" in messages["expired"]


_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CERTKIT_BUNDLE": _PEM}, "holds a PEM file"),
        ({"CERTKIT_BUNDLE": "not a bundle!"}, "characters that base64 never uses"),
        ({"CERTKIT_BUNDLE": _b64json({"hello": 1})}, "no format version"),
        ({"CERTKIT_BUNDLE": _b64json({"v": 1, "host": "h"})}, "lacks the field 'port'"),
        ({"CERTKIT_CA_PEM": "x"}, "CERTKIT_DOCKER_HOST is empty"),
        ({"CERTKIT_DOCKER_HOST": "h", "CERTKIT_CA_PEM": "x"}, "CERTKIT_CA_PEM is neither"),
        ({"CERTKIT_DOCKER_HOST": "h", "CERTKIT_CA_PEM": _PEM}, "CERTKIT_CERT_PEM is empty"),
    ],
)
def test_more_bad_secrets(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    runner, home, _ = _runner(tmp_path, **env)
    r = run_clean("ci", "bootstrap", env=runner)
    assert r.returncode == 2
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert list(home.iterdir()) == []


def test_bootstrap_with_an_unwritable_home_is_one_sentence(tmp_path: Path) -> None:
    _init()
    secret = _export("deploy", "--host", HOST)
    runner, _, github_env = _runner(tmp_path, CERTKIT_BUNDLE=secret)
    blocker = tmp_path / "a-file"  # a HOME where ~/.docker cannot be created (even as root)
    blocker.write_text("")
    r = run_clean("ci", "bootstrap", env={**runner, "HOME": str(blocker)})
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "DOCKER_CONFIG" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert github_env.read_text() == ""
    assert_no_secret(r.stdout + r.stderr, secret)


def test_a_bad_context_name_in_the_layout_names_its_variable(tmp_path: Path) -> None:
    _init()
    dotenv = _export("deploy", "--host", HOST, "--format", "env")
    variables = dict(
        line.split("=", 1) for line in dotenv.splitlines() if line and not line.startswith("#")
    )
    runner, home, _ = _runner(tmp_path, **{**variables, "CERTKIT_CONTEXT": "bad name"})
    r = run_clean("ci", "bootstrap", env=runner)
    assert r.returncode == 2 and "given by CERTKIT_CONTEXT" in r.stderr, r.stderr
    assert list(home.iterdir()) == []
    assert run_clean("ci", "bootstrap", "--context", "good", env=runner).returncode == 0


def test_from_env_names_the_variable_in_errors(tmp_path: Path) -> None:
    runner, _, _ = _runner(tmp_path, DOCKER_PROD="")
    r = run_clean("ci", "bootstrap", "--from-env", "DOCKER_PROD", env=runner)
    assert r.returncode == 2
    assert "DOCKER_PROD is empty or not set" in r.stderr


# ---------------------------------------------------------------- end to end


def test_end_to_end_github_env_alone_takes_docker_to_the_daemon(
    tmp_path: Path, sandbox: Path, dockerd: Any
) -> None:
    store = _init()
    server = ca.issue(
        store, "server", "localhost", "localhost", names.parse_names(["localhost", "127.0.0.1"])
    )
    (sandbox / "ca.pem").write_bytes(store.trust_bundle_pem())
    tls = tlsverify_settings(sandbox / "ca.pem", server.cert_path, server.key_path)
    daemon = write_tcp_daemon_json(sandbox, tls)
    dockerd(**daemon.start_args())
    port = daemon.port

    # Admin side.
    secret = _export("gha", "--host", "localhost", "--port", str(port))
    key = decode_bundle(secret).key

    # Runner side: a clean HOME, no store, the bundle in CERTKIT_BUNDLE, GITHUB_ENV set.
    env, home, github_env = _runner(tmp_path, CERTKIT_BUNDLE=secret)
    r = run_clean("ci", "bootstrap", "--no-use", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_no_secret(r.stdout + r.stderr, secret, key)
    assert not Path(env["CERTKIT_HOME"]).exists()

    # A later step: only what bootstrap put into GITHUB_ENV, plus DOCKER_CONFIG and PATH.
    later = _env_file(github_env)
    assert later == {"DOCKER_CONTEXT": "gha"}
    step = {"PATH": os.environ["PATH"], "DOCKER_CONFIG": str(home / ".docker"), **later}
    v = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        env=step,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert v.returncode == 0, v.stderr
    assert re.match(r"\d+\.\d+", v.stdout.strip())
    assert_no_secret(v.stdout + v.stderr, secret, key)
    # It is our sandbox daemon (its data-root), not some other dockerd on the machine.
    info = subprocess.run(
        ["docker", "info", "--format", "{{.DockerRootDir}}"],
        env=step,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert info.stdout.strip() == str(sandbox / "data"), info.stderr

    # Without DOCKER_CONTEXT the same docker CLI does not know the daemon at all...
    without = subprocess.run(
        [
            "docker",
            "-H",
            f"tcp://localhost:{port}",
            "--tlsverify",
            "--tlscacert",
            str(sandbox / "ca.pem"),
            "version",
        ],
        env={"PATH": os.environ["PATH"], "DOCKER_CONFIG": str(tmp_path / "empty")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert without.returncode != 0  # no client certificate: refused
    # ...and the daemon really demands the client certificate (mutual TLS).
    assert refused("127.0.0.1", port, strict_context(sandbox / "ca.pem"), "localhost")


# ---------------------------------------------------------------- no install (issue 27 item 8)


def _recipe_lines(fmt: str, *args: str) -> list[str]:
    """The job's shell lines exactly as ``--format FMT`` prints them."""
    recipe = _export(*args, "--format", fmt).splitlines()
    start = next(i for i, ln in enumerate(recipe) if ln.strip("# ") in ("script:", "- run: |"))
    prefix = "#          - " if fmt == "gitlab" else "#            "
    lines = []
    for ln in recipe[start + 1 :]:
        if not ln.startswith(prefix) or ln.startswith(prefix + "docker"):
            break
        lines.append(ln[len(prefix) :])
    return lines


def test_recipes_install_nothing_by_a_bare_name() -> None:
    """A recipe never runs `pipx install certkit` (a name the project does not publish:
    whoever registers it receives the job's key); an install is pinned to a wheel's hash."""
    _init()
    for fmt in ("github", "gitlab"):
        recipe = _export("deploy", "--host", HOST, "--format", fmt)
        assert not re.search(r"(pipx?|pip3) install +certkit\b", recipe), recipe
        installs = [ln for ln in recipe.splitlines() if "pip install" in ln]
        assert installs and all("#sha256=" in ln for ln in installs)
        assert "--format tar" in recipe and "base64 -d | tar -xf -" in recipe
        assert "PRIVATE-TOKEN: $GITLAB_TOKEN" not in recipe  # the token is read from a file
    for page in ("ci.md",):
        text = (Path(__file__).parents[1] / "docs" / page).read_text()
        assert not re.search(r"(pipx?|pip3) install +certkit\b", text)


@pytest.mark.parametrize("fmt", ["gitlab", "github"])
def test_the_no_install_bootstrap_reaches_the_real_dockerd_with_sh_base64_tar_only(
    tmp_path: Path, sandbox: Path, dockerd: Any, fmt: str
) -> None:
    store = _init()
    server = ca.issue(
        store, "server", "localhost", "localhost", names.parse_names(["localhost", "127.0.0.1"])
    )
    (sandbox / "ca.pem").write_bytes(store.trust_bundle_pem())
    tls = tlsverify_settings(sandbox / "ca.pem", server.cert_path, server.key_path)
    daemon = write_tcp_daemon_json(sandbox, tls)
    dockerd(**daemon.start_args())
    where = ("job", "--host", "localhost", "--port", str(daemon.port))
    secret = _export(*where, "--format", "tar")
    lines = _recipe_lines(fmt, *where)
    assert len(lines) <= 7 and any("base64 -d | tar -xf -" in ln for ln in lines)

    # A clean runner: nothing inherited, no Python, a PATH with sh, base64, tar and docker.
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    for tool in ("sh", "base64", "tar", "docker"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True)
        (bin_dir / tool).symlink_to(found.stdout.strip())
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    env = {"PATH": str(bin_dir), "HOME": str(home), "CERTKIT_DOCKER_TLS": secret}
    if fmt == "github":
        env |= {"RUNNER_TEMP": str(tmp_path / "runner-temp"), "GITHUB_ENV": str(github_env)}
        Path(env["RUNNER_TEMP"]).mkdir()
    script = "\n".join([*lines, "docker info --format '{{.DockerRootDir}}'"])
    done = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(bin_dir / "sh"), "-ec", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == str(sandbox / "data")  # our sandbox daemon, over mutual TLS
    tls_dir = Path(env.get("RUNNER_TEMP", str(home))) / ".certkit-tls"
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((tls_dir / "key.pem").stat().st_mode) == 0o600
    if fmt == "github":  # later steps get exactly the three DOCKER_* variables
        later = dict(ln.split("=", 1) for ln in github_env.read_text().splitlines())
        assert later == {
            "DOCKER_CERT_PATH": str(tls_dir),
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_HOST": f"tcp://localhost:{daemon.port}",
        }
