"""``certkit ca backup``: one CA folder as a tar file, with a consistent copy of its inventory.

The inventory database is copied with SQLite's backup API (a consistent
snapshot even while another certkit process writes to it); every other file
of the CA folder (``ca.pem``, ``ca-key.pem``, ``issued/``, a rotation's
``previous/`` and ``retired/``) goes in as it is, with its mode.  The tar file
holds the CA key, so it is written 0600 (atomically: a temporary file renamed
into place) and an existing file is only replaced with ``force``.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import files, inventorydb
from .store import CAStore

_SKIPPED = (
    ".lock",
    inventorydb.DB_NAME,
    f"{inventorydb.DB_NAME}-wal",
    f"{inventorydb.DB_NAME}-shm",
)


@dataclass
class Backup:
    ca: str
    path: str
    records: int
    key_encrypted: bool
    key_on_token: bool  # only the PKCS#11 URI is in the file (ca-key.uri)
    size: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def backup_ca(store: CAStore, out: Path, *, force: bool = False) -> Backup:
    """Write ``store``'s CA folder to the tar file ``out`` (gzip for .tar.gz / .tgz)."""
    store.require()
    out = files.check_output_file(out, force=force)  # the rule of every --out: no link, --force
    store.inventory().close()  # migrates an inventory.json first (that takes the lock too)
    gzip = out.name.endswith((".tar.gz", ".tgz"))
    with store.lock(), tempfile.TemporaryDirectory(prefix="certkit-backup-") as tmp:
        snapshot = Path(tmp) / inventorydb.DB_NAME
        inventorydb.backup_to(store.dir, snapshot)
        fd, staging = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                with tarfile.open(fileobj=f, mode="w:gz" if gzip else "w") as tar:
                    for path in sorted(store.dir.rglob("*")):
                        rel = path.relative_to(store.dir)
                        if str(rel) not in _SKIPPED:
                            tar.add(path, arcname=f"{store.name}/{rel}", recursive=False)
                    tar.add(snapshot, arcname=f"{store.name}/{inventorydb.DB_NAME}")
                f.flush()
                os.fsync(f.fileno())
            os.replace(staging, out)
            files.fsync_dir(out.parent)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        records = inventorydb.reader(Path(tmp)).count()
    on_token = store.key_uri() is not None
    size = out.stat().st_size
    return Backup(store.name, str(out), records, store.key_encrypted(), on_token, size)
