"""``--method socket``: the TLS port held by systemd's docker.socket (issue 29, item 1).

The planning tests read unit texts only; the lab tests boot Debian's unmodified
docker.service (``-H fd://``, ``Requires=docker.socket``) under a real systemd
(tests/lab.py), install with ``--method socket`` over SSH, renew with a real
restart, and measure what a client polling ``GET /version`` every 50 ms sees
during ``renew server --restart`` under each method.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest
from lab import Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_ok, run_certkit

from certkit.errors import UsageError
from certkit.host.hostfiles import HostFiles
from certkit.host.plan import plan_install
from certkit.host.scripts import parse_docker_info
from certkit.host.systemd import socket_listens
from certkit.install_options import InstallOptions, install_options
from certkit.paths import SystemPaths

REPO = Path(__file__).resolve().parent.parent
SOCKET_DROPIN = "/etc/systemd/system/docker.socket.d/certkit.conf"
DEBIAN_SERVICE = (
    "[Service]\nExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/"
    "containerd.sock $DOCKER_OPTS\n"
)
DEBIAN_SOCKET = "[Socket]\nListenStream=/run/docker.sock\nSocketMode=0660\n"
PEMS = (b"ca", b"cert", b"key")


def host_files(service: str = DEBIAN_SERVICE, socket: str | None = DEBIAN_SOCKET) -> HostFiles:
    return HostFiles(
        daemon_json='{"debug": false}\n',
        units=[("/lib/systemd/system/docker.service", service)],
        socket_units=[] if socket is None else [("/lib/systemd/system/docker.socket", socket)],
    )


def plan(files_: HostFiles, **kw: object) -> object:
    opts = install_options(method="socket", **kw)  # type: ignore[arg-type]
    return plan_install(files_, SystemPaths(PurePosixPath("/")), opts, *PEMS)


# ---------------------------------------------------------------- planning (unit texts only)


def test_socket_plan_adds_a_tls_listen_stream_and_never_hosts() -> None:
    p = plan(host_files())
    assert p.method == "socket"  # type: ignore[attr-defined]
    assert p.new_socket_dropin == "".join(  # type: ignore[attr-defined]
        [
            "# Written by certkit (certkit issue-server --install --method socket): the Docker\n",
            "# API over TLS on this TCP port; systemd holds it while dockerd restarts.\n",
            "[Socket]\nListenStream=0.0.0.0:2376\n",
        ]
    )
    config = json.loads(p.new_daemon_json)  # type: ignore[attr-defined]
    assert "hosts" not in config
    assert config["tlsverify"] is True and config["tlscacert"].endswith("ca.pem")
    assert p.new_dropin is None  # type: ignore[attr-defined]
    assert p.restarts_socket  # type: ignore[attr-defined]
    assert SOCKET_DROPIN in p.written  # type: ignore[attr-defined]


def test_socket_plan_refuses_hosts_that_are_not_socket_activated() -> None:
    tcp = DEBIAN_SERVICE.replace("-H fd://", "-H fd:// -H tcp://0.0.0.0:2375")
    with pytest.raises(UsageError, match=r"only -H is fd://.*fd://, tcp://0\.0\.0\.0:2375"):
        plan(host_files(service=tcp), remove_insecure=True)
    with pytest.raises(UsageError, match=r"needs docker\.socket"):
        plan(host_files(socket=None))
    with pytest.raises(UsageError, match="ListenStream= takes an IP address"):
        plan(host_files(), listen="docker.example")
    taken = DEBIAN_SOCKET + "ListenStream=0.0.0.0:2376\n"
    with pytest.raises(UsageError, match=re.escape("already listens on 0.0.0.0:2376")):
        plan(host_files(socket=taken))


def test_socket_listens_replays_drop_ins_and_an_empty_reset() -> None:
    files_ = host_files()
    files_.socket_dropins = [
        ("/etc/systemd/system/docker.socket.d/00-reset.conf", "[Socket]\nListenStream=\n"),
        ("/etc/systemd/system/docker.socket.d/10-x.conf", "[Socket]\nListenStream=/run/x.sock\n"),
        (SOCKET_DROPIN, "[Socket]\nListenStream=[::]:2376\n"),
    ]
    assert socket_listens(files_) == ["/run/x.sock", "[::]:2376"]
    assert socket_listens(files_, ours=False) == ["/run/x.sock"]


def test_an_ipv6_listen_is_bracketed_and_a_second_plan_changes_nothing() -> None:
    p = plan(host_files(), listen="::")
    assert "ListenStream=[::]:2376\n" in p.new_socket_dropin  # type: ignore[attr-defined]
    again = host_files()
    again.socket_dropins = [(SOCKET_DROPIN, p.new_socket_dropin)]  # type: ignore[attr-defined]
    again.daemon_json = p.new_daemon_json  # type: ignore[attr-defined]
    again.cert_files = dict(zip(p.cert_paths.values(), PEMS, strict=True))  # type: ignore[attr-defined]
    auto = plan_install(again, SystemPaths(), install_options(listen="::"), *PEMS)
    assert auto.method == "socket" and not auto.changed


# ---------------------------------------------------------------- lab: real systemd


def _served_mutual_tls(host: LabHost, tls: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    from benchlib.renewal import tls_client, version_request

    version_request(host.address, 2376, tls_client(tls), timeout=10)


def _context_tls(docker_config: Path, name: str) -> Path:
    for meta in (docker_config / "contexts/meta").rglob("meta.json"):
        if json.loads(meta.read_text())["Name"] == name:
            return docker_config / "contexts/tls" / meta.parent.name / "docker"
    raise AssertionError(f"no docker context {name!r}")


def _measure_renewal(host: LabHost, tls: Path) -> dict[str, object]:
    """Renew the host's server certificate with a restart while polling every 50 ms."""
    sys.path.insert(0, str(REPO / "scripts"))
    from benchlib.renewal import poll_during, tls_client, version_request

    ctx = tls_client(tls)
    ssh = host.cli_args("root")[2:]
    with poll_during(lambda: version_request(host.address, 2376, ctx, timeout=30)) as result:
        cli_ok("renew", "server", host.address, *ssh, "--restart")
    return result.to_json()


