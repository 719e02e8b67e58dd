"""Make the README's screenshots: the dashboard on a demo database with real content.

    python -m minivirt_tui.dashboard.screenshots OUT_DIR

Builds (or reuses) the tiny image in a demo database under ~/.cache/minivirt, starts a
VM, then drives the dashboard with Textual's pilot and saves SVGs of the main screen,
a live build and an attached console.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from minivirt_core import Minivirt
from minivirt_core.hostinfo import machine_cache_dir

from .app import MivApp
from .output import JobView
from .tables import VmsTable
from .terminal import SerialTerminal

SIZE = (120, 40)
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


async def _until(pilot, predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the dashboard did not reach the expected state")
        await pilot.pause(0.2)


async def prepare(miv: Minivirt) -> None:
    from minivirt_core.recipes import load_recipe
    from minivirt_core.recipes.build import Builder

    miv.db.ensure()
    tags = miv.images.tags()
    if "tiny" not in tags:
        await Builder(miv.vms, load_recipe(RECIPES / "tiny.yaml")).build(["tiny"])
    if "web" not in miv.vms.names():
        await miv.vms.create("tiny", "web", memory=256, ports=["8080:80"])
    if "db" not in miv.vms.names():
        await miv.vms.create("tiny", "db", memory=256)
    if not miv.remotes.list():
        repo = miv.db.root.parent / "repo"
        repo.mkdir(exist_ok=True)
        miv.remotes.add("shared", f"file://{repo}")
        await miv.remotes.push("shared", "tiny", "tiny-{arch}")
    if not miv.vms.status("web").running:
        await miv.vms.start("web", wait_for_ssh=120)


async def shoot(out: Path) -> None:
    db = machine_cache_dir() / "screenshot-demo" / "db"
    miv = Minivirt(db)
    await prepare(miv)
    os.chdir(RECIPES.parent)  # so the Build dialog's default recipe path exists
    app = MivApp(miv, refresh_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        vms_table = app.query_one("#vms", VmsTable)
        await _until(pilot, lambda: vms_table.row_count >= 2, 30)
        await _until(pilot, lambda: "(" in app.accel_text, 60)
        await pilot.pause(2)
        app.save_screenshot(str(out / "main.svg"))

        vms_table.focus()
        await pilot.pause(0.2)
        assert app.snapshot is not None
        vms_table.move_cursor(row=[v.name for v in app.snapshot.vms].index("web"))
        await pilot.press("a")
        await _until(pilot, lambda: bool(app.query(SerialTerminal)), 10)
        term = app.query_one(SerialTerminal)
        await _until(pilot, lambda: term.attached, 10)
        term.send(b"\r")
        await _until(pilot, lambda: "login:" in term.text() or "#" in term.text(), 30)
        if "login:" in term.text().strip().splitlines()[-1]:
            term.send(b"root\r")
            await pilot.pause(1.5)
        term.send(b"uname -a; ls --color=always /; cat /etc/motd\r")
        await _until(pilot, lambda: "Linux tiny" in term.text(), 20)
        await pilot.pause(1)
        app.save_screenshot(str(out / "console.svg"))

        app.query_one("#images").focus()
        await pilot.press("b")
        await pilot.pause(0.5)
        await pilot.click("#submit")
        await _until(pilot, lambda: bool(app.query(JobView)), 10)
        view = app.query_one(JobView)
        from textual.widgets import Log

        await _until(pilot, lambda: "login:" in "".join(view._pending) or view.finished or
                     "login:" in "\n".join(view.query_one(Log).lines), 120)
        await pilot.pause(1)
        app.save_screenshot(str(out / "build.svg"))
        if view.worker is not None:
            view.worker.cancel()
        await _until(pilot, lambda: view.finished, 60)
    await miv.vms.stop("web")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot(out))
    for name in ("main", "console", "build"):
        print(out / f"{name}.svg")


if __name__ == "__main__":
    main()
