"""The serial console of a running VM: a socket to type into, a log to read back.

QEMU writes every byte of the serial port to ``serial.log`` whether or not anyone is
attached; one client at a time may hold the socket to type. Output read from the
socket is the live stream; :func:`log_tail` gives what came before.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from . import layout
from .errors import Conflict, NotFound, Timeout
from .qemu.sockets import open_unix

# Queries a terminal answers by typing (cursor position ESC[6n, status ESC[5n, device
# attributes ESC[c / ESC[>c). In replayed history they are stale: answering them would
# type garbage into the guest.
_QUERIES = re.compile(rb"\x1b\[[0-9;?>]*[nc]")


def log_tail(vm_dir: Path, max_bytes: int = 8192) -> bytes:
    """The last bytes of the serial log, starting at a line boundary when possible, with
    terminal queries removed (the log is history; only the live stream may ask)."""
    path = vm_dir / layout.VM_SERIAL_LOG
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return b""
    if len(data) == max_bytes and b"\n" in data:
        data = data[data.index(b"\n") + 1 :]
    return _QUERIES.sub(b"", data)


async def follow_log(vm_dir: Path, from_start: bool = True, poll: float = 0.1) -> AsyncIterator[bytes]:
    """Yield the serial log as it grows (like ``tail -f``), forever; cancel to stop."""
    path = vm_dir / layout.VM_SERIAL_LOG
    offset = 0 if from_start else (path.stat().st_size if path.exists() else 0)
    while True:
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size < offset:
                    offset = 0  # truncated or replaced
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        if data:
            offset += len(data)
            yield data
        else:
            await asyncio.sleep(poll)


class SerialConsole:
    """A connection to a VM's serial socket: :meth:`read` output, :meth:`write` keys."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, vm_dir: Path, timeout: float = 3.0) -> SerialConsole:
        """Connect to the VM's serial socket (the VM must be running)."""
        path = vm_dir / layout.VM_SERIAL
        if not path.exists():
            raise NotFound("the VM's serial console is not available: is it running?")
        try:
            reader, writer = await asyncio.wait_for(open_unix(path), timeout)
        except (TimeoutError, OSError) as e:
            raise Conflict(f"cannot attach to the serial console: {e or 'timed out'}",
                           hint="Only one client may attach at a time.") from e
        return cls(reader, writer)

    async def read(self) -> bytes:
        """The next output from the guest; ``b""`` when QEMU closed the console."""
        return await self.reader.read(65536)

    async def write(self, data: bytes) -> None:
        """Send bytes to the guest, as if typed."""
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        """Detach (QEMU keeps running; output keeps going to the log)."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (OSError, ConnectionError):
            pass

    async def expect(self, pattern: str | re.Pattern[str], timeout: float, buffer: bytearray | None = None) -> str:
        """Read until ``pattern`` matches the output seen so far; return that output.

        ``buffer`` collects what was read (also on timeout), so callers can show it.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        seen = buffer if buffer is not None else bytearray()
        start = len(seen)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            text = seen[start:].decode(errors="replace")
            if regex.search(text):
                return text
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Timeout(f"the console did not show /{regex.pattern}/ within {timeout:g} s")
            try:
                data = await asyncio.wait_for(self.read(), remaining)
            except TimeoutError:
                continue
            if not data:
                raise Conflict(f"the console closed before /{regex.pattern}/ appeared")
            seen += data
