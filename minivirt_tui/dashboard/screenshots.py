"""Make the README's screenshots: the dashboard on a demo database with real content.

    python -m minivirt_tui.dashboard.screenshots OUT_DIR

Builds (or reuses) the tiny image in a demo database kept under ~/.cache/minivirt, with
two VMs and a file remote, then drives the dashboard with Textual's pilot through a
short, real session (start a VM, pull, build) and saves SVGs of the main
screen, a filtered pane, the inspect view, an attached console and a live build. The
demo database sits in a home folder of its own, so the pictures show
``~/.local/state/minivirt`` and nothing of the machine that made them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from minivirt_core import Minivirt
from minivirt_core.hostinfo import machine_cache_dir

SIZE = (120, 40)
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SHOTS = ("main", "filter", "inspect", "console", "build")
# A small recipe of the kind a user writes: from the tiny image, configured over SSH.
WEB_RECIPE = """\
from: tiny
memory: 256
steps:
  - uses: run
    with:
      steps:
        - name: Install the page
          run: mkdir -p /srv/www && echo 'hello from minivirt' > /srv/www/index.html
tests:
  - name: The page is there
    run: cat /srv/www/index.html
    expect: hello from minivirt
"""


async def _until(pilot, predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            events = "\n".join(pilot.app.screen_stack[0].query_one("#events").lines)
            raise TimeoutError(f"the dashboard did not reach the expected state; its events:\n{events}")
        await pilot.pause(0.2)


async def prepare(miv: Minivirt, home: Path) -> None:
    from minivirt_core.recipes import load_recipe
    from minivirt_core.recipes.build import Builder

    miv.db.ensure()
    if "tiny" not in miv.images.tags():
        await Builder(miv.vms, load_recipe(RECIPES / "tiny.yaml")).build(["tiny"])
    for name in ("web", "db"):
        if name in miv.vms.names():
            st = miv.vms.status(name)
            if st.running:
                await miv.vms.stop(name)
            await miv.vms.destroy(name)
    await miv.vms.create("tiny", "web", memory=256, ports=["8080:80"])
    await miv.vms.create("tiny", "db", memory=256)
    for tag in set(miv.images.tags()) - {"tiny"}:
        miv.images.untag([tag])
    miv.images.prune()
    if not miv.remotes.list():
        repo = home / "shared-images"
        repo.mkdir(exist_ok=True)
        miv.remotes.add("shared", f"file://{repo}")
    await miv.remotes.push("shared", "tiny", "tiny-{arch}")
    (home / "web.yaml").write_text(WEB_RECIPE)


async def shoot(out: Path) -> None:
    # The demo's own home folder; the machine's cache stays where it is (accelerator facts).
    base = machine_cache_dir() / "screenshot-demo"
    home = base / "home"
    db = home / ".local" / "state" / "minivirt"
    os.environ.setdefault("XDG_CACHE_HOME", str(machine_cache_dir().parent))
    home.mkdir(parents=True, exist_ok=True)
    miv = Minivirt(db)
    await prepare(miv, home)
    os.environ["HOME"] = str(home)  # paths under it show as ~/...
    os.environ["TZ"] = "UTC"
    time.tzset()
    os.chdir(home)  # the Build dialog proposes web.yaml from here

    from textual.widgets import Log, TabbedContent

    from .app import MivApp
    from .modals import FormModal, ReportModal
    from .output import JobView
    from .tables import ImagesTable, VmsTable
    from .terminal import SerialTerminal

    app = MivApp(miv, refresh_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        images, vms = app.query_one("#images", ImagesTable), app.query_one("#vms", VmsTable)

        async def submit(**values: str) -> None:
            await _until(pilot, lambda: isinstance(app.screen, FormModal), 20)
            for name, value in values.items():
                app.screen.query_one(f"#field-{name}").value = value  # type: ignore[attr-defined]
            await pilot.pause(0.2)
            await pilot.press("enter")
            await _until(pilot, lambda: not isinstance(app.screen, FormModal), 10)

        def events() -> str:
            return "\n".join(app.query_one("#events", Log).lines)

        await _until(pilot, lambda: vms.row_count >= 2, 30)
        await _until(pilot, lambda: "(" in app.accel_text, 60)
        # A short session: start web, pull from the shared remote, build an image from web.yaml.
        vms.focus()
        vms.select("web")
        await pilot.press("s")
        await _until(pilot, lambda: "started web" in events(), 120)
        await miv.vms.wait_for_ssh("web", 120)
        await pilot.press("3", "l")
        await submit(tag=f"tiny-{os.uname().machine}", local="tiny-stable")
        await _until(pilot, lambda: "from shared" in events(), 60)
        app.query_one("#images").focus()
        await pilot.press("b")
        await submit(recipe="web.yaml", tags="web-v1")
        await _until(pilot, lambda: len(app.query(JobView)) == 2, 10)  # the pull's, then the build's
        view = list(app.query(JobView))[-1]
        await _until(pilot, lambda: view.finished or "login:" in "\n".join(view.query_one(Log).lines[-30:]), 180)
        await pilot.pause(1)
        app.save_screenshot(str(out / "build.svg"))
        await _until(pilot, lambda: view.finished, 300)
        while app.query_one(TabbedContent).active != "tab-events":
            await pilot.press("alt+left")  # back to the events tab
        await pilot.press("1")
        await _until(pilot, lambda: images.row_count >= 2, 10)
        await pilot.pause(2)
        app.save_screenshot(str(out / "main.svg"))

        await pilot.press("slash", "w", "e", "b")
        await pilot.pause(0.5)
        app.save_screenshot(str(out / "filter.svg"))
        await pilot.press("escape")

        vms.focus()
        vms.select("web")
        await pilot.press("i")
        await _until(pilot, lambda: isinstance(app.screen, ReportModal), 20)
        await pilot.pause(0.5)
        app.save_screenshot(str(out / "inspect.svg"))
        await pilot.press("escape")

        await pilot.press("a")
        await _until(pilot, lambda: bool(app.query(SerialTerminal)), 10)
        term = app.query_one(SerialTerminal)
        await _until(pilot, lambda: term.attached, 10)
        term.send(b"\r")
        await _until(pilot, lambda: "login:" in term.text() or "#" in term.text(), 30)
        if "login:" in term.text().strip().splitlines()[-1]:
            term.send(b"root\r")
            await _until(pilot, lambda: "#" in term.text(), 30)
        term.send(b"uname -a; ls --color=always /; cat /etc/motd\r")
        await _until(pilot, lambda: "Linux tiny" in term.text(), 20)
        await pilot.pause(1)
        app.save_screenshot(str(out / "console.svg"))
        await pilot.press("ctrl+right_square_bracket")

    await miv.vms.stop("web")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot(out))
    for name in SHOTS:
        print(out / f"{name}.svg")


if __name__ == "__main__":
    main()
