"""The one error hierarchy of minivirt.

Every error a person can cause or fix is a :class:`MinivirtError` whose message says
what went wrong and what to do. Front ends print the message and exit with
:attr:`MinivirtError.exit_code`; they never show a traceback for these.
"""

from __future__ import annotations


class MinivirtError(Exception):
    """Base of every error minivirt reports to a person."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n{self.hint}"
        return self.message


class NotFound(MinivirtError):
    """An image, tag, VM, remote or file that was named does not exist."""


class InvalidName(MinivirtError):
    """A tag, VM or remote name that does not follow the naming rules."""


class InvalidInput(MinivirtError):
    """Input (an archive, a recipe, a setting) that is malformed or unsafe."""


class Conflict(MinivirtError):
    """The operation clashes with the current state (VM running, name taken, port in use)."""


class DatabaseError(MinivirtError):
    """The database folder cannot be used (unreadable, not a database)."""


class ExternalError(MinivirtError):
    """A program or service minivirt relies on failed (QEMU, qemu-img, SSH, a remote)."""


class Timeout(MinivirtError):
    """Something did not happen in the time allowed (boot, SSH, a console pattern)."""
