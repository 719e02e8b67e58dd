"""The console pane's terminal: its fast path for floods is exact, its drawing is right."""

from __future__ import annotations

import random
from pathlib import Path

import pyte
import pytest

from minivirt_tui.dashboard.terminal import HISTORY, SerialTerminal


def reference(chunks: list[bytes], columns: int, lines: int) -> tuple[list[str], tuple[int, int], list[str]]:
    """What plain pyte shows after every byte, with every scrolled-off row collected."""
    history: list[str] = []

    class Screen(pyte.Screen):
        def index(self) -> None:
            top, bottom = self.margins or pyte.screens.Margins(0, self.lines - 1)
            if self.cursor.y == bottom and top == 0:
                history.append("".join(self.buffer[0][x].data for x in range(self.columns)).rstrip())
            super().index()

    screen = Screen(columns, lines)
    stream = pyte.ByteStream(screen)
    for chunk in chunks:
        for i in range(0, len(chunk), 7):  # small pieces: never the fast path
            stream.feed(chunk[i:i + 7])
    return [line.rstrip() for line in screen.display], (screen.cursor.x, screen.cursor.y), history[-HISTORY:]


def ours(chunks: list[bytes], columns: int, lines: int) -> tuple[list[str], tuple[int, int], list[str]]:
    term = SerialTerminal("t", Path("/nonexistent"))
    term.screen_.resize(lines, columns)
    for chunk in chunks:
        term.feed(chunk)
    screen = term.screen_
    return term.text().split("\n"), (screen.cursor.x, screen.cursor.y), term.history_text()


def flood(rng: random.Random, n: int, width: int) -> bytes:
    return b"".join(b"x" * rng.randrange(0, width + 1) + b"\r\n" for _ in range(n))


@pytest.mark.parametrize("seed", range(12))
def test_fast_path_is_exact(seed: int) -> None:
    rng = random.Random(seed)
    columns, lines = rng.choice([(80, 24), (120, 30), (40, 10)])
    chunks = [b"login: root\r\n\x1b[1;34m~\x1b[0m # seq 1 100000\r\n"]
    for _ in range(6):
        kind = rng.randrange(5)
        if kind == 0:
            chunks.append(flood(rng, rng.randrange(50, 400), columns) + b"partial line")
        elif kind == 1:
            chunks.append(b"".join(b"%d\r\n" % i for i in range(rng.randrange(100, 3000))))
        elif kind == 2:
            chunks.append(b"\x1b[31mred\x1b[0m text\r\n" * rng.randrange(1, 300))  # escapes: slow path
        elif kind == 3:
            chunks.append(b"\xc3\xa9t\xc3\xa9\r\n" * 500)  # UTF-8: slow path
        else:
            chunks.append(flood(rng, 200, columns + 5))  # too wide: slow path
    assert ours(chunks, columns, lines) == reference(chunks, columns, lines)


def test_flood_keeps_scrollback_in_order() -> None:
    data = b"".join(b"line %05d\r\n" % i for i in range(5000))
    screen, _, history = ours([data], 80, 24)
    assert screen[-2] == "line 04999" and screen[-1] == ""
    assert history[-1] == "line 04976" and history[0] == f"line {5000 - 23 - 3000:05d}"


def test_fast_path_is_taken_for_floods() -> None:
    term = SerialTerminal("t", Path("/nonexistent"))
    term.feed(b"$ seq 1 100000\r\n")
    assert term._feed_fast(b"".join(b"%d\r\n" % i for i in range(5000)))
    assert not term._feed_fast(b"\x1b[31m" + b"red\r\n" * 2000)  # escapes: the byte-exact path


