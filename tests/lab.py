"""Lab hosts: a real systemd booted with ``systemd-nspawn``, Debian's docker.service inside.

Each :class:`LabHost` is this machine's own root seen through an overlay (the
upper layer on a tmpfs: nothing persists, nothing on the machine changes),
booted as a container whose PID 1 is systemd, in a network namespace of its
own reached over a veth pair (``10.77.N.1`` here, ``10.77.N.2`` inside).
Inside run, exactly as Debian ships them: ``docker.service`` (with
``/etc/default/docker`` and ``StartLimitBurst=3``), ``docker.socket``,
containerd and sshd.  ``root``, ``ops`` (passwordless sudo) and ``guest``
(no sudo rights) accept the lab's SSH key.

Why each nspawn flag (see docs/docker-tls-facts.md, section 7):

- ``--capability=all``: nspawn drops CAP_NET_ADMIN, which dockerd's iptables
  set-up needs even inside its own network namespace;
- ``--tmpfs=/var/lib/docker``: overlay2 cannot sit on an overlayfs;
- ``--register=no --keep-unit``: there is no machined or D-Bus on this
  machine, so nothing to register with (commands go in through ``nsenter``);
- ``--network-namespace-path``: the namespace the lab made, with its veth.

Nspawn runs in cgroups of its own (``name=systemd`` and ``unified``), so
parallel runs never share one, and teardown kills every process left there.
Every name carries a random token, so parallel runs do not clash.

:func:`lab_available` says whether this machine can boot one (root,
``systemd-nspawn``, ``nsenter``, ``ip``, sshd, dockerd); the ``lab`` fixture
skips when it cannot, unless ``CERTKIT_REQUIRE_LAB=1`` (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sshd_support import sshd_binary
from support import REPO, short_tempdir

NSPAWN = "systemd-nspawn"
CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
NET_PREFIX = "10.77"  # 10.77.N.0/24 per host: N is reserved in RESERVATIONS
RESERVATIONS = Path("/run/certkit-lab")
SUDO_USER = "ops"  # passwordless sudo
PLAIN_USER = "guest"  # no sudo rights
# The virtualenv the tests run in; the overlay shows it inside every lab host.
VENV_CERTKIT = REPO / ".venv" / "bin" / "certkit"
BOOT_TIMEOUT = 60.0
# Services of this machine that a Docker host does not need: masked in the overlay
# to keep boots short (docker, containerd and ssh are left exactly as shipped).
MASKED = ("postgresql.service", "e2scrub_reap.service", "systemd-timesyncd.service")

LAB_TOOLS = (NSPAWN, "nsenter", "ip", "ssh", "ssh-keygen", "dockerd", "sudo")


def lab_missing() -> list[str]:
    """What this machine lacks to boot a lab host (empty when it can)."""
    missing = [tool for tool in LAB_TOOLS if shutil.which(tool) is None]
    if sshd_binary() is None:
        missing.append("sshd")
    if os.geteuid() != 0:
        missing.append("root")
    if not all(root.is_dir() for root in CGROUP_ROOTS):
        missing.append("the name=systemd and unified cgroup hierarchies")
    return missing


def require_lab() -> None:
    """Skip (fail when CERTKIT_REQUIRE_LAB=1) unless a lab host can boot here."""
    missing = lab_missing()
    if not missing:
        return
    message = f"a lab host needs {', '.join(missing)}"
    if os.environ.get("CERTKIT_REQUIRE_LAB") == "1":
        pytest.fail(f"{message} (CERTKIT_REQUIRE_LAB=1)")
    pytest.skip(message)


def _run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        list(argv), capture_output=True, text=True, **kwargs
    )


def _must(argv: Sequence[str]) -> None:
    done = _run(argv)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


# ---------------------------------------------------------------- one host


@dataclass
class LabHost:
    """A booted lab host: run commands in it (nsenter or ssh), read its files."""

    name: str
    index: int  # N in 10.77.N.0/24
    base: Path  # the host's work dir here (tmpfs, overlay, logs)
    key: Path  # the lab's SSH client key (root, ops and guest accept it)
    known_hosts: Path
    proc: subprocess.Popen[bytes] | None = None  # systemd-nspawn
    pid: int = 0  # the container's PID 1 (systemd), as this machine sees it
    boot_seconds: float = 0.0
    cleanups: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The host's address, reachable from this machine (sshd, dockerd's 2376)."""
        return f"{NET_PREFIX}.{self.index}.2"

    @property
    def gateway(self) -> str:
        """This machine's end of the veth pair, as the host sees it."""
        return f"{NET_PREFIX}.{self.index}.1"

    @property
    def merged(self) -> Path:
        return self.base / "fs" / "merged"

    def path(self, inside: str) -> Path:
        """A path of the host as this machine sees it (not for /run, /tmp, /var/lib/docker:
        those are the container's own tmpfs)."""
        return self.merged / inside.lstrip("/")

    # -- running things inside

    def sh(self, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``sh -c SCRIPT`` as root inside the host (through nsenter); never raises."""
        return self.nsenter(["sh", "-c", script], timeout=timeout)

    def nsenter(
        self, argv: Sequence[str], timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as root in all the host's namespaces (its root, its systemd's view)."""
        base_env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/root",
        }
        return _run(
            ["nsenter", "-t", str(self.pid), "-a", "env", "-i"]
            + [f"{k}={v}" for k, v in {**base_env, **(env or {})}.items()]
            + list(argv),
            timeout=timeout,
        )

    def check(self, script: str) -> str:
        """Run ``script`` inside; its stdout, or an AssertionError with its output."""
        done = self.sh(script)
        assert done.returncode == 0, f"{script!r} failed in {self.name}: {done.stdout}{done.stderr}"
        return done.stdout

    def ssh_options(self) -> list[str]:
        """``-o`` values that pin this host's key and use the lab's client key only."""
        return [
            f"UserKnownHostsFile={self.known_hosts}",
            "GlobalKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
        ]

    def cli_args(self, user: str = "root") -> list[str]:
        """certkit's ``--ssh USER@ADDRESS`` and the options that reach this host."""
        args = ["--ssh", f"{user}@{self.address}", "--identity", str(self.key)]
        for option in self.ssh_options():
            args += ["--ssh-option", option]
        return args

    def ssh(self, user: str, command: str) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        for option in self.ssh_options():
            argv += ["-o", option]
        return _run([*argv, "-i", str(self.key), f"{user}@{self.address}", command], timeout=60)

    # -- systemd

    def state(self, unit: str = "docker", settle: float = 15) -> str:
        """``systemctl is-active UNIT`` once it settles: ``activating`` (a failing
        ``Restart=on-failure`` unit shows it for a moment) is waited out."""
        deadline = time.monotonic() + settle
        while True:
            state = self.sh(f"systemctl is-active {unit}").stdout.strip()
            if state not in ("activating", "deactivating", "reloading") or (
                time.monotonic() > deadline
            ):
                return state
            time.sleep(0.2)

    def journal(self, unit: str = "docker") -> str:
        return self.sh(f"journalctl -u {unit} --no-pager -o cat").stdout

    def dockerd_args(self) -> list[str]:
        """The running dockerd's command line (its MainPID's argv)."""
        pid = self.check("systemctl show -p MainPID --value docker").strip()
        assert pid != "0", "docker.service has no main process"
        return self.check(f"tr '\\0' '\\n' < /proc/{pid}/cmdline").splitlines()

    def start_limit_hit(self) -> bool:
        return self.check("systemctl show -p Result --value docker").strip() == "start-limit-hit"

    def certkit(self, *args: str) -> subprocess.CompletedProcess[str]:
        """certkit run *inside* the host as root, from this worktree's virtualenv (the
        overlay shows this machine's files, the virtualenv included)."""
        return self.nsenter(
            [str(VENV_CERTKIT), *args],
            env={"CERTKIT_HOME": "/root/certkit-home", "DOCKER_CONFIG": "/root/.docker"},
            timeout=300,
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.address})"


