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

# Terminal queries: sequences a terminal answers by typing its reply into its input. Copied
# from a guest to the user's terminal, the replies land in whatever reads that terminal
# next, e.g. the user's shell (`bash-5.2# ;13R`). Output is cut into tokens the way a
# terminal parses it: text, complete escape sequences (kept unless they are queries), and
# cut-off ones (dropped: a terminal does nothing with them, and dropping them means no
# removal can join two pieces into a new query, as in ESC [ ESC [ 6 n c).
_C0_IN_CSI = rb"\x00-\x17\x19\x1c-\x1f"  # a terminal runs these inside a CSI (CAN, SUB and ESC cut it)
_TOKEN = re.compile(
    rb"(?P<csi>(?:\x1b\[|\xc2\x9b)(?P<body>[" + _C0_IN_CSI + rb"\x20-\x3f]*)(?P<final>[\x40-\x7e]))"
    rb"|(?P<string>(?P<intro>\x1b[\]P^_X]|\xc2[\x90\x98\x9d-\x9f])(?P<payload>[^\x07\x18\x1a\x1b]*?)"
    rb"(?:\x07|\x1b\\|\xc2\x9c))"
    rb"|(?P<esc>\x1b(?:[\x20-\x2f]+[\x30-\x7e]|[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e]))"  # not CSI, OSC...
    rb"|(?P<cut>(?:\x1b\[|\xc2\x9b)[" + _C0_IN_CSI + rb"\x20-\x3f]*"
    rb"|(?:\x1b[\]P^_X]|\xc2[\x90\x98\x9d-\x9f])[^\x07\x18\x1a\x1b]*(?:\x1b\Z)?"
    rb"|\x1b[\x20-\x2f]*|\xc2\Z)"
    rb"|[^\x05\x1b\xc2]+|\xc2[\x80-\x8f\x91-\x97\x99\x9a\x9c\xa0-\xbf]"  # text (UTF-8 C1s that ask nothing)
    rb"|(?P<drop>\x05|\xc2)",  # ENQ (the terminal types its answerback); a stray byte that could start a C1
    re.DOTALL,
)
MAX_HELD = 4096  # a sequence open longer than this is no query: dropped, not held
_WINDOW_REPORTS = {b"11", b"13", b"14", b"15", b"16", b"18", b"19", b"20", b"21"}  # CSI Ps t that answer


def _is_query(m: re.Match[bytes]) -> bool:
    if m["csi"]:
        body, final = re.sub(rb"[\x00-\x1f]", b"", m["body"]), m["final"]
        return (final in (b"n", b"c")  # DSR (5n, 6n, ?6n...), device attributes (c, >c, =c)
                or (final == b"x" and body in (b"", b"0", b"1"))  # DECREQTPARM
                or (final == b"t" and body.split(b";")[0] in _WINDOW_REPORTS)  # XTWINOPS reports
                or (final in (b"p", b"w", b"u") and body.endswith(b"$"))  # DECRQM, DECRQPSR, DECRQTSR
                or (final == b"y" and body.endswith(b"*"))  # DECRQCRA
                or (final == b"v" and body.endswith(b'"'))  # DECRQDE
                or (final == b"q" and body.startswith(b">"))  # XTVERSION
                or (final in (b"u", b"S", b"m") and body.startswith(b"?")))  # kitty keys, XTSMGRAPHICS, XTQMODKEYS
    if m["string"]:
        payload = m["payload"]
        if m["intro"] in (b"\x1b]", b"\xc2\x9d"):  # OSC: colour, clipboard, font... queries have a "?"
            return b";?" in payload or payload.startswith(b"1337;Report")
        return payload[:2] in (b"$q", b"+q")  # DCS: DECRQSS, XTGETTCAP
    return m["esc"] == b"\x1bZ"  # DECID


class QueryFilter:
    """Removes terminal queries from a byte stream copied to a terminal: the one filter for
    everything minivirt shows of a guest (``miv logs``, ``miv build -v``, replayed history).

    The stream may be cut anywhere: a sequence still open at the end of a chunk is held
    back until the next chunk tells what it is (and dropped if the stream ends there).
    Colours and every other sequence pass.
    """

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """What of ``data`` (after what was held back) is safe to show now."""
        data, self._held = self._held + data, b""
        if b"\x1b" not in data and b"\xc2" not in data and b"\x05" not in data:
            return data  # plain text: the common case, at memory speed
        out = []
        for m in _TOKEN.finditer(data):
            if m["drop"] is not None:
                continue
            if m["cut"] is not None:
                if m.end() == len(data) and len(m[0]) < MAX_HELD:
                    self._held = m[0]  # may complete in the next chunk
                continue  # cut off by what follows: a terminal ignores it
            if not _is_query(m):
                out.append(m[0])
        return b"".join(out)


def strip_queries(data: bytes) -> bytes:
    """``data`` without terminal queries (and without a sequence cut off at its end)."""
    return QueryFilter().feed(data)


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
    return strip_queries(data)


async def follow_log(vm_dir: Path, from_start: bool = True, poll: float = 0.1,
                     offset: int | None = None) -> AsyncIterator[bytes]:
    """Yield the serial log as it grows (like ``tail -f``), forever; cancel to stop. It
    starts at ``offset`` when given, else at the start or the current end."""
    path = vm_dir / layout.VM_SERIAL_LOG
    if offset is None:
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
