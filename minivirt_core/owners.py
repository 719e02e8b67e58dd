"""The owner of a throw-away VM: the process that made it and will destroy it.

``miv run``, builds and their tests make VMs that live only as long as the ``miv``
process that made them. That process is recorded in the VM's config as its pid and its
start time (from ``/proc/<pid>/stat``), so a pid reused by another process is not
mistaken for it. When the owner is gone without cleaning up (SIGKILL, a crash, a power
cut), the VM is an orphan: ``fsck`` reports it and ``prune`` removes it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, TypeGuard

from .errors import InvalidInput


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (Linux); None if it is gone
    (or has exited and waits to be reaped), or on systems without ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    try:
        return None if fields[0] in (b"Z", b"X") else int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Owner:
    """A process, told apart from a later one with the same pid by its start time."""

    pid: int
    started: int | None = None  # clock ticks after boot; None where /proc is missing

    @classmethod
    def current(cls) -> Owner:
        """This process."""
        pid = os.getpid()
        return cls(pid, process_start_time(pid))

    @classmethod
    def from_json(cls, value: object) -> Owner:
        """The ``owner`` entry of a VM config; :class:`InvalidInput` when malformed."""
        if isinstance(value, dict):
            pid, started = value.get("pid"), value.get("started")
            if _is_int(pid) and pid > 0 and (started is None or (_is_int(started) and started >= 0)):
                return cls(pid, started)
        raise InvalidInput("not an owner: it needs a pid and the process's start time")

    def as_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "started": self.started}

    def alive(self) -> bool:
        """True while the owning process runs (a reused pid does not count)."""
        if sys.platform.startswith("linux") and os.path.isdir("/proc/self"):
            started = process_start_time(self.pid)
            return started is not None and (self.started is None or started == self.started)
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __str__(self) -> str:
        return f"pid {self.pid}"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