# ---------------------------------------------------------------- booting


def _reserve_index() -> tuple[int, Path]:
    """A free N for 10.77.N.0/24, held by a file naming our PID (stale ones are reclaimed)."""
    RESERVATIONS.mkdir(parents=True, exist_ok=True)
    used = _run(["ip", "-4", "-o", "addr"]).stdout
    for index in secrets.SystemRandom().sample(range(1, 255), 254):
        if f" {NET_PREFIX}.{index}." in used:
            continue
        mark = RESERVATIONS / f"net-{index}"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(mark.read_text()), 0)
            continue  # held by a live process
        with contextlib.suppress(FileNotFoundError):
            mark.unlink()  # stale
        try:
            fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return index, mark
    raise RuntimeError(f"no free {NET_PREFIX}.N.0/24 subnet for a lab host")


def _strip_pyenv(path: Path) -> None:
    """Root's start-up files come from this machine: a ``pyenv init`` there stalls
    every root ssh session inside (a stale lock), so the overlay gets them without it."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if "pyenv" not in line.lower()))


def _seed(host: LabHost, pubkey: str) -> None:
    """Before boot: identity, users, sudo rights, SSH keys; nothing of docker's."""
    root = host.merged
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (root / "etc/hostname").write_text(host.name + "\n")
    hosts = (root / "etc/hosts").read_text()
    (root / "etc/hosts").write_text(f"127.0.1.1\t{host.name}\n{hosts}")  # sudo resolves it
    for user in (SUDO_USER, PLAIN_USER):
        _must(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", user])
    sudoers = root / "etc/sudoers.d/certkit-lab"
    sudoers.write_text(f"{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    for home, user in (
        ("root", "root"),
        (f"home/{SUDO_USER}", SUDO_USER),
        (f"home/{PLAIN_USER}", PLAIN_USER),
    ):
        ssh_dir = root / home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(pubkey)
        (ssh_dir / "authorized_keys").chmod(0o600)
        _must(["chroot", str(root), "chown", "-R", f"{user}:{user}", f"/{home}/.ssh"])
    for name in (".bashrc", ".profile"):
        _strip_pyenv(root / "root" / name)
    for unit in MASKED:
        with contextlib.suppress(FileExistsError):
            (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    # Start from a Docker host that certkit has never touched: nothing of this machine's.
    for leftover in ("etc/docker/daemon.json", "etc/systemd/system/docker.service.d"):
        p = root / leftover
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    host_key = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    host.known_hosts.write_text(f"{host.address} {host_key[0]} {host_key[1]}\n")


def _make_cgroup(group: Path) -> None:
    """mkdir ``certkit-lab/NAME``: a parallel run's teardown may remove the shared
    ``certkit-lab`` between our two mkdirs (it goes when empty), so try again."""
    for _ in range(50):
        try:
            group.mkdir(parents=True)
            return
        except FileNotFoundError:
            time.sleep(0.02)
    group.mkdir(parents=True)


def _container_init(nspawn_pid: int) -> int | None:
    """PID of the container's systemd: the descendant of nspawn in a new PID namespace."""
    own = os.readlink("/proc/self/ns/pid")
    todo = [nspawn_pid]
    while todo:
        pid = todo.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            try:
                if os.readlink(f"/proc/{child}/ns/pid") != own:
                    return child
            except OSError:
                continue
            todo.append(child)
    return None


class Lab:
    """Boots lab hosts and tears every one of them down (see :func:`lab` fixture)."""

    def __init__(self) -> None:
        self.hosts: list[LabHost] = []
        self.token = secrets.token_hex(3)
        self.base = short_tempdir("cklab")
        self.key = self.base / "id_lab"
        _must(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "certkit-lab",
                "-f",
                str(self.key),
            ]
        )

    def boot(self, count: int = 1) -> list[LabHost]:
        """Boot ``count`` hosts side by side; return once docker and sshd run in each."""
        hosts = [self._start() for _ in range(count)]
        for host in hosts:
            self._wait_booted(host)
        return hosts

    def host(self) -> LabHost:
        return self.boot(1)[0]

    # -- one host's life

    def _start(
        self,
    ) -> LabHost:
        n = len(self.hosts)
        started = time.monotonic()
        base = self.base / f"h{n}"
        base.mkdir()
        index, mark = _reserve_index()
        name = f"ck{self.token}{n}"
        host = LabHost(name, index, base, self.key, base / "known_hosts")
        self.hosts.append(host)
        host.cleanups.append(("reservation", ["rm", "-f", str(mark)]))
        # The overlay: lower = this machine's /, upper and work on a tmpfs of their own.
        fs = base / "fs"
        fs.mkdir()
        _must(["mount", "-t", "tmpfs", "-o", "mode=0755", "cklab", str(fs)])
        host.cleanups.append(("tmpfs", ["umount", "-l", str(fs)]))
        for d in ("upper", "work", "merged"):
            (fs / d).mkdir()
        _must(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir=/,upperdir={fs}/upper,workdir={fs}/work", str(host.merged)]
        )  # fmt: skip
        host.cleanups.append(("overlay", ["umount", "-l", str(host.merged)]))
        _seed(host, Path(f"{self.key}.pub").read_text())
        # The network: a namespace with a veth pair, one end inside.
        _must(["ip", "netns", "add", name])
        host.cleanups.append(("netns", ["ip", "netns", "delete", name]))
        outside, inside = f"{name}h", f"{name}c"
        _must(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
        host.cleanups.append(("veth", ["ip", "link", "delete", outside]))
        _must(["ip", "link", "set", inside, "netns", name])
        _must(["ip", "addr", "add", f"{host.gateway}/24", "dev", outside])
        _must(["ip", "link", "set", outside, "up"])
        for cmd in (
            ["ip", "addr", "add", f"{host.address}/24", "dev", inside],
            ["ip", "link", "set", inside, "up"],
            ["ip", "link", "set", "lo", "up"],
            ["ip", "route", "add", "default", "via", host.gateway],
        ):
            _must(["ip", "-n", name, *cmd[1:]])
        # Cgroups of its own, entered by nspawn before it execs.
        groups = [root / "certkit-lab" / name for root in CGROUP_ROOTS]
        for group in groups:
            _make_cgroup(group)

        def enter_cgroups() -> None:
            for group in groups:
                (group / "cgroup.procs").write_text(str(os.getpid()))

        console = open(base / "console.log", "wb")  # noqa: SIM115 (kept by the process)
        host.proc = subprocess.Popen(
            [
                NSPAWN, "--boot", f"--directory={host.merged}", f"--machine={name}",
                "--register=no", "--keep-unit", "--capability=all",
                "--tmpfs=/var/lib/docker",
                # certkit inside (host.certkit) runs from this checkout, wherever it is
                # (nspawn gives the host its own /tmp).
                f"--bind-ro={REPO}", f"--network-namespace-path=/run/netns/{name}",
                "--console=read-only", "--quiet",
            ],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            preexec_fn=enter_cgroups, start_new_session=True,
        )  # fmt: skip
        console.close()
        host.boot_seconds = -started  # completed in _wait_booted
        return host

    def _wait_booted(self, host: LabHost) -> None:
        assert host.proc is not None
        deadline = time.monotonic() + BOOT_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if host.proc.poll() is not None:
                break
            if not host.pid:
                host.pid = _container_init(host.proc.pid) or 0
            if host.pid:
                done = host.sh("systemctl is-active docker ssh", timeout=20)
                last = done.stdout + done.stderr
                if done.returncode == 0 and host.ssh("root", "true").returncode == 0:
                    host.boot_seconds += time.monotonic()
                    return
            time.sleep(0.2)
        console = (host.base / "console.log").read_text(errors="replace")
        raise RuntimeError(f"lab host {host} did not boot: {last}\n{console[-3000:]}")

    def teardown(self) -> list[str]:
        """Stop every host and remove everything it had; returns what could not be undone."""
        problems: list[str] = []
        for host in reversed(self.hosts):
            problems += _stop(host)
        for root in CGROUP_ROOTS:  # shared by parallel runs: goes when the last one does
            with contextlib.suppress(OSError):
                (root / "certkit-lab").rmdir()
        shutil.rmtree(self.base, ignore_errors=True)
        return problems


def _cgroup_pids(name: str) -> list[int]:
    pids: set[int] = set()
    for root in CGROUP_ROOTS:
        for procs in _cgroup_files(root / "certkit-lab" / name):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return sorted(pids)


def _cgroup_files(group: Path) -> list[Path]:
    """Every cgroup.procs under ``group``; systemd may remove cgroups while we walk them."""
    for _ in range(20):
        try:
            return list(group.rglob("cgroup.procs"))
        except OSError:
            time.sleep(0.05)
    return list(group.rglob("cgroup.procs"))


def _remove_cgroups(name: str) -> list[str]:
    left = []
    for root in CGROUP_ROOTS:
        group = root / "certkit-lab" / name
        if not group.exists():
            continue
        # Deepest first: a cgroup goes only once its children have.
        for d in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        try:
            group.rmdir()
        except OSError as e:
            if e.errno != errno.ENOENT:
                left.append(f"cgroup {group}: {e}")
    return left


def _stop(host: LabHost) -> list[str]:
    """Kill the machine by PID (nothing in it needs saving: its disk is a tmpfs), then
    undo, in reverse order, every step that set it up."""
    problems: list[str] = []
    if host.proc is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(host.proc.pid, signal.SIGKILL)
        host.proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while pids := _cgroup_pids(host.name):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            problems.append(f"{host.name}: processes {pids} would not die")
            break
        time.sleep(0.05)
    problems += _remove_cgroups(host.name)
    for what, argv in reversed(host.cleanups):
        done = _run(argv)
        if done.returncode != 0 and what != "veth":  # the veth goes with its namespace
            problems.append(f"{host.name}: removing the {what} failed: {done.stderr.strip()}")
    return problems


@contextlib.contextmanager
def booted_lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        problems = lab.teardown()
        assert not problems, "lab teardown left things behind:\n" + "\n".join(problems)


@pytest.fixture(name="lab")
def lab_fixture() -> Iterator[Lab]:
    """Boots lab hosts on demand (``lab.host()``, ``lab.boot(3)``): a fresh boot per
    test, torn down even when the test fails."""
    require_lab()
    with booted_lab() as booted:
        yield booted
