"""A concurrent disk writer: the load a busy machine puts on the disk while certkit runs.

``python writer.py DIR [MiB/s]`` writes 1 MiB blocks to a file in ``DIR`` at
that rate (default 32 MiB/s: a build, a log-heavy service, a database's
checkpoints; not a disk saturated on purpose) and fsyncs every 8 MiB, round
and round over 128 MiB, until it is sent SIGTERM; then it
writes ``DIR/writer.json`` (MiB written, seconds, MiB/s).  The clients group
runs it for all its rounds, so each issuance's syncfs and the inventory's
fsyncs share the disk with it, as they would next to a build or a database.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

BLOCK = 1 << 20
SYNC_EVERY = 8
WRAP = 128


def main() -> None:
    d = Path(sys.argv[1])
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 32.0
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    block = os.urandom(BLOCK)
    start, written = time.monotonic(), 0
    fd = os.open(d / "writer.data", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while not stop:
            os.pwrite(fd, block, (written % WRAP) * BLOCK)
            written += 1
            if written % SYNC_EVERY == 0:
                os.fsync(fd)
                ahead = written / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        os.close(fd)
        os.unlink(d / "writer.data")
        took = time.monotonic() - start
        report = {"mib": written, "seconds": round(took, 1), "mib_per_s": round(written / took, 1)}
        (d / "writer.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
