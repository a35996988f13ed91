"""The one way certkit talks to a Docker host: a script in, its output lines back.

Every target (this machine, a host over SSH, a host through Ansible) runs the
same scripts (:mod:`certkit.host.scripts`) with ``sh -s``; the transport only
moves bytes.  This module is the protocol both sides share:

* :func:`wrap` puts every script in the same frame: it prints
  :data:`START_MARKER` first (what a login prints before it is skipped), runs
  the script under a watchdog (:data:`SCRIPT_SECONDS`, on the host itself), cuts
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

import subprocess
import threading
from collections.abc import Callable
from typing import Any

from ..errors import OperationError, UsageError

START_MARKER = "CERTKIT-START"  # the first line of every script's output
EXIT_PREFIX = "CERTKIT-EXIT "  # the last line: the script's exit status
ERROR_PREFIX = "CERTKIT-ERROR "  # a step failed: the sentence that says why
REFUSED_PREFIX = "CERTKIT-REFUSED "  # the host's state refused before any change (exit 2)

MAX_OUTPUT = 4 << 20  # what certkit reads back from a host at most: its files are a few KiB
SCRIPT_SECONDS = 600  # how long one script may run on a host before it is stopped
BACK_SECONDS = 60.0  # how long dockerd may take to serve the new certificate after a restart

# Local processes (sh, ssh) get a little more room than the host-side cap and watchdog,
# so the host's own cut is what is normally seen: these catch a host that ignores them.
_SLACK_BYTES = 64 << 10
_SLACK_SECONDS = 30

# rc, stdout, stderr of ``sh -s`` run on a host with the script on standard input.
Transport = Callable[[str], tuple[int, str, str]]


def wrap(script: str, *, seconds: int = SCRIPT_SECONDS, cap: int = MAX_OUTPUT) -> str:
    """``script`` framed for any host: start marker, watchdog, output cap, exit line.

    The script runs in a subshell (its ``exit`` ends only it) with standard
    input from /dev/null; the watchdog sends it SIGTERM after ``seconds`` (the
    write script traps it and restores the host), and its own ``sleep`` is
    stopped with it, so nothing is left running on the host.
    """
    return (
        f"echo {START_MARKER}\n"
        "certkit_body() {\n:\n"
        f"{script}\n"
        "}\n"
        "certkit_run() {\n"
        "  ( certkit_body ) & b=$!\n"
        f"  {{ sleep {seconds} & s=$!; trap 'kill $s 2>/dev/null; exit 0' TERM; wait $s; "
        "kill -TERM $b 2>/dev/null; } </dev/null >/dev/null 2>&1 &\n"
        "  d=$!\n"
        "  wait $b; rc=$?\n"
        "  kill -TERM $d 2>/dev/null\n"
        f'  echo "{EXIT_PREFIX}$rc"\n'
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
    """The one sentence for a script that did not finish within the time limit."""
    return OperationError(
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
        raise OperationError(
            f"The step on {where} stopped before it finished (exit {rc}): "
            f"{last_line(err) or 'no message'}; check the files there."
        )
    status = lines.pop()[len(EXIT_PREFIX) :].strip()
    code = int(status) if status.isdigit() else 1
    if code == 0:
        return lines
    refusal = [line[len(REFUSED_PREFIX) :] for line in lines if line.startswith(REFUSED_PREFIX)]
    if refusal:
        raise UsageError(refusal[-1])
    reported = [line[len(ERROR_PREFIX) :] for line in lines if line.startswith(ERROR_PREFIX)]
    if reported:
        raise OperationError(reported[-1])
    if code == 143:  # SIGTERM from the watchdog, nothing trapped it
        raise timed_out(where)
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


class OutputTooLarge(Exception):
    """The process wrote more than the cap allows (it was killed)."""


def run_capped(
    argv: list[str],
    stdin: bytes,
    timeout: float = SCRIPT_SECONDS + _SLACK_SECONDS,
    cap: int = MAX_OUTPUT + _SLACK_BYTES,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` feeding ``stdin``; its stdout and stderr are each read up to ``cap`` bytes.

    Beyond the cap the process is killed and :class:`OutputTooLarge` raised;
    beyond ``timeout`` it is killed and :class:`subprocess.TimeoutExpired`
    raised: a host streaming without end cannot make certkit grow or wait
    without end.
    """
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
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


def local_sh(script: str) -> tuple[int, str, str]:
    """The local transport: ``sh -s`` on this machine (as certkit's own user)."""
    done = run_capped(["env", "LC_ALL=C", "sh", "-s"], script.encode())
    return (
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )
