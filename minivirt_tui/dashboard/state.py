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
from minivirt_core.warm import states_by_image, warm_dir

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
    warm: dict[str, int] = field(default_factory=dict)  # {image id: its warm states}


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


def _mtime(path: Any) -> int:
    try:
        return int(os.stat(path).st_mtime_ns)
    except OSError:
        return 0


class StateReader:
    """Reads what the panes show, cheaply enough to do every second.

    Images are immutable and their tags live in the images folder, so the image list
    is read again only when that folder changes (and every 30 s, for the ages shown);
    remotes only when ``remotes.json`` changes, warm states only when their folder does.
    VM states are derived on every read.
    """

    IMAGES_MAX_AGE = 30.0

    def __init__(self, miv: Any) -> None:
        self.miv = miv
        self.sampler = StatsSampler()
        self._images: tuple[Image, ...] = ()
        self._images_key: tuple[int, float] | None = None
        self._remotes: tuple[Remote, ...] = ()
        self._remotes_key: int | None = None
        self._warm: dict[str, int] = {}
        self._warm_key: int | None = None

    def read(self) -> Snapshot:
        """Everything the panes show (blocking: call from a thread)."""
        db = self.miv.db
        now = time.monotonic()
        key = _mtime(db.images_dir)
        if self._images_key is None or self._images_key[0] != key or now - self._images_key[1] > self.IMAGES_MAX_AGE:
            self._images = tuple(self.miv.images.list())
            self._images_key = (key, now)
        vms = tuple(self.miv.vms.list(tags={t: i.id for i in self._images for t in i.tags}))
        remotes_key = _mtime(db.remotes_file)
        if remotes_key != self._remotes_key:
            self._remotes = tuple(self.miv.remotes.list())
            self._remotes_key = remotes_key
        warm_key = _mtime(warm_dir(db))  # one stat; its listing only when it changed
        if warm_key != self._warm_key:
            self._warm = states_by_image(db)
            self._warm_key = warm_key
        stats = {v.name: self.sampler.sample(v.pid) for v in vms if v.pid}
        return Snapshot(self._images, vms, self._remotes, stats, time.time(), self._warm)
