"""`certkit issue-server`: the real CLI, real files under --root, and a real dockerd."""

from __future__ import annotations

import ipaddress
import json
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from support import (
    REPO,
    cli_json,
    free_port,
    refused,
    run_certkit,
    sandbox_daemon_settings,
    strict_context,
    tls_get,
    write_json,
)

from certkit import ca, certs, paths
from certkit.host.hostfiles import HostFiles
from certkit.host.local import read_host_files
from certkit.host.systemd import effective_execstart
from certkit.origins import ServerOrigin
from certkit.store import CAStore

DEBIAN_UNIT = Path("/lib/systemd/system/docker.service")


def _client(store: CAStore, out: Path, name: str = "it") -> tuple[Path, Path]:
    issued = ca.issue(store, "client", name, name)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-cert.pem").write_bytes(issued.cert_pem)
    (out / f"{name}-key.pem").write_bytes(issued.key_pem)
    return out / f"{name}-cert.pem", out / f"{name}-key.pem"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_mutual_tls(store: CAStore, sandbox: Path, port: int) -> None:
    """A client of this CA gets in; no certificate, or another CA's, is refused."""
    cert, key = _client(store, sandbox / "client")
    trust = store.cert_path
    status, body = tls_get(
        "127.0.0.1", port, "/_ping", strict_context(trust, cert, key), "localhost"
    )
    assert (status, body) == (200, b"OK")
    assert refused("127.0.0.1", port, strict_context(trust), "localhost")
    ca.init_ca("other")
    other_cert, other_key = _client(CAStore("other"), sandbox / "other")
    assert refused("127.0.0.1", port, strict_context(trust, other_cert, other_key), "localhost")


# ---------------------------------------------------------------- with a real dockerd


