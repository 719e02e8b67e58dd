"""The console pane under a flood.

Part 1, a real guest: a tiny guest prints continuously on its serial port. Under TCG
the emulated 16550 UART tops out far below 1 MB/s, so part 2 streams 1 MB/s of
console-like text through a real Unix socket (where QEMU's serial socket would be)
into the same console pane, echoing typed keys into the stream as a tty does.

Measured in the same run, first with a bare socket client (the baseline: no terminal
emulation, no drawing), then with the dashboard's console tab (pyte + Textual):
- throughput: bytes per second the client takes in while the guest floods
  (target: the dashboard keeps up, i.e. matches the baseline's rate at ~1 MB/s);
- echo latency: a key typed during the flood until its echo is on screen
  (target <= 100 ms for the dashboard).
Run: .venv/bin/python bench/console_flood.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MIV, ROOT

sys.path.insert(0, str(ROOT))

from minivirt_core import Minivirt
from minivirt_core.console import SerialConsole

FLOOD = b"while :; do seq 100000 199999; done\r"
WINDOW = 8.0
PROBES = 10


async def login(console: SerialConsole) -> None:
    await console.write(b"\r")
    await console.expect("login:", 60)
    await console.write(b"root\r")
    await console.expect("# ", 30)


async def baseline(vm_dir: Path) -> tuple[float, list[float]]:
    console = await SerialConsole.open(vm_dir)
    await login(console)
    await console.write(FLOOD)
    received = 0
    latencies = []
    start = time.perf_counter()
    next_probe = start + 0.5
    probe_sent: float | None = None
    while time.perf_counter() - start < WINDOW:
        data = await console.read()
        received += len(data)
        now = time.perf_counter()
        if probe_sent is not None and b"Z" in data:
            latencies.append(now - probe_sent)
            probe_sent = None
        if probe_sent is None and now >= next_probe and len(latencies) < PROBES:
            await console.write(b"Z")
            probe_sent = now
            next_probe = now + 0.5
    rate = received / (time.perf_counter() - start)
    await console.write(b"\x03")  # Ctrl-C stops the flood
    await asyncio.sleep(1)
    await console.close()
    return rate, latencies


class Counter:
    """Wraps a console pane's feed: bytes taken in, and when a typed 'Z' came back."""

    def __init__(self, term: object) -> None:
        self.received = 0
        self.seen_at: list[float] = []
        original = type(term).feed

        def feed(data: bytes) -> None:
            self.received += len(data)
            original(term, data)
            if b"Z" in data:
                self.seen_at.append(time.perf_counter())

        term.feed = feed  # type: ignore[attr-defined]

    async def echo_latencies(self, pilot: object, term: object, probes: int = PROBES) -> list[float]:
        """Type 'Z' ``probes`` times; until its echo reached the pane, plus one 60 Hz frame."""
        latencies = []
        for _ in range(probes):
            self.seen_at.clear()
            sent = time.perf_counter()
            term.send(b"Z")  # type: ignore[attr-defined]
            await pilot.pause(0.5)  # type: ignore[attr-defined]
            if self.seen_at:
                latencies.append(self.seen_at[0] - sent + 1 / 60)
        return latencies


async def dashboard(miv: Minivirt) -> tuple[float, list[float]]:
    from minivirt_tui.dashboard.app import MivApp
    app = MivApp(miv, probe_accel=False)
    async with app.run_test(size=(120, 40)) as pilot:
        term = await app.open_console("flood", show_log=False)
        while not term.attached:
            await pilot.pause(0.05)
        counter = Counter(term)
        term.send(b"\r")
        await pilot.pause(1)
        term.send(FLOOD)
        await pilot.pause(1)
        counter.received = 0
        start = time.perf_counter()
        latencies = await counter.echo_latencies(pilot, term)
        rate = counter.received / (time.perf_counter() - start)
        term.send(b"\x03")
        await pilot.pause(1)
    return rate, latencies


