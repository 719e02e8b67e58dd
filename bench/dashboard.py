"""The dashboard in a real terminal (tmux), against a bare Textual app in the same run:

- time from `miv tui` to the first complete frame, with 200 images and 20 VMs
  (target <= 1 s); the frame is complete when the first and last rows of both
  tables and the footer are on screen;
- idle CPU over 10 s with that database (target <= 3 %);
- `/` filtering 1000 images: the time each keystroke's filtering takes (the Images
  table narrowed and refilled; target < 50 ms, the slowest of them), with keys typed
  through Textual's pilot on a headless app; and the whole round trip of each key
  (pilot's press: handled and the screen updated) against typing the same keys into a
  bare Input in the same run.
Run: .venv/bin/python bench/dashboard.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MIV, make_db, verdict

BARE_APP = """
from textual.app import App
from textual.widgets import Footer, Static
class Bare(App):
    def compose(self):
        yield Static("bare textual app ready")
        yield Footer()
Bare().run()
"""
SESSION = f"miv-bench-{os.getpid()}"
# A tmux server of our own: the default one is shared, and exits between sessions.
SOCKET = os.path.join(tempfile.gettempdir(), f"miv-bench-{os.getpid()}.tmux")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-S", SOCKET, *args], capture_output=True, text=True, check=False).stdout


def launch(command: str, env: dict[str, str]) -> float:
    tmux("kill-session", "-t", SESSION)
    env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    start = time.perf_counter()
    subprocess.run(["tmux", "-S", SOCKET, "new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40", *env_args,
                    command], check=True)
    return start


def wait_for(markers: list[str], timeout: float = 30) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        screen = tmux("capture-pane", "-p", "-t", SESSION)
        if all(m in screen for m in markers):
            return time.perf_counter()
        time.sleep(0.01)
    raise TimeoutError(f"never saw {markers}:\n{tmux('capture-pane', '-p', '-t', SESSION)}")


def pane_pid() -> int:
    return int(tmux("display-message", "-p", "-t", SESSION, "#{pane_pid}").strip())


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(seconds: float = 10) -> float:
    pid = pane_pid()
    before, t0 = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.perf_counter() - t0)


QUERY = "image-00999"


async def _keystrokes(app, ready, typed, before=None) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds each key of QUERY takes to be handled (and the screen updated), pilot-driven."""
    times = []
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.perf_counter() + 60
        while not ready(app):
            if time.perf_counter() > deadline:
                raise TimeoutError("the app never became ready")
            await pilot.pause(0.05)
        if before:
            await pilot.press(*before)
        for key in QUERY:
            start = time.perf_counter()
            await pilot.press(key if key != "-" else "minus")
            await pilot.wait_for_scheduled_animations()
            times.append(time.perf_counter() - start)
        assert typed(app), "the keys did not do what they should"
    return times


def filter_timings(db: Path) -> tuple[list[float], list[float], list[float]]:
    import asyncio

    from textual.app import App
    from textual.widgets import Input

    from minivirt_core import Minivirt
    from minivirt_tui.dashboard.app import MivApp

    class BareInput(App[None]):
        def compose(self):  # type: ignore[no-untyped-def]
            yield Input()

    from minivirt_tui.dashboard.tables import ResourceTable

    work: list[float] = []
    set_filter = ResourceTable.set_filter

    def timed(table: ResourceTable, text: str) -> None:
        start = time.perf_counter()
        set_filter(table, text)
        work.append(time.perf_counter() - start)

    ResourceTable.set_filter = timed  # type: ignore[method-assign]
    try:
        ours = asyncio.run(_keystrokes(
            MivApp(Minivirt(db), refresh_interval=3600, probe_accel=False, cursor_blink=False),
            lambda app: app.query_one("#images").row_count == 1000,
            lambda app: app.query_one("#images").row_count == 1, before=["slash"]))
    finally:
        ResourceTable.set_filter = set_filter  # type: ignore[method-assign]
    bare = asyncio.run(_keystrokes(BareInput(), lambda app: True, lambda app: app.query_one(Input).value == QUERY))
    return work, ours, bare


def main() -> None:
    try:
        terminal_figures = measure_in_tmux()
    finally:
        tmux("kill-server")  # our own server, even when a measurement failed
        if os.path.exists(SOCKET):
            os.unlink(SOCKET)
    report(*terminal_figures)


def measure_in_tmux() -> tuple[list[float], list[float], float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = make_db(Path(tmp) / "db", 200)
        for i in range(20):
            vm = db / "vms" / f"vm{i:02d}"
            vm.mkdir(parents=True)
            image = os.readlink(db / "images" / f"image-{i:05d}")
            (vm / "config.json").write_text(json.dumps({"image": image, "memory": 256, "disk": True}))
            (vm / "disk.qcow2").write_bytes(b"")
        env = {"MINIVIRT_DB_PATH": str(db), "MINIVIRT_ACCEL": "tcg", "TERM": "xterm-256color"}
        tmux("new-session", "-d", "-s", "keeper", "sleep 3600")  # killing a session never ends the server
        ours, bare = [], []
        for _ in range(5):
            start = launch(f"{sys.executable} -c '{BARE_APP}'", env)
            bare.append(wait_for(["bare textual app ready", "^p"]) - start)
            start = launch(f"{MIV} tui", env)
            ours.append(wait_for(["image-00000", "vm00", "Quit", "Events"]) - start)
        ours_cpu = idle_cpu()
        launch(f"{sys.executable} -c '{BARE_APP}'", env)
        wait_for(["bare textual app ready"])
        bare_cpu = idle_cpu()
    return ours, bare, ours_cpu, bare_cpu


def report(ours: list[float], bare: list[float], ours_cpu: float, bare_cpu: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work, keys, bare_keys = filter_timings(make_db(Path(tmp) / "db", 1000))
    o, b = statistics.median(ours), statistics.median(bare)
    print(f"first complete frame, 200 images + 20 VMs: {o:.2f} s (bare Textual app: {b:.2f} s; "
          f"{o / b:.1f}x) target <= 1 s: {verdict(o, 1.0)}")
    print(f"idle CPU: {ours_cpu:.1f} % (bare Textual app: {bare_cpu:.1f} %) target <= 3 %: {verdict(ours_cpu, 3.0)}")
    worst = max(work) * 1000
    median, bare_median = statistics.median(keys) * 1000, statistics.median(bare_keys) * 1000
    print(f"/ filter of 1000 images, filtering per keystroke: slowest {worst:.0f} ms, median "
          f"{statistics.median(work) * 1000:.0f} ms, target < 50 ms: {verdict(worst, 50.0)}; whole key round trip "
          f"(pilot) median {median:.0f} ms vs {bare_median:.0f} ms into a bare Input ({median / bare_median:.1f}x)")


if __name__ == "__main__":
    main()
