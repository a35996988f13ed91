"""The CA passphrase and the PKCS#11 PIN, handed to Ansible's workers without touching disk.

ansible-runner writes the environment it starts ``ansible-playbook`` with
into its private data directory (``env/envvars`` and
``artifacts/*/command``, the whole ``os.environ`` included), and a killed run
leaves them behind.  So certkit never lets a secret into that environment:

* :func:`runner_environment` takes :data:`SECRET_VARS` out of ``os.environ``
  for the length of the run (ansible-runner copies ``os.environ`` when it
  builds its configuration);
* :class:`SecretServer` serves them, for that length only, on a Unix socket in
  a fresh 0700 directory; the socket's path is the only thing in the
  environment (:data:`SOCKET_ENV`), and the server answers only peers of its
  own user (``SO_PEERCRED``), which could read certkit's memory anyway;
* in the worker, :func:`receive` asks the socket and puts the secrets into
  that process's environment (memory), where :func:`certkit.store.get_passphrase`
  and :func:`certkit.pkcs11.read_pin` find them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError
from ..pkcs11 import PIN_ENV
from ..store import PASSPHRASE_ENV
from ..untrusted import loads_json

SOCKET_ENV = "CERTKIT_SECRETS_SOCKET"
SECRET_VARS = (PASSPHRASE_ENV, PIN_ENV)
_MAX = 1 << 16  # a passphrase and a PIN: far less than a pipe's buffer


class SecretServer:
    """Serves ``secrets`` (name -> value) to processes of this user while open."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = json.dumps(secrets).encode()
        self.dir = Path(tempfile.mkdtemp(prefix="certkit-secrets-"))  # 0700
        self.path = self.dir / "s"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            with conn:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                _pid, uid, _gid = struct.unpack("3i", creds)
                if uid == os.getuid():
                    with contextlib.suppress(OSError):
                        conn.sendall(self.secrets)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def runner_environment(secrets: dict[str, str]) -> Iterator[dict[str, str]]:
    """For the length of the block: no secret in ``os.environ``, and the extra variables
    (the socket's path) for ansible-runner's ``envvars``; yields those variables."""
    taken = {k: os.environ.pop(k) for k in SECRET_VARS if k in os.environ}
    server = SecretServer({**taken, **secrets}) if (secrets or taken) else None
    try:
        yield {SOCKET_ENV: str(server.path)} if server else {}
    finally:
        if server:
            server.close()
        os.environ.update(taken)


def receive() -> None:
    """In an Ansible worker: fetch the secrets from :data:`SOCKET_ENV`'s socket into this
    process's environment (memory only); nothing when the run passed none."""
    path = os.environ.get(SOCKET_ENV)
    if not path or all(os.environ.get(k) for k in SECRET_VARS):
        return
    data = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            while chunk := s.recv(4096):
                data += chunk
                if len(data) > _MAX:
                    break
        got = loads_json(data)
    except (OSError, ValueError) as e:
        raise UsageError(
            f"The CA's secrets could not be read from certkit fleet's socket ({e}): "
            "run this playbook through `certkit fleet apply`, or set them in the environment."
        ) from None
    for key in SECRET_VARS:
        value = got.get(key) if isinstance(got, dict) else None
        if isinstance(value, str) and value and not os.environ.get(key):
            os.environ[key] = value
