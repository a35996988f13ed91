"""certkit's defaults: key types and validities, in one place the CLI can import cheaply.

Nothing here imports cryptography, so ``certkit --help`` shows these values
without loading it.
"""

from __future__ import annotations

from typing import Literal, get_args

KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]
KEY_TYPES: tuple[str, ...] = get_args(KeyType)
# ECDSA P-256: fast to make and accepted everywhere Docker runs (RSA-4096 keys made
# docker:dind slow to start, docker-library/docker#401).
DEFAULT_KEY_TYPE: KeyType = "ec-p256"

# Validities, in days.  Leaves are renewed long before they end (`certkit renew
# --expiring-within`); docker-machine's fixed 1080 days broke machines unnoticed.
CA_DAYS = 3650
SERVER_DAYS = 825
CLIENT_DAYS = 365
CI_DAYS = 30  # CI secrets are short-lived: dockerd has no revocation
