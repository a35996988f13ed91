"""One engine for every target (issues 25, 26, 27): the same rules on this machine, over SSH
and through the fleet's target, proven on each with real parts.

``local`` is ``certkit issue-server --install --root``; ``ssh`` the same over a real sshd;
``fleet`` is the fleet's :class:`~certkit.fleet.target.AnsibleTarget` handed a transport
that carries ``sh -s`` over that same real sshd, as Ansible's ssh connection does (the
playbook run itself is tested on lab hosts in test_lab.py and test_fleet.py).
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import test_ssh_install
from lab import Lab, lab_fixture  # noqa: F401 (fixture "lab")
from sshd_support import SSHServer
from support import run_certkit
from test_hardening import inventory_serials, sandbox_root, snapshot

from certkit.errors import CertkitError, UsageError
from certkit.fleet.target import AnsibleTarget
from certkit.host import engine
from certkit.host.options import InstallOptions
from certkit.host.remote import remote_paths
from certkit.host.ssh import SSH
from certkit.server import issue_server
from certkit.store import CAStore
from certkit.targets import AnsibleRef

sshd = test_ssh_install.sshd  # the real-sshd fixture, shared

VIAS = ["local", "ssh", "fleet"]


def attempt(via: str, sshd: SSHServer, root: Path, cert_dir: str | None = None) -> tuple[int, str]:
    """Install a new certificate for docker1 under ``root`` through ``via``: (exit, stderr).
    The fleet's target is driven through the library; its exit is what its error maps to."""
    extra = ["--cert-dir", cert_dir] if cert_dir else []
    if via == "fleet":
        ssh = SSH.build(sshd.target, identity=str(sshd.identity), options=sshd.ssh_options())
        target = AnsibleTarget(
            ssh.transport, remote_paths(str(root), cert_dir), AnsibleRef("h1"), "h1"
        )
        try:
            issue_server(CAStore("default"), "docker1", target, options=InstallOptions())
        except CertkitError as e:
            return e.exit_code, f"certkit: error: {e.message}"
        return 0, ""
    where = sshd.cli_args() if via == "ssh" else ["--install"]
    r = run_certkit("issue-server", "docker1", *where, "--root", str(root), *extra)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stderr


def managed_link(tmp_path: Path, root: Path) -> tuple[Path, Path]:
    """daemon.json as a link to a file a configuration manager owns, in its own directory."""
    managed = tmp_path / "managed"
    managed.mkdir(mode=0o755)
    target = managed / "daemon.json"
    target.write_text('{"debug": true}\n')
    link = root / "etc" / "docker" / "daemon.json"
    link.symlink_to(target)
    return link, target


# ---------------------------------------------------------------- symbolic links


@pytest.mark.parametrize("via", VIAS)
def test_a_link_in_root_only_directories_is_followed_on_every_target(
    store: CAStore, certkit_home: Path, tmp_path: Path, sshd: SSHServer, via: str
) -> None:
    root = sandbox_root(tmp_path)
    link, target = managed_link(tmp_path, root)
    code, err = attempt(via, sshd, root)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert '"tlsverify": true' in target.read_text() and '"debug": true' in target.read_text()
    assert not list(target.parent.glob(".*certkit-*")) and not list(link.parent.glob(".*.old"))
    assert len(inventory_serials(certkit_home)) == 1


@pytest.mark.parametrize("unsafe", ["other-writable", "foreign-owner"])
def test_a_link_others_could_redirect_is_refused_alike_on_every_target(
    store: CAStore, certkit_home: Path, tmp_path: Path, sshd: SSHServer, unsafe: str
) -> None:
    """The rule once: a link is followed only where the link and its target sit in
    directories only root can change.  Today's three behaviours (local wrote through it,
    SSH refused, the fleet failed with "no message", exit 1) are one sentence, exit 2."""
    root = sandbox_root(tmp_path)
    _, target = managed_link(tmp_path, root)
    if unsafe == "other-writable":
        target.parent.chmod(0o777)
    else:
        os.chown(target.parent, 12345, 12345)
    before = snapshot(root, certkit_home, target.parent)
    sentences = set()
    for via in VIAS:
        code, err = attempt(via, sshd, root)
        assert code == 2, f"{via}: {err}"
        assert "symbolic link" in err and "only root can change" in err, f"{via}: {err}"
        sentences.add(err.strip().replace("on 127.0.0.1", "on HOST").split(": ", 1)[1])
    assert len(sentences) == 1, sentences  # the same sentence from every target
    assert snapshot(root, certkit_home, target.parent) == before
    assert inventory_serials(certkit_home) == []


# ---------------------------------------------------------------- the output cap


def test_a_host_printing_more_than_the_cap_is_cut_off_alike_on_every_target(
    store: CAStore, certkit_home: Path, tmp_path: Path, sshd: SSHServer
) -> None:
    """A 6 MiB drop-in (the attack: 150 MB took the fleet's controller to 853 MB) is cut on
    the host at the cap, on every target, with one sentence and nothing issued."""
    root = sandbox_root(tmp_path)
    dropins = root / "etc" / "systemd" / "system" / "docker.service.d"
    dropins.mkdir(parents=True)
    (dropins / "huge.conf").write_bytes(b"# " + b"x" * (6 << 20) + b"\n")
    for via in VIAS:
        code, err = attempt(via, sshd, root)
        assert code == 1, f"{via}: {err}"
        assert "sent more than 4 MiB back; certkit stopped reading" in err, f"{via}: {err}"
    assert inventory_serials(certkit_home) == []


