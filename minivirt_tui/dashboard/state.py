"""One look at the database for the dashboard: images, VMs (with live CPU and memory of
their QEMU), remotes. Read on a worker thread every second; cheap file-system reads."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from minivirt_core.images import Image
from minivirt_core.remotes import Remote
from minivirt_core.vms import VmStatus

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class ProcStats:
    cpu_percent: float | None
    rss: int | None


@dataclass(frozen=True)
class Snapshot:
    images: tuple[Image, ...]
    vms: tuple[VmStatus, ...]
    remotes: tuple[Remote, ...]
    stats: dict[str, ProcStats] = field(default_factory=dict)
    taken: float = 0.0


class StatsSampler:
    """CPU % between two looks, from /proc/<pid>/stat (Linux; None elsewhere)."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, int]] = {}

    def sample(self, pid: int) -> ProcStats:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
            rss = int(fields[21]) * PAGE
        except (OSError, IndexError, ValueError):
            return ProcStats(None, None)
        now = time.monotonic()
        previous = self._last.get(pid)
        self._last[pid] = (now, ticks)
        if previous is None or now <= previous[0]:
            return ProcStats(None, rss)
        cpu = 100.0 * (ticks - previous[1]) / CLOCK_TICKS / (now - previous[0])
        return ProcStats(cpu, rss)


def take(miv: Any, sampler: StatsSampler) -> Snapshot:
    """Read everything the panes show (blocking: call from a thread)."""
    images = tuple(miv.images.list())
    vms = tuple(miv.vms.list())
    stats = {v.name: sampler.sample(v.pid) for v in vms if v.pid}
    return Snapshot(images, vms, tuple(miv.remotes.list()), stats, time.time())
