"""Exit codes of ``miv``, in one place."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # a failure the user can act on (a MinivirtError)
    USAGE = 2  # bad command line (click's own code)
    INTERRUPTED = 130  # Ctrl-C