def test_replayed_log_asks_the_terminal_nothing(tmp_path: Path) -> None:
    """Regression: replaying the serial log re-sent the guest's old ESC[6n queries; the
    terminal answered them, and the answers were typed into the guest as garbage."""
    from minivirt_core.console import log_tail

    (tmp_path / "serial.log").write_bytes(b"tiny login: root\r\n\x1b[6ntiny:~# \x1b[6nls\r\n\x1b[1;34mbin\x1b[0m\r\n"
                                          b"\x1b[c\x1b[>c\x1b[5n")
    tail = log_tail(tmp_path)
    assert tail == b"tiny login: root\r\ntiny:~# ls\r\n\x1b[1;34mbin\x1b[0m\r\n"
    term = SerialTerminal("t", tmp_path)
    term.feed(tail)
    assert term._unsent == []  # no reply was queued for the guest
    term.feed(b"\x1b[6n")  # a live query is answered
    assert term._unsent == [b"\x1b[1;1R"] or term._unsent[0].endswith(b"R")


QUERIES = [b"\x1b[6n", b"\x1b[5n", b"\x1b[?6n", b"\x1b[c", b"\x1b[>c", b"\x1b[=c", b"\x1b[>0q", b"\x1b[14t",
           b"\x1b[?2004$p", b"\x1b[?u", b"\x1bP$qm\x1b\\", b"\x1bP+q544e\x1b\\", b"\x1b]11;?\x07", b"\x1b]10;?\x1b\\",
           b"\x1b]4;1;?\x07", b"\x1b]52;c;?\x07", b"\x1bZ", b"\x05", b"\xc2\x9b6n"]


def test_query_filter_removes_every_query_wherever_the_stream_is_cut() -> None:
    """Terminal queries are removed, everything else passes, and a query cut across two
    chunks (or hidden by nesting one inside another) never gets through."""
    from minivirt_core.console import QueryFilter, strip_queries

    kept = b"tiny login: \x1b[1;32mgreen\x1b[0m \x1b]0;title\x07\x1b[2J\x1b[H\x1b(B caf\xc3\xa9 \xc2\xa9\r\n"
    stream = b"".join(q + kept for q in QUERIES) + b"\x1b[\x1b[6nc" + b"\x1b]11;\x1b]11;?\x07?\x07"
    expected = kept * len(QUERIES) + b"c" + b"?\x07"
    assert strip_queries(stream) == expected
    rng = random.Random(9)
    for _ in range(200):
        safe, out, i = QueryFilter(), b"", 0
        while i < len(stream):
            n = rng.randrange(1, 6)
            out += safe.feed(stream[i:i + n])
            i += n
        assert out == expected


def _vm_with_log(db: Path, log: bytes) -> Path:
    import asyncio

    from minivirt_core import Minivirt

    asyncio.run(Minivirt(db).vms.create(None, "v", disk_size="1M"))
    (db / "vms" / "v" / "serial.log").write_bytes(log)
    return db / "vms" / "v" / "serial.log"


def test_miv_logs_passes_no_terminal_query(db: Path) -> None:
    """Regression: `miv logs` copied the guest's ESC[6n to the terminal, whose answers were
    typed into the user's shell (`bash-5.2# ;13R;13R`)."""
    from .helpers import miv

    _vm_with_log(db, b"tiny login: root\r\n" + b"tiny:~# ".join(QUERIES) + b"\x1b[1mbold\x1b[0m\r\n")
    out = miv(db, "logs", "v").stdout
    assert out == b"tiny login: root\r\n" + b"tiny:~# " * (len(QUERIES) - 1) + b"\x1b[1mbold\x1b[0m\r\n"


def test_miv_logs_follow_holds_back_a_query_cut_between_writes(db: Path) -> None:
    import os
    import select
    import subprocess

    from .helpers import MIV

    log = _vm_with_log(db, b"first ")
    proc = subprocess.Popen([MIV, "logs", "v", "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "MINIVIRT_DB_PATH": str(db)})
    assert proc.stdout is not None
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, f"miv logs -f never showed {marker!r}; it showed {seen!r}"
            seen += os.read(proc.stdout.fileno(), 4096)

    try:
        read_until(b"first ")
        with open(log, "ab") as f:  # the guest's QEMU writes a query in two pieces
            f.write(b"second \x1b[")
            f.flush()
            read_until(b"second ")
            f.write(b"6n third\r\n")
        read_until(b"third")
    finally:
        proc.kill()
        proc.wait()
    assert seen == b"first second  third\r\n"
