"""A VM's serial log (``serial.log``, appended to by QEMU across boots): when each boot
began and ended in it, and where to start reading for ``miv logs --tail N`` and ``--since TIME``.

The log holds bytes, not timed lines. What is known is when each boot began and when miv
stopped it (``serial-boots``: one ``<unix time> <log offset> start|stop`` line each) and
when the log was last written (its mtime). So ``--since TIME`` never misses what was
printed after TIME, but may include earlier lines of the boot that was running at TIME:
it reads from the start of that boot (after the last stop before TIME when none was),
and prints nothing when the log was not written since TIME.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Iterator
from pathlib import Path

from . import layout
from .errors import InvalidInput
from .fsutil import atomic_write_text

MAX_EVENTS = 400  # starts and stops remembered
START = "start"
STOP = "stop"
_CHUNK = 1 << 16
_DURATION_RE = re.compile(r"([0-9]{1,9})\s*(s|m|h|d|w)", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def record(vm_dir: Path, event: str) -> None:
    """Note that a boot begins (:data:`START`, as QEMU starts) or ends (:data:`STOP`, once
    miv has stopped it) now, at the log's current end. The VM's lock is held."""
    try:
        offset = (vm_dir / layout.VM_SERIAL_LOG).stat().st_size
    except FileNotFoundError:
        offset = 0
    lines = [f"{t:.3f} {o} {e}\n" for t, o, e in events(vm_dir)[-(MAX_EVENTS - 1):]]
    try:
        atomic_write_text(vm_dir / layout.VM_SERIAL_BOOTS, "".join(lines) + f"{time.time():.3f} {offset} {event}\n")
    except OSError:
        pass  # a full disk: `--since` then reads more than it could have, nothing worse


def events(vm_dir: Path) -> list[tuple[float, int, str]]:
    """``(unix time, log offset, start|stop)`` of each recorded start and stop, oldest
    first (malformed lines are skipped: the file is only a hint)."""
    try:
        with open(vm_dir / layout.VM_SERIAL_BOOTS, "rb") as f:
            text = f.read(64 * MAX_EVENTS).decode("ascii", "replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[2] not in (START, STOP):
            continue
        try:
            found.append((float(parts[0]), int(parts[1]), parts[2]))
        except ValueError:
            continue
    return found


def parse_since(text: str, now: float | None = None) -> float:
    """A point in time from ``10m``/``2h``/``3d``/``90s`` (that long ago), an ISO 8601 date
    and time (``2026-11-27T02:00``, local time unless it names its zone), or unix seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    if match := _DURATION_RE.fullmatch(text):
        return now - int(match.group(1)) * _UNITS[match.group(2).lower()]
    if re.fullmatch(r"[0-9]{1,12}(\.[0-9]+)?", text):
        return float(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"invalid time {text!r}: write e.g. 10m, 2h, 3d, or 2026-11-27T02:00") from None
    return moment.timestamp()  # naive: local time


def start_offset(vm_dir: Path, tail: int | None = None, since: float | None = None) -> int:
    """Where to start reading the serial log: at the last start or stop recorded at or
    before ``since`` (the log's end when nothing was written since), then no earlier than
    the start of its last ``tail`` lines."""
    path = vm_dir / layout.VM_SERIAL_LOG
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    start = 0
    if since is not None:
        if stat.st_mtime < since:
            return stat.st_size  # not a byte written since
        for when, offset, _ in events(vm_dir):
            if when <= since:
                start = offset
        start = min(start, stat.st_size)
    if tail is not None:
        start = max(start, _last_lines(path, stat.st_size, tail))
    return start


def _last_lines(path: Path, size: int, count: int) -> int:
    """The offset where the last ``count`` lines of the file begin (a last line without
    its newline counts as a line)."""
    if count <= 0:
        return size
    with open(path, "rb") as f:
        end = size
        f.seek(max(0, end - 1))
        needed = count + 1 if f.read(1) == b"\n" else count  # the final newline ends the last line
        pos = end
        while pos > 0:
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            found = block.count(b"\n")
            if found >= needed:
                index = len(block)
                for _ in range(needed):
                    index = block.rindex(b"\n", 0, index)
                return pos + index + 1
            needed -= found
    return 0


def read_chunks(vm_dir: Path, offset: int) -> Iterator[bytes]:
    """The serial log from ``offset`` to its end as it is now, in chunks."""
    try:
        with open(vm_dir / layout.VM_SERIAL_LOG, "rb") as f:
            f.seek(offset)
            while chunk := f.read(_CHUNK):
                yield chunk
    except FileNotFoundError:
        return
