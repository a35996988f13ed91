"""The one way certkit talks to a Docker host: a script in, its output lines back.

Every target (this machine, a host over SSH, a host through Ansible) runs the
same scripts (:mod:`certkit.host.scripts`) with ``sh -s``; the transport only
moves bytes.  This module is the protocol both sides share:

* :func:`wrap` puts every script in the same frame: it prints
  :data:`START_MARKER` first (what a login prints before it is skipped), runs
  the script under ``timeout`` (:data:`SCRIPT_SECONDS`, on the host itself), cuts
  its output at :data:`MAX_OUTPUT` bytes on the host (``head -c``: a 150 MB
  drop-in never leaves the host), and ends with ``CERTKIT-EXIT <status>``;
* :func:`parse` reads the output back the same way for every target: a
  ``CERTKIT-REFUSED`` line is the host's state refused before any change
  (:class:`UsageError`, exit 2), a ``CERTKIT-ERROR`` line a failed step
  (:class:`OperationError`), a missing exit line an output cut at the cap or a
  script stopped at the time limit;
* :func:`run_capped` is the local side's own cap and time limit for the
  transports that are local processes (``sh``, ``ssh``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from ..errors import OperationError, UsageError

START_MARKER = "CERTKIT-START"  # the first line of every script's output
EXIT_PREFIX = "CERTKIT-EXIT "  # the last line: the script's exit status
ERROR_PREFIX = "CERTKIT-ERROR "  # a step failed: the sentence that says why
REFUSED_PREFIX = "CERTKIT-REFUSED "  # the host's state refused before any change (exit 2)
# What a write script's failure says when it could not put every previous file back.
RESTORE_FAILED = "restoring failed for"

MAX_OUTPUT = 4 << 20  # what certkit reads back from a host at most: its files are a few KiB
SCRIPT_SECONDS = 600  # how long one script may run on a host before it is stopped
BACK_SECONDS = 60.0  # how long dockerd may take to serve the new certificate after a restart

# Local processes (sh, ssh) get a little more room than the host-side cap and time limit,
# so the host's own cut is what is normally seen: these catch a host that ignores them.
_SLACK_BYTES = 64 << 10
_SLACK_SECONDS = 30

# rc, stdout, stderr of ``sh -s`` run on a host with the script on standard input.
Transport = Callable[[str], tuple[int, str, str]]


def wrap(script: str, *, seconds: int = SCRIPT_SECONDS, cap: int = MAX_OUTPUT) -> str:
    """``script`` framed for any host: start marker, time limit, output cap, exit line.

    The script reaches its own ``sh -s`` through a here-document (a pipe: never
    an argument, so no secret shows in a process list), run by coreutils'
    ``timeout``, which stops the script and everything it started (its process
    group) after ``seconds``; the write script traps that SIGTERM and restores
    the host.  ``--preserve-status`` keeps the script's own exit status.
    """
    end = f"CERTKIT-BODY-{secrets.token_hex(8)}"
    return (
        f"echo {START_MARKER}\n"
        "certkit_run() {\n"
        "if command -v timeout >/dev/null 2>&1; "
        f"then timeout --preserve-status -k 10 {seconds} sh -s; else sh -s; fi <<'{end}'\n"
        f"{script}\n"
        f"{end}\n"
        f'echo "{EXIT_PREFIX}$?"\n'
        "}\n"
        f"certkit_run | head -c {cap}\n"
    )


def too_large(where: str, cap: int = MAX_OUTPUT) -> OperationError:
    """The one sentence for a host that sent more than the cap."""
    return OperationError(
        f"{where} sent more than {cap // (1 << 20)} MiB back; certkit stopped reading (a "
        "host's files are far smaller): check the files there and what runs at login."
    )


def timed_out(where: str, seconds: float = SCRIPT_SECONDS) -> OperationError:
    """The one sentence for a script that did not finish within the time limit.  What it
    had done by then is unknown (:class:`HostStateUnknown`): an install is settled from
    what the host holds."""
    return HostStateUnknown(
        f"The step on {where} did not finish within {seconds:.0f}s and was stopped; "
        "check the host and retry."
    )


def last_line(text: str) -> str:
    """The last non-blank line of ``text``, without a final period."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].rstrip(".") if lines else ""


