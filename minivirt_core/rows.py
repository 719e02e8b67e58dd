"""What a row of the image, VM and remote tables shows, column by column: one presentation
that ``miv images``/``ps``/``remote list`` and the dashboard's panes both render, so their
columns, order and wording cannot drift. Plain text only; light to import (``miv images``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .fsutil import human_size

if TYPE_CHECKING:
    from .images import Image, TagChange
    from .remotes import Remote
    from .vmconfig import VmStatus

IMAGE_COLUMNS = ("IMAGE ID", "TAGS", "ARCH", "SIZE", "CREATED")
WARM_COLUMN = "WARM"  # after IMAGE_COLUMNS: how many warm states an image has (`miv run` resumes those)
VM_COLUMNS = ("NAME", "STATE", "IMAGE", "SSH", "PORTS", "MEM", "CPUS", "UPTIME")
REMOTE_COLUMNS = ("NAME", "KIND", "URL")
NO_TAGS = "<none>"


def ago(timestamp: float, now: float | None = None) -> str:
    """``3 days ago``-style age of a timestamp."""
    seconds = max(0, (now or time.time()) - timestamp)
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600),
                       ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def duration(seconds: float) -> str:
    """``1h02m``/``3m05s``/``12s``."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def home_short(text: str) -> str:
    """A path or ``file://`` URL with the home folder written ``~`` (``~/.local/state/minivirt``)."""
    from pathlib import Path

    home = str(Path.home()).rstrip("/")
    for prefix in ("", "file://"):
        if home and (text == prefix + home or text.startswith(prefix + home + "/")):
            return prefix + "~" + text[len(prefix + home):]
    return text


def vm_state(status: VmStatus) -> str:
    """A VM's state for a table: ``running``, ``stopped``, or ``broken (why)``."""
    if status.state == "broken" and status.reason:
        return f"{status.state} ({status.reason})"
    return status.state


def image_row(image: Image, now: float | None = None) -> tuple[str, ...]:
    """The cells of :data:`IMAGE_COLUMNS` for one image."""
    return (image.short_id, " ".join(image.tags) or NO_TAGS, image.arch, human_size(image.size),
            ago(image.created, now))


def warm_cell(count: int | None) -> str:
    """The :data:`WARM_COLUMN` cell: how many warm states an image has, ``-`` for none."""
    return str(count) if count else "-"


def vm_row(vm: VmStatus) -> tuple[str, ...]:
    """The cells of :data:`VM_COLUMNS` for one VM; its image as it was named at creation
    (``tiny``, or ``tiny@3f2a1b0c9d8e`` once that tag has moved)."""
    c = vm.config
    return (
        vm.name, vm_state(vm), vm.image_label or "-", str(vm.ssh_port or "-"),
        ",".join(str(p) for p in c.ports) if c and c.ports else "-",
        f"{c.memory_mb}M" if c else "-", str(c.cpus) if c else "-",
        duration(vm.uptime) if vm.uptime is not None else "-",
    )


def remote_row(remote: Remote) -> tuple[str, ...]:
    """The cells of :data:`REMOTE_COLUMNS` for one remote."""
    return (remote.name, remote.kind, home_short(remote.url))


def tag_moves(changes: Iterable[TagChange]) -> list[str]:
    """One line per tag that moved off another image: ``tag tiny moved from 3f2a… to 9c1b…``."""
    return [f"tag {c.tag} moved from {c.previous_id[:12]} to {c.image_id[:12]}"
            for c in changes if c.previous_id]


def stop_message(name: str, outcome: str) -> str:
    """What :meth:`~.vms.VmManager.stop` did, in words: ``stopped web``, ``stopped web
    (forced: …)`` or ``web was already stopped``."""
    from .vmconfig import STOP_FORCED, STOP_NOT_RUNNING

    if outcome == STOP_NOT_RUNNING:
        return f"{name} was already stopped"
    if outcome == STOP_FORCED:
        return f"stopped {name} (forced: it did not power off in time)"
    return f"stopped {name}"


def kill_message(name: str, was_running: bool) -> str:
    """What :meth:`~.vms.VmManager.kill` did, in words."""
    return f"killed {name}" if was_running else f"{name} was already stopped"
