"""Rendering for the CLI: tables, messages and progress, plain when not on a terminal.

rich is imported only when output goes to a terminal, keeping piped commands and
``miv --help`` fast.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

import click

if TYPE_CHECKING:
    from minivirt_core.vmconfig import VmStatus


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO | None = None) -> None:
    """Print aligned columns (the last column is not padded)."""
    out = out or sys.stdout
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    out.write("\n".join(lines) + "\n")


def home_short(text: str) -> str:
    """A path or ``file://`` URL with the home folder written ``~`` (``~/.local/state/minivirt``)."""
    from pathlib import Path

    home = str(Path.home()).rstrip("/")
    for prefix in ("", "file://"):
        if home and (text == prefix + home or text.startswith(prefix + home + "/")):
            return prefix + "~" + text[len(prefix + home):]
    return text


def ago(timestamp: float, now: float | None = None) -> str:
    """``3 days ago``-style age of a timestamp."""
    seconds = max(0, (now or time.time()) - timestamp)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
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


def vm_state(status: VmStatus) -> str:
    """A VM's state for a table: ``running``, ``stopped``, or ``broken (why)``."""
    if status.state == "broken" and status.reason:
        return f"{status.state} ({status.reason})"
    return status.state


def info(message: str) -> None:
    """A status line on stderr (stdout stays for data)."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    click.echo(click.style("warning: ", fg="yellow", bold=True) + message, err=True)


def error(message: str) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)


@contextmanager
def progress(description: str, total: int | None = None, unit: str = "bytes") -> Iterator[Callable[[Any], None]]:
    """A callback for core ``Progress`` events: a rich bar on a terminal, else a line every 5 s."""
    from minivirt_core.fsutil import human_size

    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        with bar:
            task = bar.add_task(description, total=total)

            def update(event: Any) -> None:
                bar.update(task, completed=event.done, total=event.total or total)

            yield update
        return

    start = time.monotonic()
    last = [start]

    def report(event: Any) -> None:
        now = time.monotonic()
        if now - last[0] < 5:
            return
        last[0] = now
        rate = event.done / max(now - start, 1e-6)
        line = f"{description}: {human_size(event.done)}"
        if event.total:
            line += f" of {human_size(event.total)} ({100 * event.done // max(event.total, 1)}%)"
            if rate > 0:
                line += f", {duration((event.total - event.done) / rate)} left"
        line += f", {human_size(rate)}/s"
        info(line)

    yield report