def test_the_time_limit_stops_a_script_on_the_host(sshd: SSHServer) -> None:
    """The one time limit runs on the host itself: the script is stopped there, whatever
    carries it (no sleep left behind), and the sentence is the same."""
    ssh = SSH.build(sshd.target, identity=str(sshd.identity), options=sshd.ssh_options())
    for transport in (engine.local_sh, ssh.transport):
        rc, out, err = transport(engine.wrap("echo CERTKIT-ERROR never; sleep 30", seconds=1))
        with pytest.raises(CertkitError, match="did not finish within 600s"):
            engine.parse(rc, out, err, "h1")
    done = subprocess.run(["pgrep", "-f", "sleep 30"], capture_output=True, check=False)
    assert done.returncode == 1, done.stdout  # nothing left running


def test_a_refusal_is_exit_2_and_a_failure_exit_1_through_every_transport(
    sshd: SSHServer,
) -> None:
    ssh = SSH.build(sshd.target, identity=str(sshd.identity), options=sshd.ssh_options())
    for transport in (engine.local_sh, ssh.transport):
        with pytest.raises(UsageError, match=r"^the host says no$"):
            engine.run(transport, 'echo "CERTKIT-REFUSED the host says no"; exit 3', "h")
        with pytest.raises(CertkitError, match=r"failed \(exit 5\): boom") as failed:
            engine.run(transport, "echo boom >&2; exit 5", "h")
        assert failed.value.exit_code == 1
        assert engine.run(transport, "echo one; echo two", "h") == ["one", "two"]


# ---------------------------------------------------------------- the certificate directory


@pytest.mark.parametrize("via", VIAS)
def test_an_existing_system_directory_is_never_the_certificate_directory(
    store: CAStore, certkit_home: Path, tmp_path: Path, sshd: SSHServer, via: str
) -> None:
    """``--cert-dir /etc`` turned /etc 755 -> 700 on the host: now refused before issuing."""
    root = sandbox_root(tmp_path)
    etc = root / "etc"
    (etc / "hostname").write_text("h1\n")
    etc.chmod(0o755)
    code, err = attempt(via, sshd, root, cert_dir="/etc")
    assert code == 2, err
    assert "holds other files" in err and "--cert-dir" in err, err
    assert stat.S_IMODE(etc.stat().st_mode) == 0o755
    assert inventory_serials(certkit_home) == []


@pytest.mark.parametrize("via", VIAS)
def test_an_existing_empty_directory_is_used_and_never_chmodded(
    store: CAStore, certkit_home: Path, tmp_path: Path, sshd: SSHServer, via: str
) -> None:
    root = sandbox_root(tmp_path)
    certs_dir = root / "srv" / "certs"
    certs_dir.mkdir(parents=True, mode=0o755)
    certs_dir.chmod(0o755)
    code, err = attempt(via, sshd, root, cert_dir="/srv/certs")
    assert code == 0, err
    assert stat.S_IMODE(certs_dir.stat().st_mode) == 0o755  # certkit did not create it
    assert stat.S_IMODE((certs_dir / "server-key.pem").stat().st_mode) == 0o600
    # The directory certkit creates itself is private.
    code, err = attempt(via, sshd, root)
    assert code == 0, err
    assert stat.S_IMODE((root / "etc" / "docker" / "certkit").stat().st_mode) == 0o700


@pytest.mark.parametrize("via", VIAS)
def test_every_parent_of_the_certificate_directory_is_walked(
    store: CAStore, certkit_home: Path, tmp_path: Path, sshd: SSHServer, via: str
) -> None:
    """A root-owned 700 directory inside a user's home: the user can rename it and plant
    his own CA and key pair (then has the Docker API, root).  Refused like sshd's
    StrictModes, on every target, before anything is issued."""
    root = sandbox_root(tmp_path)
    home = root / "home" / "cknosudo"
    (home / "docker-certs").mkdir(parents=True, mode=0o700)
    os.chown(home, 12345, 12345)
    code, err = attempt(via, sshd, root, cert_dir="/home/cknosudo/docker-certs")
    assert code == 2, err
    assert f"{home} is owned by another user (uid 12345)" in err, err
    assert inventory_serials(certkit_home) == []


# ---------------------------------------------------------------- the fleet itself (lab hosts)


@pytest.mark.lab
def test_the_fleet_follows_refuses_and_caps_as_every_target_does(
    lab: Lab, tmp_path: Path, docker_config: Path
) -> None:
    """The same rules through the real ansible-playbook on a systemd lab host."""
    from test_fleet import fleet, inventory

    host = lab.host()
    run_certkit("init-ca")
    inv = inventory(tmp_path / "hosts.ini", [host])
    managed = host.path("/srv/managed")
    managed.mkdir(parents=True)
    managed.chmod(0o777)
    (managed / "daemon.json").write_text("{}\n")
    host.path("/etc/docker/daemon.json").symlink_to("/srv/managed/daemon.json")
    rc, out = fleet("apply", str(inv))
    assert rc == 1 and out["failed"] == ["h1"], out
    msg = str(out["hosts"]["h1"]["msg"])  # type: ignore[index]
    assert "is a symbolic link (to /srv/managed/daemon.json)" in msg, msg
    assert "only root can change" in msg and (managed / "daemon.json").read_text() == "{}\n"

    managed.chmod(0o755)  # now only root can change it: followed, the link kept
    rc, out = fleet("apply", str(inv), "--restart")
    assert rc == 0, out
    assert host.path("/etc/docker/daemon.json").is_symlink()
    assert '"tlsverify": true' in (managed / "daemon.json").read_text()

    big = host.path("/etc/systemd/system/docker.service.d/zz-huge.conf")
    big.write_bytes(b"# " + b"x" * (6 << 20) + b"\n")
    rc, out = fleet("apply", str(inv))
    assert rc == 1 and out["failed"] == ["h1"], out
    assert "sent more than 4 MiB back" in str(out["hosts"]["h1"]["msg"])  # type: ignore[index]
