"""Rendering for the CLI: tables, messages and progress, plain when not on a terminal.

rich is imported only when output goes to a terminal, keeping piped commands and
``miv --help`` fast.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import click

# The cells of the tables, shared with the dashboard, live in the core.
from minivirt_core.rows import ago, duration, home_short, vm_state

__all__ = ["StatusLine", "ago", "duration", "error", "home_short", "info", "progress", "table", "vm_state",
           "warn"]


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


def info(message: str) -> None:
    """A status line on stderr (stdout stays for data)."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    click.echo(click.style("warning: ", fg="yellow", bold=True) + message, err=True)


def error(message: str, hint: str | None = None) -> None:
    """The one error format of ``miv``: ``error: what is wrong``, then a line saying what to do."""
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    if hint:
        click.echo(hint, err=True)


class StatusLine:
    """A one-line status on stderr, redrawn with the seconds it has shown (``waiting for SSH
    (3s)``) and erased by :meth:`clear`: only when stderr is a terminal, so piped output
    gets nothing extra. Redrawn by :meth:`tick`, which the owner calls (or :meth:`ticking`)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.text: str | None = None
        self.since = time.monotonic()

    def set(self, text: str) -> None:
        self.text, self.since = text, time.monotonic()
        self.tick()

    def tick(self) -> None:
        if self.enabled and self.text is not None:
            import shutil

            line = f"{self.text} ({duration(time.monotonic() - self.since)})"
            width = shutil.get_terminal_size().columns - 1
            sys.stderr.write("\r\x1b[K" + line[:max(width, 10)])
            sys.stderr.flush()

    def clear(self) -> None:
        """Erase the line for good (the output that follows takes its place)."""
        if self.enabled and self.text is not None:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
        self.text = None

    async def ticking(self) -> None:
        """Redraw every half second until cancelled (run it as a task)."""
        import asyncio

        while True:
            await asyncio.sleep(0.5)
            self.tick()


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
