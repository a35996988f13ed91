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

# ---------------------------------------------------------------- renewal policy
# One rule decides when a certificate wants attention, read by `status`, `verify`,
# `doctor`, `renew --expiring-within`, the metrics and the fleet.

# Days before notAfter from which a certificate is "expiring" and renewal replaces it.
RENEW_WINDOW_DAYS = 30.0
# The fraction of a certificate's lifetime after which it is due for automatic
# renewal (step-ca and cert-manager renew at 2/3 of the lifetime).
RENEW_AT_FRACTION = 2 / 3


def within_window(days_left: float, window_days: float = RENEW_WINDOW_DAYS) -> bool:
    """True when a certificate with ``days_left`` is inside the renewal window.

    The comparison is ``<=`` everywhere: a certificate with exactly the window left
    is due (a cron job run on that day renews it, rather than the day after).
    """
    return days_left <= window_days


def renew_after_days(lifetime_days: float, fraction: float = RENEW_AT_FRACTION) -> float:
    """Days after notBefore from which a certificate of ``lifetime_days`` is due."""
    return lifetime_days * fraction


# ---------------------------------------------------------------- install defaults
DOCKER_TLS_PORT = 2376  # Docker's registered port for the API over TLS (2375: plain)
DEFAULT_LISTEN = "0.0.0.0"
INSTALL_METHODS: tuple[str, ...] = ("auto", "systemd", "daemon-json", "socket")
DEFAULT_INSTALL_METHOD = "auto"