@pytest.mark.lab
def test_socket_method_installs_renews_and_renewal_refuses_no_connection(
    lab: Lab, docker_config: Path
) -> None:
    """Two Debian hosts: one installed with the default (systemd) method, one with
    ``--method socket``; a renewal with a restart on each while a client polls."""
    cli_ok("init-ca")
    plain, sock = lab.boot(2)
    cli_ok("issue-server", plain.address, *plain.cli_args("root"), "--restart")
    out = cli_ok(
        "issue-server", sock.address, *sock.cli_args("root"), "--method", "socket", "--restart"
    )
    assert "Docker restarted and listens on tcp://0.0.0.0:2376." in out
    # The unit is untouched: dockerd still takes fd:// only, the port is systemd's.
    assert [a for a in sock.dockerd_args() if a.startswith(("-H", "tcp://"))] == ["-H"]
    assert not sock.path("/etc/systemd/system/docker.service.d/certkit.conf").exists()
    listen = sock.check("systemctl show -p Listen --value docker.socket")
    assert "0.0.0.0:2376 (Stream)" in listen and "/run/docker.sock (Stream)" in listen
    config = json.loads(sock.path("/etc/docker/daemon.json").read_text())
    assert "hosts" not in config and config["tlsverify"] is True
    # The unix socket still works for local docker.
    assert sock.sh("docker -H unix:///run/docker.sock version -f '{{.Server.Version}}'").stdout
    for host in (plain, sock):
        cli_ok("client-context", f"c-{host.index}", "--host", host.address)
        _served_mutual_tls(host, _context_tls(docker_config, f"c-{host.index}"))
    # Without a client certificate the socket's TLS refuses the request: never plaintext.
    plain_http = sock.check(
        "python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', 2376)); "
        "s.sendall(b'GET /version HTTP/1.0\\r\\n\\r\\n'); print(s.recv(300))\""
    )
    assert "Client sent an HTTP request to an HTTPS server" in plain_http

    numbers = {
        m: _measure_renewal(h, _context_tls(docker_config, f"c-{h.index}"))
        for m, h in (("systemd", plain), ("socket", sock))
    }
    print("RENEWAL-POLL", json.dumps(numbers))
    assert numbers["socket"]["failed"] == 0, numbers
    assert numbers["systemd"]["failed"] > 0, numbers  # the measurement can see a failure
    assert sock.state("docker.socket") == "active"
    _served_mutual_tls(sock, _context_tls(docker_config, f"c-{sock.index}"))


