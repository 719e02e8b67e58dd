"""Snapshots of the dashboard at a fixed size, on a fixed database, with a fixed clock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.screen import ModalScreen

from minivirt_tui.dashboard.app import MivApp
from minivirt_tui.dashboard.output import JobView
from minivirt_tui.dashboard.terminal import SerialTerminal

from . import demo_db

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def fixed_time_and_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """UTC, and the test's folder as the home folder: the dashboard shows paths under it as ~/..."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("HOME", str(tmp_path))
    time.tzset()
    yield
    time.tzset()


def make_app() -> MivApp:
    return MivApp(demo_db.build(Path.home()), clock=lambda: demo_db.NOW, refresh_interval=3600, probe_accel=False,
                  cursor_blink=False)


async def settle(pilot) -> None:
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()


def test_main_screen(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settle)


@pytest.mark.parametrize("keys", [
    ["t"], ["c"], ["p"], ["s"], ["u"], ["b"], ["f"], ["K"], ["question_mark"],
    ["2", "d"], ["2", "C"], ["2", "y"], ["2", "a"], ["2", "n"], ["2", "p"], ["3", "a"], ["3", "down", "l"], ["3", "d"],
], ids=lambda k: "-".join(k))
def test_modal(snap_compare, keys: list[str]) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
        await pilot.pause(0.5)
        await pilot.wait_for_scheduled_animations()
        assert isinstance(pilot.app.screen, ModalScreen), f"{keys} opened no modal"

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_build_tab(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        from textual.widgets import TabbedContent, TabPane

        app = pilot.app
        view = JobView("build tiny.yaml")
        tabs = app.query_one("#output", TabbedContent)
        await tabs.add_pane(TabPane("build tiny.yaml", view, id="tab-job-demo"))
        tabs.active = "tab-job-demo"
        await pilot.pause(0.2)
        view.write("step 1/2: Assemble the disk from Debian packages\nbuild-tiny: kernel 6.1.0, 24M\n")
        view.write("\nSeaBIOS (version 1.16.2)\nBooting from Hard Disk...\n\ntiny login: root\ntiny:~# ")
        view.set_progress(1, 4)
        view.finish("step 2/2: First boot, configured over the serial console")
        await pilot.pause(0.3)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_console_tab(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        app = pilot.app
        term = await app.open_console("web", show_log=False)
        term.reconnect = False
        await pilot.pause(0.3)
        term.feed(b"\x1b[2J\x1b[H\x1b[1;32mtiny login:\x1b[0m root\r\n"
                  b"\x1b[1;34m~\x1b[0m # ls --color /\r\n\x1b[1;34mbin\x1b[0m  \x1b[1;34metc\x1b[0m  "
                  b"\x1b[1;34mroot\x1b[0m  \x1b[1;36mlib64\x1b[0m  \x1b[7m reversed \x1b[0m\r\n"
                  b"\x1b[1;34m~\x1b[0m # uname -a\r\nLinux tiny 6.1.0-56-cloud-amd64 x86_64 GNU/Linux\r\n"
                  b"\x1b[1;34m~\x1b[0m # ")
        await pilot.pause(0.3)
        assert isinstance(app.focused, SerialTerminal)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_small_terminal(snap_compare) -> None:
    """80x24: three rows a pane, the columns that matter, the URL cut with …, q Quit kept."""
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle)


def test_too_small_terminal(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(60, 18), run_before=settle)


def test_filter_and_sort(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("2", "o", "o", "1", "slash", "a", "l")
        images = pilot.app.query_one("#images")
        deadline = time.monotonic() + 10
        vms = pilot.app.query_one("#vms")
        while images.row_count != 1 or str(vms.ordered_columns[1].label) != "STATE ▲":
            assert time.monotonic() < deadline, "the filter and the sort never showed"
            await pilot.pause(0.1)
        await pilot.pause(0.3)
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_prune_confirmation(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        (pilot.app.miv.db.images_dir / "ubuntu-24.04").unlink()  # an image nothing uses
        pilot.app.refresh_state()
        await pilot.pause(0.5)
        await pilot.press("P")
        await pilot.pause(1)
        await pilot.wait_for_scheduled_animations()
        assert isinstance(pilot.app.screen, ModalScreen)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_inspect_image(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("i")
        await pilot.pause(1)
        await pilot.wait_for_scheduled_animations()
        assert isinstance(pilot.app.screen, ModalScreen)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)