def parse(
    rc: int,
    out: str,
    err: str,
    where: str,
    *,
    cap: int = MAX_OUTPUT,
    not_started: Callable[[int, str], str] | None = None,
) -> list[str]:
    """The script's output lines (between the start marker and the exit line).

    Raises, the same way for every target: :class:`UsageError` with the
    host's ``CERTKIT-REFUSED`` sentence; :class:`OperationError` with its
    ``CERTKIT-ERROR`` sentence, for an output cut at ``cap``, a script
    stopped at the time limit, or one that never started (``not_started``
    explains that from the transport's exit status and standard error).
    """
    lines = out.splitlines()
    if START_MARKER not in lines:
        if not_started is not None:
            raise OperationError(not_started(rc, err))
        raise OperationError(
            f"The script did not start on {where} (exit {rc}): "
            f"{last_line(err) or 'no output'}; the host needs a POSIX sh."
        )
    lines = lines[lines.index(START_MARKER) + 1 :]
    if not lines or not lines[-1].startswith(EXIT_PREFIX):
        if len(out.encode(errors="replace")) >= cap:
            raise too_large(where, cap)
        raise HostStateUnknown(
            f"The step on {where} stopped before it finished (exit {rc}): "
            f"{last_line(err) or 'no message'}; check the files there (the next certkit run "
            "records whichever certificate the host holds)."
        )
    status = lines.pop()[len(EXIT_PREFIX) :].strip()
    code = int(status) if status.isdigit() else 1
    if code == 0:
        return lines
    if code in (124, 143):  # the time limit's SIGTERM, not trapped
        raise timed_out(where)
    if code == 137:  # SIGKILL: the time limit's last resort, or someone else's kill -9
        raise HostStateUnknown(
            f"The step on {where} was killed before it finished (at its time limit, or by "
            "someone on the host); check the files there (certkit records whichever "
            "certificate the host holds)."
        )
    refusal = [line[len(REFUSED_PREFIX) :] for line in lines if line.startswith(REFUSED_PREFIX)]
    if refusal:
        raise UsageError(refusal[-1])
    reported = [line[len(ERROR_PREFIX) :] for line in lines if line.startswith(ERROR_PREFIX)]
    if reported and RESTORE_FAILED in reported[-1]:  # some new files stayed: the host decides
        raise HostStateUnknown(reported[-1])
    if reported:
        raise OperationError(reported[-1])
    raise OperationError(
        f"The step on {where} failed (exit {code}): {last_line(err) or 'no message'}."
    )


def run(
    transport: Transport,
    script: str,
    where: str,
    *,
    not_started: Callable[[int, str], str] | None = None,
) -> list[str]:
    """Run ``script`` (framed by :func:`wrap`) through ``transport``; :func:`parse`'s lines."""
    try:
        rc, out, err = transport(wrap(script))
    except OutputTooLarge:
        raise too_large(where) from None
    except subprocess.TimeoutExpired:
        raise timed_out(where) from None
    return parse(rc, out, err, where, not_started=not_started)


class HostStateUnknown(OperationError):
    """The host's script died before it said how it ended (killed, the link lost): the host
    may hold the new files or the old ones.  The install stays *installing* in the
    inventory, and the next run settles it from what the host holds
    (:func:`certkit.placement.settle`)."""

    host_state_unknown = True


class OutputTooLarge(Exception):
    """The process wrote more than the cap allows (it was killed)."""


