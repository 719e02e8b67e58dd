"""A real terminal on a VM's serial console: pyte emulates it, Textual draws it.

Bytes from the serial socket feed a pyte ``ByteStream`` (UTF-8 decoded incrementally)
into a screen that keeps rows scrolling off the top as scrollback; rows that changed are
redrawn on a 60 Hz tick, as cached ``Strip`` s. A flood of plain lines takes a fast path
that feeds pyte only what stays on screen, so the pane keeps up with ~1 MB/s. Keys go
to the VM; the guest's cursor-position queries (busybox's shell sends ``ESC[6n`` at
each prompt) are answered. On attach, recent output from the
serial log is shown first. When the VM stops the view says so and re-attaches when it
runs again (a reboot inside the guest keeps the connection). Ctrl-] gives focus back
to the dashboard; shift+PageUp/PageDown scroll back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyte
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import BindingsMap
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

LEAVE_KEY = "ctrl+right_square_bracket"
LEAVE_KEY_DISPLAY = "Ctrl-]"

_COLORS = {"brown": "yellow", "brightbrown": "bright_yellow", "default": None}
_KEYS = {
    "enter": "\r", "tab": "\t", "backspace": "\x7f", "escape": "\x1b", "delete": "\x1b[3~",
    "up": "\x1b[A", "down": "\x1b[B", "right": "\x1b[C", "left": "\x1b[D", "home": "\x1b[H", "end": "\x1b[F",
    "pageup": "\x1b[5~", "pagedown": "\x1b[6~", "insert": "\x1b[2~",
    "f1": "\x1bOP", "f2": "\x1bOQ", "f3": "\x1bOR", "f4": "\x1bOS", "f5": "\x1b[15~", "f6": "\x1b[17~",
    "f7": "\x1b[18~", "f8": "\x1b[19~", "f9": "\x1b[20~", "f10": "\x1b[21~", "shift+tab": "\x1b[Z",
}


def _color(name: str) -> str | None:
    if name in _COLORS:
        return _COLORS[name]
    if len(name) == 6 and all(c in "0123456789abcdefABCDEF" for c in name):
        return f"#{name}"
    return name.replace("bright", "bright_") if name.startswith("bright") else name


_STYLES: dict[tuple[Any, ...], Style] = {}


def _style(key: tuple[Any, ...] | None) -> Style:
    """The rich Style of a cell's attributes, made once per distinct combination."""
    assert key is not None
    style = _STYLES.get(key)
    if style is None:
        fg, bg, bold, italics, underscore, strike, reverse = key
        style = _STYLES[key] = Style(color=_color(fg), bgcolor=_color(bg), bold=bold, italic=italics,
                                     underline=underscore, strike=strike, reverse=reverse)
    return style


HISTORY = 3000
LOG_TAIL_BYTES = 256 * 1024  # of the serial log, shown on attach: more than HISTORY lines of a boot
# Bytes a "plain" chunk may hold: printable ASCII and CR LF (checked with bytes.translate).
_PLAIN = bytes(range(0x20, 0x7F)) + b"\r\n"


class _Screen(pyte.Screen):
    """pyte's screen, keeping rows that scroll off the top as scrollback, and sending its
    answers (cursor reports) back to the guest. (pyte's HistoryScreen does the same for
    scrollback but costs 3-4x the time per byte.)"""

    def __init__(self, columns: int, lines: int, reply: Callable[[str], None]) -> None:
        super().__init__(columns, lines)
        self._reply = reply
        self.history: deque[Any] = deque(maxlen=HISTORY)  # pyte rows, or plain str lines

    def write_process_input(self, data: str) -> None:
        self._reply(data)

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """As a terminal does: fewer rows move the top rows into scrollback (only as many
        as needed to keep the cursor's row; blank rows below it go first); more rows
        bring them back. pyte's own drops the top rows."""
        lines = lines or self.lines
        if lines < self.lines:
            excess = self.lines - lines
            below = self.lines - 1 - self.cursor.y  # rows under the cursor's
            blank_below = 0
            for y in range(self.lines - 1, self.cursor.y, -1):
                if any(ch.data.strip() for ch in self.buffer[y].values()):
                    break
                blank_below += 1
            drop_bottom = min(excess, blank_below, below)
            move_up = excess - drop_bottom
            if move_up:
                for y in range(move_up):
                    self.history.append(self.buffer[y])
                for y in range(self.lines):
                    if y + move_up < self.lines:
                        self.buffer[y] = self.buffer[y + move_up]
                    else:
                        self.buffer.pop(y, None)
                self.cursor.y -= move_up
            for y in range(lines, self.lines):
                self.buffer.pop(y, None)
            saved = (self.cursor.x, self.cursor.y)
            self.lines = lines  # so pyte's resize below drops nothing more
            super().resize(lines, columns)
            self.cursor.x, self.cursor.y = saved
        elif lines > self.lines and self.history:
            back = min(lines - self.lines, len(self.history))
            rows = [self.history.pop() for _ in range(back)][::-1]
            for y in range(self.lines - 1, -1, -1):
                self.buffer[y + back] = self.buffer[y]
            for y, row in enumerate(rows):
                self.buffer[y] = row if not isinstance(row, str) else self._row_of(row)
            self.cursor.y += back
            super().resize(lines, columns)
        else:
            super().resize(lines, columns)
        self.dirty.update(range(self.lines))

    def _row_of(self, text: str) -> Any:
        row: Any = pyte.screens.StaticDefaultDict(self.default_char)
        for x, ch in enumerate(text):
            row[x] = self.default_char._replace(data=ch)
        return row

    def index(self) -> None:
        top, bottom = self.margins or pyte.screens.Margins(0, self.lines - 1)
        if self.cursor.y == bottom and top == 0:
            self.history.append(self.buffer[0])  # pyte replaces row objects: keeping it is safe
        super().index()