@pytest.mark.lab
def test_socket_method_refused_where_dockerd_is_not_socket_activated(lab: Lab) -> None:
    cli_ok("init-ca")
    host = lab.host()
    # An admin's drop-in that gives dockerd a TCP -H of its own: not socket-activated.
    host.check(
        "mkdir -p /etc/systemd/system/docker.service.d && printf '[Service]\\nExecStart=\\n"
        "ExecStart=/usr/sbin/dockerd -H fd:// -H tcp://127.0.0.1:2377\\n' "
        "> /etc/systemd/system/docker.service.d/00-admin.conf"
    )
    r = run_certkit(
        "issue-server", host.address, *host.cli_args("root"), "--method", "socket",
        "--keep-insecure",
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert "only -H is fd://" in r.stdout + r.stderr
    assert not host.path(SOCKET_DROPIN).exists()


# ---------------------------------------------------------------- --keep-containers (item 2)


@pytest.mark.lab
def test_keep_containers_turns_live_restore_on_before_the_restart(lab: Lab) -> None:
    cli_ok("init-ca")
    host = lab.host()
    ssh = host.cli_args("root")[2:]
    dry = cli_ok("issue-server", host.address, *host.cli_args("root"), "--dry-run")
    assert "--method socket would let systemd hold the TLS port" in dry
    cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart")
    # A swarm node: refused before anything is issued.
    host.check("docker swarm init --advertise-addr 127.0.0.1 >/dev/null")
    serial = host.path("/etc/docker/certkit/server-cert.pem").read_bytes()
    r = run_certkit("renew", "server", host.address, *ssh, "--restart", "--keep-containers")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refuses on a swarm node" in r.stdout + r.stderr
    assert host.path("/etc/docker/certkit/server-cert.pem").read_bytes() == serial
    host.check("docker swarm leave --force >/dev/null")
    # Containers cannot run in the lab (nspawn's cgroup v1 hierarchy is read-only: runc
    # "unable to apply cgroup configuration"), so what is checked for real is the daemon
    # side: live-restore in daemon.json, dockerd's SIGHUP reload, docker info's
    # LiveRestoreEnabled, all before the restart; and the new certificate served after it.
    pid = host.check("systemctl show -p MainPID --value docker").strip()
    out = cli_ok("renew", "server", host.address, *ssh, "--restart", "--keep-containers")
    assert "live-restore turned on" in out
    assert host.check("systemctl show -p MainPID --value docker").strip() != pid
    assert json.loads(host.path("/etc/docker/daemon.json").read_text())["live-restore"] is True
    assert host.check("docker info -f '{{.LiveRestoreEnabled}}'").strip() == "true"
    journal = host.journal()
    reload_at = journal.rindex("Got signal to reload configuration")
    assert "Daemon shutdown complete" in journal[reload_at:], "the reload came after the restart"


def test_doctor_offers_the_socket_method_and_keep_containers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel, text in (
        ("lib/systemd/system/docker.service", DEBIAN_SERVICE),
        ("lib/systemd/system/docker.socket", DEBIAN_SOCKET),
        ("etc/docker/daemon.json", '{"tlsverify": true, "tlscacert": "/nowhere/ca.pem"}\n'),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    r = run_certkit("doctor", "--root", str(root), "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    impact = checks["restart-impact"]
    assert impact["status"] == "WARN"
    assert "--method socket" in impact["message"] and "--keep-containers" in impact["message"]


@pytest.mark.lab
def test_socket_install_rolls_back_when_port_2376_is_taken(lab: Lab) -> None:
    """systemd cannot bind the new ListenStream: the drop-in and daemon.json are put back,
    docker.socket and docker run again as before."""
    cli_ok("init-ca")
    host = lab.host()
    host.check(
        "systemd-run --unit=holder python3 -c 'import socket, time; s = socket.socket(); "
        's.bind(("0.0.0.0", 2376)); s.listen(); time.sleep(3600)\''
    )
    r = run_certkit(
        "issue-server", host.address, *host.cli_args("root"), "--method", "socket", "--restart"
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the host was left as it was, and Docker was restarted with the previous" in r.stderr
    assert not host.path(SOCKET_DROPIN).exists()
    assert not host.path("/etc/docker/daemon.json").exists()
    assert host.state("docker.socket") == "active" and host.state() == "active"
    assert "2376" not in host.check("systemctl show -p Listen --value docker.socket")


def test_keep_containers_plan_and_the_running_containers_warning() -> None:
    files_ = host_files()
    files_.running, files_.live_restore, files_.swarm = 2, False, "inactive"
    p = plan_install(files_, SystemPaths(), install_options(), *PEMS)
    assert p.container_notes == [
        "the restart stops 2 running containers (live-restore is off): --keep-containers "
        "keeps them running"
    ]
    assert "live-restore" not in json.loads(p.new_daemon_json)
    keep = replace(install_options(), keep_containers=True)
    p = plan_install(files_, SystemPaths(), keep, *PEMS)
    assert json.loads(p.new_daemon_json)["live-restore"] is True and p.reload_first
    assert keep.to_json()["keep_containers"] is True  # recorded: renewals keep asking
    assert InstallOptions.from_json(keep.to_json()) == keep
    assert "keep_containers" not in install_options().to_json()  # older records unchanged
    files_.swarm = "active"
    with pytest.raises(UsageError, match="refuses on a swarm node"):
        plan_install(files_, SystemPaths(), keep, *PEMS)
    r = run_certkit("issue-server", "h.example", "--install", "--root", "/tmp", "--keep-containers")
    assert r.returncode == 2 and "add --restart" in r.stderr


def test_the_docker_info_probe_line_is_parsed() -> None:
    assert parse_docker_info(["x", "CERTKIT-DOCKERINFO inactive 3 false"]) == ("inactive", 3, False)
    assert parse_docker_info(["CERTKIT-DOCKERINFO "]) is None  # docker info did not answer
