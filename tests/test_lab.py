"""certkit against a real systemd: Debian's docker.service booted in systemd-nspawn.

Every test boots fresh lab hosts (tests/lab.py): this machine's own root
through an overlay, systemd as PID 1, Debian's unmodified ``docker.service``
(``-H fd://``, ``$DOCKER_OPTS`` from ``/etc/default/docker``,
``Restart=on-failure``, ``StartLimitBurst=3`` per 60 s), sshd, and the users
``root``, ``ops`` (passwordless sudo) and ``guest`` (no sudo rights).  certkit
reaches them exactly as a user would: ``--ssh`` with host key checking on, or
run inside the host (nsenter) against the real ``systemctl``.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from cryptography import x509
from lab import PLAIN_USER, SUDO_USER, Lab, LabHost, lab_fixture  # noqa: F401 (fixture "lab")
from support import cli_ok, refused, run_certkit, strict_context

pytestmark = pytest.mark.lab

DROPIN = "/etc/systemd/system/docker.service.d/certkit.conf"
# What a user has in /etc/default/docker: the drop-in must keep it.
USER_OPTS = 'DOCKER_OPTS="--label certkit-lab=kept"\n'
CONFLICT = "the following directives are specified both as a flag and in the configuration file"
# A process inside the host that takes port 2376 before dockerd can (systemd-run: it
# outlives our nsenter).
HOLD_2376 = (
    "systemd-run --unit=holder python3 -c 'import socket, time; s = socket.socket(); "
    's.bind(("0.0.0.0", 2376)); s.listen(); time.sleep(3600)\''
)


@pytest.fixture
def host(lab: Lab) -> LabHost:
    return lab.host()


@pytest.fixture
def ca() -> None:
    cli_ok("init-ca")


# ---------------------------------------------------------------- what the tests look at


def context_tls(docker_config: Path, name: str) -> Path:
    """The directory of a docker context's ca.pem, cert.pem, key.pem."""
    for meta in (docker_config / "contexts/meta").rglob("meta.json"):
        if json.loads(meta.read_text())["Name"] == name:
            return docker_config / "contexts/tls" / meta.parent.name / "docker"
    raise AssertionError(f"no docker context {name!r}")