def test_daemon_json_install_serves_mutual_tls_and_keeps_user_settings(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    root = sandbox / "r"
    sock = str(sandbox / "d.sock")
    user = {
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
        "registry-mirrors": ["https://mirror.example.com"],
        **sandbox_daemon_settings(sandbox),
        "hosts": [f"unix://{sock}"],
    }
    config = root / "etc" / "docker" / "daemon.json"
    write_json(config, user)
    port = free_port()
    out = cli_json(
        "issue-server",
        "localhost",
        "--san",
        "127.0.0.1",
        "--install",
        "--root",
        str(root),
        "--method",
        "daemon-json",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
    )
    assert out["names"] == ["localhost", "127.0.0.1"]
    assert out["install"]["method"] == "daemon-json"
    assert out["restart_needed"] is True

    dockerd(config_file=config, unix_socket=sock, tcp=[("127.0.0.1", port)])
    _assert_mutual_tls(store, sandbox, port)

    merged = json.loads(config.read_text())
    for key, value in user.items():
        if key != "hosts":
            assert merged[key] == value
    assert merged["hosts"] == [f"unix://{sock}", f"tcp://127.0.0.1:{port}"]
    cert_dir = root / "etc" / "docker" / "certkit"
    assert merged["tlscacert"] == str(cert_dir / "ca.pem")
    assert stat.S_IMODE(cert_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((cert_dir / "server-key.pem").stat().st_mode) == 0o600
    # Recorded in the inventory, with what renewal needs to do it again.
    record = store.inventory().get(out["serial"])
    assert record is not None and record.kind == "server" and record.name == "localhost"
    assert str(cert_dir / "server-cert.pem") in record.installed
    assert isinstance(record.origin, ServerOrigin) and record.origin.install is not None
    assert record.origin.install.method == "daemon-json" and record.origin.install.port == port


def test_auto_picks_systemd_for_debian_unit_and_that_command_line_serves_tls(
    store: CAStore, sandbox: Path, dockerd: Any
) -> None:
    if not DEBIAN_UNIT.exists():
        pytest.skip("Debian's docker.service (package docker.io) is not installed")
    root = sandbox / "r"
    unit_dir = root / "lib" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    shutil.copy(DEBIAN_UNIT, unit_dir / "docker.service")
    config = root / "etc" / "docker" / "daemon.json"
    write_json(config, sandbox_daemon_settings(sandbox))
    port = free_port()
    out = cli_json(
        "issue-server",
        "localhost",
        "--san",
        "127.0.0.1",
        "--install",
        "--root",
        str(root),
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
    )
    assert out["install"]["method"] == "systemd"
    sp = paths.system_paths(root)
    original = effective_execstart(HostFiles(units=[("u", DEBIAN_UNIT.read_text())]))
    assert original is not None and "-H" in original
    args = effective_execstart(read_host_files(sp))
    assert args == [*original, "-H", f"tcp://127.0.0.1:{port}"]
    assert "hosts" not in json.loads(config.read_text())

    # Neither systemd (socket activation) nor a system containerd runs here.
    sock = str(sandbox / "d.sock")
    cmd = [
        f"unix://{sock}" if a == "fd://" else a
        for a in args[1:]
        if not a.startswith("--containerd") and a != "$DOCKER_OPTS"
    ]
    dockerd(config_file=config, args=cmd, unix_socket=sock, tcp=[("127.0.0.1", port)])
    _assert_mutual_tls(store, sandbox, port)


# ---------------------------------------------------------------- refusals and idempotence


def test_invalid_json_exits_2_and_changes_nothing(store: CAStore, tmp_path: Path) -> None:
    root = tmp_path / "r"
    config = root / "etc" / "docker" / "daemon.json"
    config.parent.mkdir(parents=True)
    config.write_bytes(b'{\n  "debug": true,\n  "log-level": "info"\n  "x": 1\n}\n')
    before = _tree(root)
    r = run_certkit("issue-server", "docker1.example.com", "--install", "--root", str(root))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "line 4, column 3" in r.stderr and "Traceback" not in r.stderr
    assert _tree(root) == before
    assert store.inventory().find(kind="server") == []


def test_dry_run_prints_the_diff_and_writes_nothing(store: CAStore, tmp_path: Path) -> None:
    root = tmp_path / "r"
    write_json(root / "etc" / "docker" / "daemon.json", {"debug": True})
    before = _tree(root)
    r = run_certkit(
        "issue-server", "docker1.example.com", "--install", "--root", str(root), "--dry-run"
    )
    assert r.returncode == 0, r.stderr
    assert '+  "tlsverify": true,' in r.stdout
    assert f'+  "tlscert": "{root}/etc/docker/certkit/server-cert.pem"' in r.stdout
    assert _tree(root) == before
    assert store.inventory().find(kind="server") == []


def test_second_install_changes_no_configuration(store: CAStore, tmp_path: Path) -> None:
    root = tmp_path / "r"
    unit_dir = root / "lib" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    unit_dir.joinpath("docker.service").write_text(
        "[Service]\nExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/c.sock\n"
    )
    write_json(root / "etc" / "docker" / "daemon.json", {"debug": True})
    args = ("issue-server", "docker1.example.com", "--install", "--root", str(root))
    first = cli_json(*args)
    assert first["install"]["backup"] is not None
    config_files = [
        root / "etc" / "docker" / "daemon.json",
        *root.glob("etc/systemd/system/*/*.conf"),
    ]
    assert len(config_files) == 2
    before = {p: p.read_bytes() for p in config_files}
    second = cli_json(*args)
    assert second["install"]["backup"] is None
    assert {p: p.read_bytes() for p in config_files} == before
    assert len(list((root / "etc" / "docker").glob("daemon.json.certkit-backup-*"))) == 1
    assert len(list(root.glob("etc/systemd/system/docker.service.d/*"))) == 1
    # Only the new certificate and key were written (dockerd must restart to load them).
    assert sorted(Path(p).name for p in second["install"]["written"]) == [
        "server-cert.pem",
        "server-key.pem",
    ]


def test_insecure_listener_is_refused_unless_kept_or_removed(
    store: CAStore, tmp_path: Path
) -> None:
    root = tmp_path / "r"
    write_json(
        root / "etc" / "docker" / "daemon.json",
        {"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]},
    )
    before = _tree(root)
    r = run_certkit("issue-server", "docker1.example.com", "--install", "--root", str(root))
    assert r.returncode == 2
    assert "tcp://0.0.0.0:2375" in r.stderr and "--remove-insecure" in r.stderr
    assert _tree(root) == before
    out = cli_json(
        "issue-server", "docker1.example.com", "--install", "--root", str(root), "--remove-insecure"
    )
    hosts = json.loads((root / "etc" / "docker" / "daemon.json").read_text())["hosts"]
    assert hosts == ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"]
    assert out["install"]["warnings"]


def test_human_output_says_restart_firewall_and_next_step(store: CAStore, tmp_path: Path) -> None:
    root = tmp_path / "r"
    r = run_certkit("issue-server", "docker1.example.com", "--install", "--root", str(root))
    assert r.returncode == 0, r.stderr
    assert "Restart needed" in r.stdout and "live-restore" in r.stdout
    assert "port 2376/tcp" in r.stdout
    assert "Next: certkit client-context --host docker1.example.com" in r.stdout


@pytest.mark.parametrize(
    "extra",
    [["--restart", "--root", "ROOT"], ["--restart"], ["--port", "2377"], ["--keep-insecure"]],
)
def test_option_combinations_that_make_no_sense_are_refused(
    store: CAStore, tmp_path: Path, extra: list[str]
) -> None:
    args = [str(tmp_path) if a == "ROOT" else a for a in extra]
    if "--root" in args:
        args.append("--install")
    r = run_certkit("issue-server", "docker1.example.com", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert store.inventory().find(kind="server") == []


# ---------------------------------------------------------------- the certificate


def test_out_bundle_for_copying_to_a_host(store: CAStore, tmp_path: Path) -> None:
    out = cli_json(
        "issue-server", "docker1.example.com", "--san", "10.0.0.5", "--out", str(tmp_path / "b")
    )
    bundle = tmp_path / "b"
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    assert stat.S_IMODE((bundle / "server-key.pem").stat().st_mode) == 0o600
    assert (bundle / "ca.pem").read_bytes() == store.trust_bundle_pem()
    cert = certs.load_cert((bundle / "server-cert.pem").read_bytes())
    key = certs.load_key((bundle / "server-key.pem").read_bytes())
    assert certs.key_matches_cert(key, cert)
    assert out["install"] is None and out["out_files"]["key"] == str(bundle / "server-key.pem")


def test_out_that_is_a_file_is_refused_before_issuing(store: CAStore, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "notes.txt"
    not_a_dir.write_text("mine\n")
    not_a_dir.chmod(0o644)
    r = run_certkit("issue-server", "docker1.example.com", "--out", str(not_a_dir))
    assert r.returncode == 2 and "not a directory" in r.stderr and "Traceback" not in r.stderr
    assert not_a_dir.read_text() == "mine\n"
    assert stat.S_IMODE(not_a_dir.stat().st_mode) == 0o644  # not chmod-ed to 0700
    assert store.inventory().find(kind="server") == []


def test_san_forms_and_nothing_added_silently(store: CAStore, tmp_path: Path) -> None:
    out = cli_json(
        "issue-server",
        "10.1.2.3",
        "--san",
        "bücher.example",
        "--san",
        "build.docker.example.com",
        "--san",
        "2001:db8::1",
        "--out",
        str(tmp_path / "b"),
    )
    cert = certs.load_cert((tmp_path / "b" / "server-cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "xn--bcher-kva.example",
        "build.docker.example.com",
    ]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    assert out["host"] == "10.1.2.3"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_names_are_normalized_as_clients_match_them(store: CAStore, tmp_path: Path) -> None:
    # Upper case is the same DNS name; a bracketed IPv6 is an IP SAN.  (A trailing dot is
    # refused: dockerd built with Go 1.24.8 does not start with one, moby#51367.)
    out = cli_json("issue-server", "Docker1.Example.COM", "--san", "[2001:DB8::5]")
    assert out["host"] == "docker1.example.com"
    assert out["names"] == ["docker1.example.com", "2001:db8::5"]
    (record,) = store.inventory().find(kind="server")
    assert record.sans == ["docker1.example.com", "2001:db8::5"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("docker 1.example.com", "spaces"),
        ("docker..example.com", "empty label"),
        ("a" * 64 + ".example.com", "longer than 63"),
        ("docker.*.example.com", "is a wildcard"),
        ("localhost.", "ends with a dot"),
        ("10.0.0.256", "not a valid IP"),
        ("2001:db8::zz", "not a valid IP"),
        ("fe80::1%eth0", "IPv6 zone"),
        ("*.com", "is a wildcard"),
        ("*.docker.example.com", "is a wildcard"),
        ("docker-.example.com", "not at the start or end"),
        ("xn--zz.example.com", "not a valid internationalized label"),
        ("10.0.0.1.", "neither a valid IP address nor a host name"),
        ("10.0.1", "neither a valid IP address nor a host name"),
        ("docker1.example.com:2376", "without a scheme, port"),
        ("tcp://10.0.0.5", "without a scheme, port"),
    ],
)
def test_invalid_names_are_refused(store: CAStore, name: str, why: str) -> None:
    r = run_certkit("issue-server", "docker1.example.com", "--san", name)
    assert r.returncode == 2
    assert why in r.stderr and "Traceback" not in r.stderr
    assert store.inventory().find(kind="server") == []


def test_pkilint_finds_nothing_in_a_server_certificate(store: CAStore, tmp_path: Path) -> None:
    lint = REPO / ".venv" / "bin" / "lint_pkix_cert"
    if not lint.exists():
        pytest.skip("pkilint is not installed in .venv")
    for key_type in ("ec-p256", "rsa-2048"):
        out = tmp_path / key_type
        cli_json("issue-server", "docker.example.com", "--key-type", key_type, "--out", str(out))
        r = subprocess.run(
            [str(lint), "lint", "-s", "WARNING", str(out / "server-cert.pem")],
            capture_output=True,
            text=True,
        )
        # pkilint prints one empty line when it has no finding (and a report, exit 1, else).
        assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "", ""), key_type