async def synthetic(rate: float = 1e6) -> tuple[float, float, list[float]]:
    """(offered rate, rate the console pane took in, echo latencies) at ``rate`` bytes/s."""
    from minivirt_tui.dashboard.app import MivApp

    with tempfile.TemporaryDirectory(prefix="flood-", dir="/tmp") as tmp:
        miv = Minivirt(Path(tmp) / "db")
        miv.db.ensure()
        vm_dir = miv.vms.path("synthetic")
        vm_dir.mkdir()
        sent_total = 0
        pending_echo: list[bytes] = []
        line = b"".join(b"%06d the quick brown fox jumps over the lazy dog 0123456789\r\n" % i for i in range(16))

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal sent_total

            async def keys() -> None:
                while data := await reader.read(1024):
                    pending_echo.append(data)  # a tty echoes what is typed

            task = asyncio.ensure_future(keys())
            start = time.perf_counter()
            try:
                while True:
                    if pending_echo:
                        writer.write(b"".join(pending_echo))
                        pending_echo.clear()
                    writer.write(line)
                    sent_total += len(line)
                    await writer.drain()  # a pane that cannot keep up slows this down
                    ahead = sent_total / rate - (time.perf_counter() - start)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                task.cancel()

        server = await asyncio.start_unix_server(serve, path=str(vm_dir / "serial.sock"))
        app = MivApp(miv, probe_accel=False, refresh_interval=3600)
        async with app.run_test(size=(120, 40)) as pilot:
            term = await app.open_console("synthetic", show_log=False)
            while not term.attached:
                await pilot.pause(0.05)
            counter = Counter(term)
            await pilot.pause(1)
            counter.received, offered_start, start = 0, sent_total, time.perf_counter()
            latencies = await counter.echo_latencies(pilot, term)
            elapsed = time.perf_counter() - start
            offered = (sent_total - offered_start) / elapsed
            took = counter.received / elapsed
        server.close()
        return offered, took, latencies


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        miv = Minivirt(work / "db")
        miv.db.ensure()
        subprocess.run(["bash", str(ROOT / "recipes/tiny/build-tiny.sh"), str(work / "tiny")], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(f"tar c -C {work / 'tiny'} config.json disk.qcow2 | {MIV} load tiny", shell=True,
                       check=True, env={**os.environ, "MINIVIRT_DB_PATH": str(miv.db.root)}, capture_output=True)
        await miv.vms.create("tiny", "flood", memory=256)
        await miv.vms.start("flood", wait_for_ssh=120)
        try:
            base_rate, base_lat = await baseline(miv.vms.path("flood"))
            dash_rate, dash_lat = await dashboard(miv)
        finally:
            await miv.vms.destroy("flood")

    def ms(values: list[float]) -> str:
        if not values:
            return "no echo seen"
        return f"median {1000 * statistics.median(values):.0f} ms, max {1000 * max(values):.0f} ms ({len(values)} keys)"

    print("1. a real tiny guest flooding its serial console (TCG)")
    print(f"   bare socket client : {base_rate / 1e6:.3f} MB/s; echo {ms(base_lat)}")
    print(f"   dashboard console  : {dash_rate / 1e6:.3f} MB/s ({dash_rate / base_rate:.0%} of the bare client); "
          f"echo {ms(dash_lat)}")
    offered, took, lat = await synthetic()
    print("2. 1 MB/s of console text through a Unix socket into the console pane")
    print(f"   offered {offered / 1e6:.2f} MB/s, the pane took in {took / 1e6:.2f} MB/s; echo {ms(lat)}")
    ok = bool(lat) and statistics.median(lat) <= 0.1 and took >= 0.9e6 and bool(dash_lat) and \
        statistics.median(dash_lat) <= 0.1
    print("target (keeps up with ~1 MB/s, echo <= 100 ms): " + ("meets target" if ok else "MISSES target"))


if __name__ == "__main__":
    asyncio.run(main())
