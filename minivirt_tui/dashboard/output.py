"""The output area: tabs for the events log, each build or transfer, each console."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Log, ProgressBar
from textual.worker import Worker

LOG_LINES = 5000
# Terminal control sequences (CSI, OSC, two-byte escapes) and control characters other
# than newline and tab: a log shows text, not a terminal's drawing commands.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement, ESC[6n
    r"|\x1b\][^\x07\x1b]*(\x07|\x1b\\)"  # OSC: window titles
    r"|\x1b[()*+][0-9A-Za-z]"  # charset selection
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|[\x00-\x08\x0b-\x1f\x7f]"  # control characters but \t and \n
)


def plain_text(text: str) -> str:
    """``text`` without terminal control sequences; CR LF becomes LF."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


class EventsLog(Log):
    """What was done and what failed, with times."""

    def __init__(self, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(max_lines=LOG_LINES, id=id, auto_scroll=True)
        self.clock = clock

    def record(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        self.write_line(f"{stamp}  {text}")


class JobView(Vertical):
    """A long operation: a status line, a progress bar, and its live output. Once it has
    finished, the bar is full (whatever the last progress report said) and stays so."""
    DEFAULT_CSS = """
    JobView { height: 1fr; }
    JobView > .job-status { height: 1; padding: 0 1; }
    JobView > ProgressBar { height: 1; padding: 0 1; }
    JobView > Log { height: 1fr; }
    """

    def __init__(self, title: str, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.started = time.monotonic()
        self.status_text = "starting"
        self.worker: Worker[Any] | None = None
        self.finished = False
        self.outcome = ""  # done, failed or cancelled, once finished
        self._pending: list[str] = []
        self._progress: tuple[float, float | None] | None = None
        self._ready = False  # its widgets exist (is_mounted turns true only after on_mount)

    def compose(self) -> ComposeResult:
        yield Label(self.title, classes="job-status")
        yield ProgressBar(total=None, show_eta=True)
        yield Log(max_lines=LOG_LINES, auto_scroll=True)

    def on_mount(self) -> None:
        # Output may arrive many times a second: write it in batches. State set before
        # the widgets were mounted (the job starts at once) is applied now.
        self._ready = True
        self.set_interval(1 / 30, self._flush)
        self.set_interval(1, self._refresh_status)
        self._refresh_status()
        if self._progress is not None:
            self.query_one(ProgressBar).update(total=self._progress[1], progress=self._progress[0])
        if self.finished:
            self._show_finished()

    def on_unmount(self) -> None:
        self._ready = False

    def write(self, text: str) -> None:
        """Add output (console bytes decoded as text; control sequences are dropped)."""
        self._pending.append(plain_text(text))

    def _flush(self) -> None:
        if self._pending and self._ready:
            self.query_one(Log).write("".join(self._pending))
            self._pending.clear()

    def set_status(self, text: str) -> None:
        self.status_text = text
        self._refresh_status()

    def _refresh_status(self) -> None:
        if not self._ready:
            return
        elapsed = int(time.monotonic() - self.started)
        suffix = "" if self.finished else f" ({elapsed // 60}:{elapsed % 60:02d}, ^x cancels)"
        self.query_one(".job-status", Label).update(f"{self.title}: {self.status_text}{suffix}")

    def set_progress(self, done: float, total: float | None) -> None:
        if self.finished:
            return  # a report queued from a worker thread, arriving after the end
        self._progress = (done, total)
        if self._ready:
            self.query_one(ProgressBar).update(total=total, progress=done)

    def finish(self, text: str, outcome: str = "done") -> None:
        """The job ended (``outcome``: done, failed or cancelled): a full bar, no ETA."""
        self.finished = True
        self.outcome = outcome
        self.status_text = text
        if self._ready:
            self._show_finished()

    def _show_finished(self) -> None:
        bar = self.query_one(ProgressBar)
        outcome = self.outcome
        if outcome == "done":
            total = bar.total or 1
            bar.update(total=total, progress=total)
        elif bar.total is None:
            bar.update(total=1, progress=0)  # stop the indeterminate animation
        bar.query("#eta").remove()
        self.set_status(self.status_text)
        self._flush()

    def cancel(self) -> None:
        """Cancel the job (its worker)."""
        if self.worker is not None and not self.finished:
            self.worker.cancel()
            self.set_status("cancelling")