def served_serial(host: LabHost, tls: Path) -> int:
    """The serial of the certificate dockerd serves on 2376, to a client with ``tls``'s files
    (raises when that client is refused)."""
    ctx = strict_context(tls / "ca.pem", tls / "cert.pem", tls / "key.pem")
    with (
        socket.create_connection((host.address, 2376), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=host.address) as s,
    ):
        s.sendall(
            f"GET /_ping HTTP/1.1\r\nHost: {host.address}\r\nConnection: close\r\n\r\n".encode()
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 200 "), "the API did not answer /_ping"
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def installed_serial(host: LabHost) -> int:
    pem = host.path("/etc/docker/certkit/server-cert.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).serial_number


def no_cert_refused(host: LabHost, tls: Path) -> bool:
    return refused(host.address, 2376, strict_context(tls / "ca.pem"))


def assert_docker_healthy(host: LabHost) -> None:
    """docker.service active, never start-limit-hit, the local socket answering."""
    assert host.state() == "active", host.journal()[-3000:]
    assert not host.start_limit_hit()
    host.check("docker version --format '{{.Server.Version}}'")


# ---------------------------------------------------------------- install over SSH


def test_stock_debian_host_installed_over_ssh_with_restart(
    host: LabHost, ca: None, docker_config: Path
) -> None:
    host.path("/etc/default/docker").write_text(
        host.path("/etc/default/docker").read_text() + USER_OPTS
    )
    out = cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart")
    assert "Installed (systemd method, listening on tcp://0.0.0.0:2376)" in out
    assert "Docker restarted and listens on tcp://0.0.0.0:2376." in out

    # docker.service runs the drop-in's command line, with /etc/default/docker's options.
    assert_docker_healthy(host)
    assert "$DOCKER_OPTS" in host.path(DROPIN).read_text()
    args = host.dockerd_args()
    assert args[:3] == ["/usr/sbin/dockerd", "-H", "fd://"]
    assert "--label" in args and "certkit-lab=kept" in args
    assert args[-2:] == ["-H", "tcp://0.0.0.0:2376"]
    assert host.check("docker info --format '{{.Labels}}'").strip() == "[certkit-lab=kept]"

    # From this machine: a client of the CA passes every check, one without a cert is refused.
    cli_ok("client-context", "lab", "--host", host.address)
    assert "All 11 checks passed." in cli_ok("verify", "--context", "lab")
    tls = context_tls(docker_config, "lab")
    assert served_serial(host, tls) == installed_serial(host)
    assert no_cert_refused(host, tls)

    # certkit doctor, run on the host itself, finds nothing wrong; no firewall is active in
    # the lab host, so it warns that 2376 is open to every network (tests/test_lab_exposure);
    # and that a renewal's restart refuses connections and stops containers here (issue 29).
    doctor = host.certkit("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    # ... and that a renewal's restart would refuse connections and stop containers
    # (--method socket and --keep-containers avoid it: issue 29).
    assert "No problem found, 2 warning(s)." in doctor.stdout
    assert "WARN  tls-port-exposure" in doctor.stdout
    assert "WARN  restart-impact" in doctor.stdout and "--keep-containers" in doctor.stdout


def test_host_broken_by_the_hosts_conflict_is_repaired_with_sudo(host: LabHost, ca: None) -> None:
    # The classic mistake: "hosts" in daemon.json while the unit passes -H fd://.
    host.path("/etc/docker/daemon.json").write_text(
        '{"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]}\n'
    )
    assert host.sh("systemctl restart docker").returncode == 1
    assert host.state() == "failed"
    assert CONFLICT in host.journal()

    doctor = host.certkit("doctor")
    assert doctor.returncode == 1
    assert "FAIL  hosts-conflict" in doctor.stdout

    # A user without sudo rights gets one sentence, and nothing changes.
    r = run_certkit("issue-server", host.address, *host.cli_args(PLAIN_USER), "--sudo")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"certkit: error: sudo on {host.address} needs a password, and certkit only runs "
        "'sudo -n': give this user passwordless sudo, or connect as root."
    ]
    # The sudo user without --sudo is told to pass it.
    repair = ["--method", "daemon-json", "--remove-insecure", "--restart"]
    r = run_certkit("issue-server", host.address, *host.cli_args(SUDO_USER), *repair)
    assert r.returncode != 0
    assert "connect as root or pass --sudo" in r.stderr
    assert not host.path(DROPIN).exists()

    out = cli_ok("issue-server", host.address, *host.cli_args(SUDO_USER), "--sudo", *repair)
    assert "Docker restarted" in out
    assert_docker_healthy(host)
    cli_ok("client-context", "lab", "--host", host.address)
    assert "All 11 checks passed." in cli_ok("verify", "--context", "lab")
    doctor = host.certkit("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def snapshot(host: LabHost) -> dict[str, bytes]:
    """Every file certkit may write, backups and temp files included."""
    return {
        str(p): p.read_bytes()
        for d in ("/etc/docker", "/etc/systemd/system")
        for p in sorted(host.path(d).rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_restart_rolls_back_when_port_2376_is_taken(host: LabHost, ca: None) -> None:
    before, files = host.dockerd_args(), snapshot(host)
    host.check(HOLD_2376)
    r = run_certkit("issue-server", host.address, *host.cli_args("root"), "--restart")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"certkit: error: Docker did not come back after the restart on {host.address} "
        "(see journalctl -u docker there); the host was left as it was, and Docker was "
        "restarted with the previous configuration."
    ]
    assert "address already in use" in host.journal()
    # Docker runs again, as before: stock command line, no drop-in, no daemon.json.
    assert_docker_healthy(host)
    assert host.dockerd_args() == before
    assert not host.path(DROPIN).exists()
    assert snapshot(host) == files


# ---------------------------------------------------------------- renewal, CA rotation


def test_renewal_and_ca_rotation_with_real_restarts_keep_every_client_in(
    host: LabHost, ca: None, docker_config: Path
) -> None:
    """Seven restarts of docker.service within a minute of boot (StartLimitBurst=3 per 60 s):
    none hits the start limit, and after each one dockerd serves the installed certificate."""
    ssh = host.cli_args("root")[2:]  # --identity and --ssh-option: the record has the target
    cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart")
    cli_ok("client-context", "old", "--host", host.address)
    old = context_tls(docker_config, "old")
    serial = served_serial(host, old)

    def restarted_with_new_serial() -> None:
        nonlocal serial
        assert_docker_healthy(host)
        now = installed_serial(host)
        assert now != serial, "the installed certificate did not change"
        assert served_serial(host, old) == now
        serial = now

    def everyone_in() -> None:
        assert served_serial(host, old) == serial
        if (docker_config / "contexts/meta").exists() and any(
            json.loads(m.read_text())["Name"] == "new"
            for m in (docker_config / "contexts/meta").rglob("meta.json")
        ):
            assert served_serial(host, context_tls(docker_config, "new")) == serial

    for _ in range(2):
        out = cli_ok("renew", "server", host.address, *ssh, "--restart")
        assert "dockerd restarted and answers on its TLS port." in out
        restarted_with_new_serial()

    # 1. A new CA; the server learns to trust both (a restart, same certificate).
    cli_ok("rotate-ca", "start")
    cli_ok("renew", "server", host.address, *ssh, "--bundle-only", "--restart")
    assert_docker_healthy(host)
    cli_ok("client-context", "new", "--host", host.address)
    everyone_in()
    # 2. The clients move to the new CA, 3. then the server does.
    cli_ok("renew", "client", "old")
    everyone_in()
    cli_ok("renew", "server", host.address, *ssh, "--restart")
    restarted_with_new_serial()
    everyone_in()
    # 4. The old CA goes: the server's bundle, then the clients'.
    cli_ok("rotate-ca", "finish")
    cli_ok("renew", "server", host.address, *ssh, "--bundle-only", "--restart")
    assert_docker_healthy(host)
    cli_ok("renew", "client", "new", "--bundle-only")
    cli_ok("renew", "client", "old", "--bundle-only")
    everyone_in()
    assert "All 11 checks passed." in cli_ok("verify", "--context", "old")
    assert "All 11 checks passed." in cli_ok("verify", "--context", "new")


def test_start_limit_of_the_debian_unit_never_stops_a_certkit_restart(
    host: LabHost, ca: None
) -> None:
    # The lab has the limit for real: the start at boot counts, the third restart is refused.
    for _ in range(2):
        host.check("systemctl restart docker")
    assert host.sh("systemctl restart docker").returncode == 1
    assert host.start_limit_hit()

    # certkit's restarts still go through, again and again, a rollback's included.
    cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart")
    assert_docker_healthy(host)
    ssh = host.cli_args("root")[2:]
    for _ in range(3):
        cli_ok("renew", "server", host.address, *ssh, "--restart")
        assert_docker_healthy(host)
    r = run_certkit(
        "issue-server", host.address, *host.cli_args("root"), "--port", "22", "--restart"
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Docker was restarted with the previous configuration" in r.stderr
    assert_docker_healthy(host)
    assert host.dockerd_args()[-2:] == ["-H", "tcp://0.0.0.0:2376"]


# ---------------------------------------------------------------- local mode, several hosts


def test_local_install_inside_the_host_with_the_real_systemctl(host: LabHost) -> None:
    def certkit(*args: str) -> str:
        r = host.certkit(*args)
        assert r.returncode == 0, f"certkit {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout

    certkit("init-ca")
    # Port 2376 taken: the restart fails, the files go back, docker restarts as it was.
    host.check(HOLD_2376)
    r = host.certkit("issue-server", host.address, "--install", "--restart")
    assert r.returncode == 1
    # The same sentence as over SSH and in the fleet: one engine restarts every target.
    assert (
        "certkit: error: Docker did not come back after the restart on this machine "
        "(see journalctl -u docker there); the host was left as it was, and Docker was "
        "restarted with the previous configuration." in r.stderr
    )
    assert_docker_healthy(host)
    assert not host.path(DROPIN).exists()

    host.check("systemctl stop holder")
    out = certkit("issue-server", host.address, "--install", "--restart")
    assert "Docker restarted and listens on tcp://0.0.0.0:2376." in out
    assert_docker_healthy(host)
    certkit("client-context", "self", "--host", host.address)
    # Run on the host, verify adds who can reach the ports: 2376 open to every network.
    assert "All 13 checks passed, 1 warning(s)." in certkit("verify", "--context", "self")
    assert "No problem found, 2 warning(s)." in certkit("doctor")  # exposure, restart-impact


def test_several_hosts_boot_side_by_side_and_install_independently(lab: Lab, ca: None) -> None:
    started = time.monotonic()
    hosts = lab.boot(2)
    print(f"2 lab hosts booted in {time.monotonic() - started:.1f}s")
    assert len({h.address for h in hosts}) == 2
    for h in hosts:
        cli_ok("issue-server", h.address, *h.cli_args("root"), "--restart")
        cli_ok("client-context", h.name, "--host", h.address)
    for h in hosts:
        assert "All 11 checks passed." in cli_ok("verify", "--context", h.name)


# ---------------------------------------------------------------- TLS flags in the unit (issue 26)

# Docker's own recipe for TLS on a systemd host (docs.docker.com, "configure remote access"),
# as `systemctl edit docker.service` writes it: the same keys certkit puts in daemon.json.
RECIPE = (
    "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// -H tcp://0.0.0.0:2376 "
    "--tlsverify --tlscacert=/etc/docker/tls/ca.pem --tlscert=/etc/docker/tls/cert.pem "
    "--tlskey=/etc/docker/tls/key.pem\n"
)


def test_dockers_tls_recipe_in_the_unit_is_planned_and_docker_comes_back(
    host: LabHost, ca: None
) -> None:
    """Before: the recipe's flags were copied into certkit's drop-in while the same keys went
    into daemon.json; install exit 0, then "specified both as a flag and in the
    configuration file" at the restart.  Now the flags move out of the drop-in."""
    override = "/etc/systemd/system/docker.service.d/override.conf"
    host.path(override).parent.mkdir(parents=True, exist_ok=True)
    host.path(override).write_text(RECIPE)
    host.check("systemctl daemon-reload")
    # As `systemctl edit` names it, it is read after certkit.conf: one sentence, nothing issued.
    r = run_certkit("issue-server", host.address, *host.cli_args("root"), "--restart")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "is read after certkit's drop-in" in r.stderr
    assert host.address not in cli_ok("list", "--kind", "server")
    host.path(override).rename(host.path(override).with_name("00-override.conf"))
    host.check("systemctl daemon-reload")
    out = cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart")
    assert "Docker restarted" in out
    assert_docker_healthy(host)
    args = host.dockerd_args()
    assert not [a for a in args if a.startswith(("--tlsverify", "--tlscacert", "--tlscert"))]
    assert "tcp://0.0.0.0:2376" in " ".join(args)
    config = json.loads(host.path("/etc/docker/daemon.json").read_text())
    assert config["tlscert"] == "/etc/docker/certkit/server-cert.pem"
    assert CONFLICT not in host.journal()
    doctor = host.certkit("doctor")
    assert "PASS  hosts-conflict" in doctor.stdout, doctor.stdout

    # The state an older certkit left (the flags kept, the keys in daemon.json): doctor FAILs.
    host.path(override).write_text(RECIPE)
    host.check("systemctl daemon-reload")
    doctor = host.certkit("doctor")
    assert doctor.returncode == 1
    assert "FAIL  hosts-conflict" in doctor.stdout, doctor.stdout
    assert (
        "tlscacert, tlscert, tlskey, tlsverify are set both as a flag of docker.service and "
        "in daemon.json, so dockerd refuses to start" in doctor.stdout
    ), doctor.stdout


def test_a_rolled_back_pair_swap_says_what_happened_and_leaves_nothing(
    host: LabHost, ca: None
) -> None:
    """Issue 26 item 4: a re-install writes daemon.json twice (the pair swap); its rollback
    said "restoring failed" although it restored, and left a .certkit-*-2.old hard link."""
    cli_ok("issue-server", host.address, *host.cli_args("root"), "--restart")
    before, files = host.dockerd_args(), snapshot(host)
    host.check(HOLD_2376.replace("2376", "2377"))
    r = run_certkit(
        "issue-server", host.address, *host.cli_args("root"), "--port", "2377", "--restart"
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"certkit: error: Docker did not come back after the restart on {host.address} "
        "(see journalctl -u docker there); the host was left as it was, and Docker was "
        "restarted with the previous configuration."
    ]
    assert_docker_healthy(host)
    assert host.dockerd_args() == before
    assert snapshot(host) == files  # no .old copy, no staging file, no backup left


def test_docker_is_back_only_when_it_serves_the_new_certificate_over_tls(
    host: LabHost, ca: None
) -> None:
    """The one rule for every target (issue 25): after the restart dockerd must serve the
    new certificate over TLS, as the fleet always checked.  Here docker.service is active
    but what answers on 2376 from certkit's side is no TLS (a redirect to a plain TCP
    listener): rolled back, one sentence."""
    before, files = host.dockerd_args(), snapshot(host)
    host.check(
        "systemd-run --unit=plain python3 -c 'import socket; s = socket.socket(); "
        's.bind(("0.0.0.0", 2399)); s.listen(); [s.accept()[0].close() for _ in iter(int, 1)]\''
    )
    host.check(
        "nft add table ip cktest && nft add chain ip cktest pre "
        "'{ type nat hook prerouting priority -100; }' && nft add rule ip cktest pre "
        "tcp dport 2376 redirect to :2399"
    )
    r = run_certkit("issue-server", host.address, *host.cli_args("root"), "--restart")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(
        f"certkit: error: Docker did not come back after the restart on {host.address} "
        f"({host.address}:2376 does not serve the new certificate "
    ), r.stderr
    assert lines[0].endswith(
        "the host was left as it was, and Docker was restarted with the previous configuration."
    ), r.stderr
    assert_docker_healthy(host)
    assert host.dockerd_args() == before
    assert snapshot(host) == files