def run_capped(
    argv: list[str],
    stdin: bytes,
    timeout: float = SCRIPT_SECONDS + _SLACK_SECONDS,
    cap: int = MAX_OUTPUT + _SLACK_BYTES,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` feeding ``stdin``; its stdout and stderr are each read up to ``cap`` bytes.

    Beyond the cap the process is killed and :class:`OutputTooLarge` raised;
    beyond ``timeout`` it is killed and :class:`subprocess.TimeoutExpired`
    raised: a host streaming without end cannot make certkit grow or wait
    without end.
    """
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    got: dict[str, bytes] = {}
    over: list[str] = []

    def read(name: str, stream: Any) -> None:
        data = stream.read(cap + 1)
        if len(data) > cap:
            over.append(name)
            proc.kill()
        got[name] = data[:cap]
        stream.close()

    def feed() -> None:
        try:
            proc.stdin.write(stdin)  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:  # the process exited without reading it all
            pass

    threads = [
        threading.Thread(target=read, args=("out", proc.stdout), daemon=True),
        threading.Thread(target=read, args=("err", proc.stderr), daemon=True),
        threading.Thread(target=feed, daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    for t in threads:
        t.join()
    if over:
        raise OutputTooLarge(over[0])
    return subprocess.CompletedProcess(argv, code, got.get("out", b""), got.get("err", b""))


def served_serial(
    address: str, port: int, ca_pem: bytes, client: tuple[str, str] | None, timeout: float
) -> tuple[str | None, str]:
    """The serial (hex) of the certificate dockerd serves on ``address:port``, polled
    until ``timeout``; (None, why) when no TLS session trusting ``ca_pem`` opens.

    This is the one test of "dockerd is back" after a restart, on every target:
    it serves the new certificate over TLS.  Without a ``client`` pair the
    server's certificate is still seen (TLS 1.3 sends it before asking for ours).
    """
    import socket
    import ssl
    import time

    from .. import certs

    ctx = ssl.create_default_context(cadata=ca_pem.decode(errors="replace"))
    ctx.check_hostname = False  # the serial is compared instead: stricter than a name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client:
        ctx.load_cert_chain(client[0], client[1])
    deadline = time.monotonic() + timeout
    why = "no answer"
    while True:
        try:
            with (
                socket.create_connection((address, port), timeout=5) as raw,
                ctx.wrap_socket(raw) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
            if der:
                from cryptography import x509

                return certs.serial_hex(x509.load_der_x509_certificate(der)), ""
        except (OSError, ssl.SSLError) as e:
            why = " ".join((str(e) or type(e).__name__).split())
        if time.monotonic() >= deadline:
            return None, why
        time.sleep(0.5)


def tcp_reaches(address: str, port: int, seconds: float = 5.0) -> bool:
    """True when a TCP connection to ``address:port`` opens within ``seconds``: certkit can
    see what the port serves.  False behind a firewall that drops or rejects us."""
    import socket

    try:
        with socket.create_connection((address, port), timeout=seconds):
            return True
    except OSError:
        return False


def tcp_reaches_after_restart(address: str, port: int, grace: float = 10.0) -> bool:
    """:func:`tcp_reaches` just after a restart: a refused connection is a port not open
    *yet* (a rootless daemon's port forwarder starts after the unit is active), so it is
    tried again for ``grace`` seconds; a connection that times out (a firewall dropping
    it) is False at once, as before."""
    import socket
    import time

    deadline = time.monotonic() + grace
    while True:
        try:
            with socket.create_connection((address, port), timeout=5.0):
                return True
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.25)
        except OSError:
            return False


def probe_address(listen: str, host: str | None) -> str | None:
    """Where certkit checks the TLS port of a host: the listen address, or for a wildcard
    the host itself (``host``; None: this machine, on loopback).  None when that cannot be
    reached from here (a remote host listening on its loopback only)."""
    import ipaddress

    addr = listen.strip("[]")
    if addr in ("0.0.0.0", "", "::"):
        if host is not None:
            return host
        return "::1" if addr == "::" else "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(addr).is_loopback
    except ValueError:
        loopback = False
    return None if loopback and host is not None else addr


LOCAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def local_sh(script: str) -> tuple[int, str, str]:
    """The local transport: ``sh -s`` on this machine (as certkit's own user)."""
    # The system's tool directories always come last on PATH: started with a bare PATH
    # (a cron job, a minimal environment), the scripts still find mv, systemctl and ufw.
    path = os.pathsep.join(p for p in (os.environ.get("PATH", ""), LOCAL_PATH) if p)
    env = {**os.environ, "LC_ALL": "C", "PATH": path}
    done = run_capped(["/bin/sh", "-s"], script.encode(), env=env)
    return (
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )
