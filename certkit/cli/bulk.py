"""``certkit issue-client`` (one, ``--count N`` or ``--from-file``), and the
rendering of ``certkit issue-server --from-file`` (called from :mod:`.server`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from ..defaults import CLIENT_DAYS
from .output import CA_OPTION, JSON_OPTION, KEY_TYPE_OPTION, emit
from .root import app

if TYPE_CHECKING:
    from ..bulk import BulkResult

# Below this many certificates a run is over before a bar would be worth drawing.
_PROGRESS_MIN = 50


@contextmanager
def _progress(total: int, json_out: bool, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal (never in --json mode)."""
    if json_out or total < _PROGRESS_MIN or not sys.stderr.isatty():
        yield None
        return
    with typer.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _until(result: BulkResult) -> str:
    return min(i.not_after for i in result.items)[:10]


@app.command("issue-client")
def issue_client(
    name: str = typer.Argument(None, help="The client's name (its certificate's CN)."),
    out: str = typer.Option(
        ..., "--out", help="Directory for the files (one subdirectory per client when many)."
    ),
    count: int = typer.Option(None, "--count", help="Issue N clients named PREFIX-1..PREFIX-N."),
    prefix: str = typer.Option("client", "--prefix", help="Name prefix for --count."),
    from_file: str = typer.Option(
        None, "--from-file", help="File with one client name per line (# comments allowed)."
    ),
    days: int = typer.Option(CLIENT_DAYS, "--days", help="Validity in days."),
    key_type: str = KEY_TYPE_OPTION,
    ca: str = CA_OPTION,
    force: bool = typer.Option(False, "--force", help="Replace existing files in --out."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Client certificates (EKU clientAuth) as plain files, without a docker context.

    Each client gets ca.pem, cert.pem and key.pem (0600): the names DOCKER_CERT_PATH
    expects. Many clients are issued in one run with one inventory update.

    Example: certkit issue-client --count 100 --prefix runner --out ./runners
    """
    from .. import bulk
    from ..errors import UsageError

    chosen = [x for x in (name, count, from_file) if x is not None]
    if len(chosen) != 1:
        raise UsageError("Give exactly one of NAME, --count N or --from-file FILE.")
    if name is not None:
        names = [name]
    elif count is not None:
        names = bulk.numbered_names(prefix, count)
    else:
        names = bulk.read_client_names(from_file)
    start = time.perf_counter()
    with _progress(len(names), json_out, "Issuing client certificates") as progress:
        result = bulk.issue_clients(
            names,
            out=out,
            ca=ca,
            days=days,
            key_type=key_type,
            flat=name is not None,
            force=force,
            progress=progress,
        )
    elapsed = time.perf_counter() - start
    first = result.items[0]
    next_step = (
        f"Next: DOCKER_CERT_PATH={first.dir} DOCKER_TLS_VERIFY=1 docker -H tcp://HOST:2376 version"
    )
    if name is not None:
        lines = [
            f"Issued client certificate {first.name!r} ({result.key_type}) from CA {ca!r},"
            f" valid until {_until(result)}.",
            f"Files: {first.dir}/ca.pem, cert.pem, key.pem (key 0600)",
        ]
    else:
        lines = [
            f"Issued {_count(len(result.items), 'client')} ({result.key_type}) from CA {ca!r}"
            f" in {elapsed:.2f} s, valid until {_until(result)}.",
            f"Files: {result.out}/NAME/ca.pem, cert.pem, key.pem (keys 0600) for"
            f" {first.name} ... {result.items[-1].name}",
        ]
    emit(json_out, result.to_json(), [*lines, next_step])


def issue_servers_from_file(
    path: str,
    *,
    out: str | None,
    ca: str,
    days: int,
    key_type: str,
    force: bool,
    json_out: bool,
) -> None:
    """``certkit issue-server --from-file HOSTS``: issue every host's certificate and report."""
    from .. import bulk

    entries = bulk.read_hosts(path)
    start = time.perf_counter()
    with _progress(len(entries), json_out, "Issuing server certificates") as progress:
        result = bulk.issue_servers(
            entries, out=out, ca=ca, days=days, key_type=key_type, force=force, progress=progress
        )
    elapsed = time.perf_counter() - start
    lines = [
        f"Issued {_count(len(result.items), 'server')} ({result.key_type}) from CA {ca!r}"
        f" in {elapsed:.2f} s, valid until {_until(result)}."
    ]
    if result.out:
        lines.append(
            f"Files: {result.out}/HOST/ca.pem, server-cert.pem, server-key.pem (keys 0600)"
        )
        lines.append(
            "Next: copy each HOST directory to its host and point daemon.json's"
            " tlscacert, tlscert and tlskey at those three files"
        )
    else:
        lines.append("The certificates are in the store only; pass --out DIR to get the files.")
        lines.append("Next: certkit list --kind server")
    emit(json_out, result.to_json(), lines)


def _count(n: int, kind: str) -> str:
    """``1 client certificate``, ``2 client certificates``."""
    return f"{n} {kind} certificate{'' if n == 1 else 's'}"
