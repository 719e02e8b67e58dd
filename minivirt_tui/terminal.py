"""The real terminal for the CLI: raw mode, and bridges to a serial console or SSH shell."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ESCAPE = b"\x1d"  # Ctrl-]: leaves the console, as in telnet and virsh
ESCAPE_NAME = "Ctrl-]"


@contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal ``fd`` in raw mode for the block (no-op when not a terminal)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def attach_console(vm_dir: Path, show_log: bool = True) -> None:
    """Attach this terminal to the VM's serial console until Ctrl-] or the VM stops."""
    from minivirt_core.console import SerialConsole, log_tail
    from minivirt_core.ssh import read_chunks

    console = await SerialConsole.open(vm_dir)
    out = sys.stdout.fileno()
    inp = sys.stdin.fileno()
    if show_log and (tail := log_tail(vm_dir, 4096)):
        _write_all(out, tail)
    sys.stderr.write(f"\r\n[attached to the serial console; {ESCAPE_NAME} to detach]\r\n")
    sys.stderr.flush()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()

    async def forward_input() -> None:
        # A terminal, a pipe, a file or /dev/null alike (`miv console vm < /dev/null` once
        # failed: the event loop cannot watch /dev/null); at its end, output keeps coming.
        async for data in read_chunks(inp, 4096):
            if ESCAPE in data:
                data = data[: data.index(ESCAPE)]
                if not done.done():
                    done.set_result("detached")
            if data:
                console.writer.write(data)
            if done.done():
                return

    with raw_mode(inp):
        reader = asyncio.ensure_future(_pump_console(console, out))
        forwarder = asyncio.ensure_future(forward_input())
        try:
            waiting: list[asyncio.Future[Any]] = [reader, done]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, forwarder):
                task.cancel()
            await asyncio.gather(reader, forwarder, return_exceptions=True)
            await console.close()
    why = done.result() if done.done() else "the VM stopped"
    sys.stderr.write(f"\r\n[{why}]\r\n")


async def _pump_console(console: Any, out: int) -> None:
    while data := await console.read():
        _write_all(out, data)


async def interactive_ssh(conn: Any, command: str | None = None) -> int:
    """An interactive session with a PTY, bridged to this terminal; returns the exit status."""
    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    import shutil

    size = shutil.get_terminal_size((80, 24))
    process = await conn.create_process(
        command, term_type=os.environ.get("TERM", "xterm-256color"),
        term_size=(size.columns, size.lines), encoding=None,
    )
    loop = asyncio.get_running_loop()

    def on_input() -> None:
        try:
            data = os.read(inp, 4096)
        except OSError:
            data = b""
        if data:
            process.stdin.write(data)
        else:
            loop.remove_reader(inp)
            process.stdin.write_eof()

    def on_resize() -> None:
        s = shutil.get_terminal_size((80, 24))
        process.change_terminal_size(s.columns, s.lines)

    async def pump(stream: Any) -> None:
        while data := await stream.read(65536):
            _write_all(out, data)

    with raw_mode(inp):
        loop.add_reader(inp, on_input)
        loop.add_signal_handler(signal.SIGWINCH, on_resize)
        try:
            await asyncio.gather(pump(process.stdout), pump(process.stderr))
            completed = await process.wait()
        finally:
            loop.remove_reader(inp)
            loop.remove_signal_handler(signal.SIGWINCH)
    return int(completed.exit_status or 0)