class SerialTerminal(Widget, can_focus=True):
    """The serial console of VM ``vm_dir``, as a terminal."""

    DEFAULT_CSS = """
    SerialTerminal { width: 1fr; height: 1fr; background: black; color: #d0d0d0; }
    SerialTerminal:focus { border: none; }
    """

    class Left(Message):
        """The user pressed the leave key."""

    class StateChanged(Message, bubble=True):
        """Attached, detached (VM stopped) or re-attached."""

        def __init__(self, terminal: SerialTerminal, attached: bool, text: str) -> None:
            super().__init__()
            self.terminal = terminal
            self.attached = attached
            self.text = text

    def __init__(self, vm_name: str, vm_dir: Path, *, show_log: bool = True, reconnect: bool = True,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        from .actions import bindings  # the console's keys, declared with every other action

        self._bindings = BindingsMap.merge([self._bindings, BindingsMap(bindings("console"))])
        self.vm_name = vm_name
        self.vm_dir = vm_dir
        self.show_log = show_log
        self.reconnect = reconnect
        self.screen_ = _Screen(80, 24, self._reply)
        self.stream = pyte.ByteStream(self.screen_)
        self._serial: Any = None
        self._lines: dict[int, Strip] = {}
        self._redraw = True
        self._unsent: list[bytes] = []
        self.scroll_back = 0  # rows of scrollback shown above the live screen (0: live)
        self._reader: asyncio.Task[None] | None = None
        self.attached = False

    # Life cycle -------------------------------------------------------------

    def on_mount(self) -> None:
        self.set_interval(1 / 60, self._tick)

    def _start(self) -> None:
        # Once the widget has its size: the serial log's tail is laid out at the width and
        # height it is shown at, so no row is wrapped or dropped by a resize after it.
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._run())

    async def on_unmount(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._close()

    async def _close(self) -> None:
        console, self._serial = self._serial, None
        if console is not None:
            await console.close()

    def resume(self) -> None:
        """Attach again (after :meth:`detach`), now or as soon as the VM runs."""
        self.reconnect = True
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._run())

    async def detach(self) -> None:
        """Close the connection now (before the VM is stopped: QEMU wants it closed first)."""
        self.reconnect = False
        if self._reader is not None:
            self._reader.cancel()
        await self._close()

    async def _run(self) -> None:
        from minivirt_core.console import SerialConsole, log_tail
        from minivirt_core.errors import MinivirtError

        if self.show_log and (tail := log_tail(self.vm_dir, LOG_TAIL_BYTES)):
            self.feed(tail)
        while True:
            try:
                self._serial = await SerialConsole.open(self.vm_dir)
            except MinivirtError:
                if not self.reconnect:
                    self.post_message(self.StateChanged(self, False, "the VM is not running"))
                    return
                await asyncio.sleep(1)
                continue
            self.attached = True
            self.post_message(self.StateChanged(self, True, "attached"))
            for data in self._unsent:
                await self._serial.write(data)
            self._unsent.clear()
            while data := await self._serial.read():
                self.feed(data)
            self.attached = False
            await self._close()
            self.feed(b"\r\n\x1b[7m[the VM stopped; waiting for it to run again]\x1b[0m\r\n")
            self.post_message(self.StateChanged(self, False, "the VM stopped"))
            if not self.reconnect:
                return
            await asyncio.sleep(1)

    # Output ------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Show bytes from the guest."""
        if not self._feed_fast(data):
            self.stream.feed(data)
        self._redraw = True

    def _feed_fast(self, data: bytes) -> bool:
        """A flood of plain lines, fed in O(screen) instead of O(data): the screen ends up
        showing the last lines, everything above goes to scrollback, exactly as if each
        byte had been fed. Only for chunks and states where that equivalence is certain."""
        screen, stream = self.screen_, self.stream
        lines = screen.lines
        if (len(data) < 4096 or data.translate(None, _PLAIN) or data.count(b"\r") != data.count(b"\r\n")
                or data.count(b"\n") != data.count(b"\r\n") or not stream._taking_plain_text
                or stream.utf8_decoder.getstate()[0] or screen.margins is not None or screen.charset
                or screen.cursor.attrs != screen.default_char or pyte.modes.IRM in screen.mode
                or pyte.modes.DECAWM not in screen.mode or pyte.modes.LNM in screen.mode):
            return False
        parts = data.split(b"\r\n")
        first, middle, tail = parts[0], parts[1:-1], parts[-1]
        if len(middle) < lines or max(map(len, parts)) > screen.columns:
            return False
        stream.feed(first + b"\r\n")
        if screen.cursor.y != lines - 1 or screen.cursor.x != 0 or screen.margins is not None:
            stream.feed(b"\r\n".join(middle) + b"\r\n" + tail)  # not on a fresh bottom row: no shortcut
            return True
        # Rows 0..lines-2 and all but the last lines-1 new lines scroll off, in order.
        for y in range(lines - 1):
            screen.history.append(screen.buffer[y])
        keep = lines - 1
        for line in middle[:-keep]:
            screen.history.append(line.decode("ascii"))
        screen.buffer.clear()
        screen.cursor_position()
        stream.feed(b"\r\n".join(middle[-keep:]) + b"\r\n" + tail)
        screen.dirty.update(range(lines))
        return True

    def _tick(self) -> None:
        if self._redraw:
            self._redraw = False
            for y in self.screen_.dirty:
                self._lines.pop(y, None)
            if self.screen_.dirty:
                self.screen_.dirty.clear()
            self._lines.pop(self.screen_.cursor.y, None)
            self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        width, height = max(event.size.width, 20), max(event.size.height, 5)
        if (width, height) != (self.screen_.columns, self.screen_.lines):
            self.screen_.resize(height, width)
            self._lines.clear()
            self._redraw = True
        self._start()

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return container.height

    def render_line(self, y: int) -> Strip:
        screen = self.screen_
        if y >= screen.lines:
            return Strip.blank(self.size.width)
        if self.scroll_back:
            # Scrolled back: history rows, then the top of the live screen.
            index = len(screen.history) - self.scroll_back + y
            if index < len(screen.history):
                row = screen.history[index]
                if isinstance(row, str):
                    return Strip([Segment(row.ljust(screen.columns)[: screen.columns])], screen.columns)
                return self._row_strip(row, -1)
            y = index - len(screen.history)
        cursor_x = screen.cursor.x if self.has_focus and y == screen.cursor.y and not screen.cursor.hidden else -1
        if self.scroll_back:
            cursor_x = -1
        elif cursor_x < 0 and y in self._lines:
            return self._lines[y]
        strip = self._row_strip(screen.buffer[y], cursor_x)
        if cursor_x < 0 and not self.scroll_back:
            self._lines[y] = strip
        return strip

    def _row_strip(self, row: Any, cursor_x: int) -> Strip:
        columns = self.screen_.columns
        default = self.screen_.default_char
        segments: list[Segment] = []
        run: list[str] = []
        run_key: tuple[Any, ...] | None = None
        for x in range(columns):
            char = row.get(x, default) if hasattr(row, "get") else row[x]
            key = (char.fg, char.bg, char.bold, char.italics, char.underscore, char.strikethrough,
                   char.reverse != (x == cursor_x))
            if key != run_key:
                if run:
                    segments.append(Segment("".join(run), _style(run_key)))
                run = []
                run_key = key
            run.append(char.data or " ")
        if run:
            segments.append(Segment("".join(run), _style(run_key)))
        return Strip(segments, columns)

    def text(self) -> str:
        """What the live screen shows now, as plain lines (for tests)."""
        return "\n".join(line.rstrip() for line in self.screen_.display)

    def history_text(self) -> list[str]:
        """The scrollback, oldest first, as plain lines."""
        default = self.screen_.default_char
        return [row if isinstance(row, str) else
                "".join(row.get(x, default).data for x in range(self.screen_.columns)).rstrip()
                for row in self.screen_.history]

    # Input ---------------------------------------------------------------------

    def _reply(self, data: str) -> None:
        self.send(data.encode())

    def send(self, data: bytes) -> None:
        """Type bytes into the VM."""
        if self._serial is not None:
            self._serial.writer.write(data)
        else:
            self._unsent.append(data)

    async def on_key(self, event: events.Key) -> None:
        if event.key == LEAVE_KEY:
            return
        data = _KEYS.get(event.key)
        if data is None and event.character:
            data = event.character
        if data is None:
            return
        event.stop()
        event.prevent_default()
        if self.scroll_back:
            self.scroll_back = 0  # typing returns to the live screen
            self.refresh()
        self.send(data.encode())

    def action_leave(self) -> None:
        self.post_message(self.Left())

    def action_scroll_back(self) -> None:
        page = max(1, self.screen_.lines // 2)
        self.scroll_back = min(len(self.screen_.history), self.scroll_back + page)
        self.refresh()

    def action_scroll_forward(self) -> None:
        self.scroll_back = max(0, self.scroll_back - max(1, self.screen_.lines // 2))
        self.refresh()
