"""The two kinds of failure certkit reports to users.

Every error a user can cause or meet is one of these, carrying one clear
sentence (what failed and what to do).  The CLI turns them into a message on
stderr and an exit code; anything else escaping is a bug and keeps its
traceback.
"""

from __future__ import annotations


class CertkitError(Exception):
    """Base class: a message for the user and the exit code to use."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CertkitError):
    """Bad input: an invalid name, an unreadable file, a refused action (exit 2)."""

    exit_code = 2


class PassphraseError(UsageError):
    """The CA key's passphrase is missing or wrong (exit 2)."""


class OperationError(CertkitError):
    """The input was fine but the operation failed (exit 1)."""

    exit_code = 1
