"""The minivirt dashboard: images, VMs, remotes, and live output, in one screen.

The App owns the core services (injected, so tests can point it at a temporary
database). Every operation is a core coroutine run in a worker; failures go through
one handler and become notifications (or a report for unexpected errors), so a failed
operation never ends the app. Quitting leaves running VMs running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static, TabbedContent, TabPane

from minivirt_core import Minivirt, MinivirtError

from ..render import home_short
from .actions_images import ImageActions
from .actions_remotes import RemoteActions
from .actions_vms import VmActions
from .modals import Field, FormModal, ReportModal
from .output import EventsLog, JobView
from .state import Snapshot, StateReader
from .tables import ImagesTable, RemotesTable, VmsTable
from .terminal import SerialTerminal

PALETTE = [
    ("Build an image from a recipe", "build"), ("Check the database (fsck)", "fsck"),
    ("Doctor: what this host has", "doctor"), ("Prune unused images", "prune"),
    ("Run the selected image", "run_image"), ("Create a VM from the selected image", "create_vm"),
    ("Tag the selected image", "tag_image"), ("Untag the selected image", "untag_image"),
    ("Push the selected image", "push_image"), ("Save the selected image to a file", "save_image"),
    ("Start the selected VM", "start_vm"), ("Stop the selected VM", "stop_vm"), ("Kill the selected VM", "kill_vm"),
    ("Destroy the selected VM", "destroy_vm"), ("Attach the selected VM's console", "attach_console"),
    ("SSH into the selected VM", "ssh_vm"), ("Commit the selected VM as an image", "commit_vm"),
    ("Copy a file to or from the selected VM", "copy_file"), ("Add a remote", "add_remote"),
    ("Remove the selected remote", "remove_remote"), ("Pull from the selected remote", "pull_image"),
]


class MivCommands(Provider):
    """Every dashboard action in the command palette."""

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action in PALETTE:
            if (score := matcher.match(title)) > 0:
                yield Hit(score, matcher.highlight(title), lambda a=action: self.app.run_action(a), help=title)


class MivApp(ImageActions, VmActions, RemoteActions):
    """``miv tui``."""

    CSS_PATH = "app.tcss"
    TITLE = "minivirt"
    COMMANDS = App.COMMANDS | {MivCommands}
    BINDINGS = [
        Binding("b", "build", "Build"),
        Binding("f", "fsck", "fsck"),
        Binding("D", "doctor", "Doctor"),
        Binding("w", "close_tab", "Close tab"),
        Binding("1", "focus('images')", "Images", show=False),
        Binding("2", "focus('vms')", "VMs", show=False),
        Binding("3", "focus('remotes')", "Remotes", show=False),
        Binding("4", "focus_output", "Output", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, miv: Minivirt | None = None, *, clock: Callable[[], float] = time.time,
                 refresh_interval: float = 1.0, probe_accel: bool = True, cursor_blink: bool = True) -> None:
        super().__init__()
        self.cursor_blink = cursor_blink
        self.miv = miv or Minivirt()
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.probe_accel = probe_accel
        self.snapshot: Snapshot | None = None
        self.accel_text = "accelerator: …"
        self._reader = StateReader(self.miv)
        self._main_thread = threading.get_ident()
        self._ephemeral: set[str] = set()
        self._job_count = 0

    # Layout -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="topbar")
        with Horizontal(id="upper"):
            with Vertical(id="images-pane", classes="pane"):
                yield ImagesTable(clock=self.clock, id="images")
            with Vertical(id="remotes-pane", classes="pane"):
                yield RemotesTable(clock=self.clock, id="remotes")
        with Vertical(id="lower", classes="pane"):
            yield VmsTable(clock=self.clock, id="vms")
        with TabbedContent(id="output"), TabPane("Events", id="tab-events"):
            yield EventsLog(clock=self.clock, id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.miv.db.ensure()
        self.query_one("#images-pane").border_title = "Images [1]"
        self.query_one("#remotes-pane").border_title = "Remotes [3]"
        self.query_one("#lower").border_title = "VMs [2]"
        self.query_one("#output").border_title = "Output [4]"
        self._update_topbar()
        self.refresh_state()
        self.set_interval(self.refresh_interval, self.refresh_state)
        if self.probe_accel:
            self._find_accel()
        self.query_one("#images", ImagesTable).focus()
        self.log_event(f"database {home_short(str(self.miv.db.root))}")

    async def on_unmount(self) -> None:
        # `run` VMs live as long as their console tab; everything else keeps running.
        for name in list(self._ephemeral):
            try:
                await self.miv.vms.destroy(name)
            except MinivirtError:
                pass

    def _update_topbar(self) -> None:
        self.query_one("#topbar", Static).update(f"minivirt │ {home_short(str(self.miv.db.root))} │ {self.accel_text}")

    @work(group="accel", exit_on_error=False)
    async def _find_accel(self) -> None:
        choice = await self.miv.vms.accelerator()
        self.accel_text = f"accelerator: {choice.accel} ({choice.reason})"
        self._update_topbar()

    # State ---------------------------------------------------------------------

    def refresh_state(self) -> None:
        self.run_worker(self._read_state, thread=True, group="refresh", exclusive=True, exit_on_error=False)

    def _read_state(self) -> None:
        snap = self._reader.read()
        self.call_from_thread(self.apply_snapshot, snap)

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.query_one("#images", ImagesTable).update_from(snap)
        self.query_one("#vms", VmsTable).update_from(snap)
        self.query_one("#remotes", RemotesTable).update_from(snap)

    # Global actions -----------------------------------------------------------------------

    def action_build(self) -> None:
        default = Path("recipes") / "tiny.yaml"

        def go(values: dict[str, str]) -> None:
            tags = [t for t in values["tags"].replace(",", " ").split() if t]

            async def run(view: JobView) -> str:
                from minivirt_core.recipes import events, load_recipe
                from minivirt_core.recipes.build import Builder

                recipe = load_recipe(Path(values["recipe"]).expanduser())

                def on_event(event: Any) -> None:
                    if isinstance(event, events.Output):
                        view.write(event.data.decode(errors="replace").replace("\r\n", "\n"))
                    elif isinstance(event, events.StepStarted):
                        view.set_status(f"step {event.number}/{event.total}: {event.title}")
                        view.set_progress(event.number - 1, event.total + len(recipe.tests))
                    elif isinstance(event, events.TestStarted):
                        view.set_status(f"test {event.name}")
                    elif isinstance(event, events.Note):
                        view.write(f"\n[{event.text}]\n")

                result = await Builder(self.miv.vms, recipe, on_event).build(tags)
                image = result.image
                return f"built {image.short_id} ({', '.join(image.tags) or 'untagged'}) in {result.seconds:.0f}s"

            self.job(f"build {Path(values['recipe']).name}", run)

        self.ask(FormModal("Build an image from a recipe", [
            Field("recipe", "Recipe file (it runs code here: build only recipes you trust)",
                  str(default) if default.exists() else ""),
            Field("tags", "Tags (space separated; {arch} allowed)", required=False),
        ], "Build"), go)

    def action_fsck(self) -> None:
        async def run() -> None:
            from minivirt_core.fsck import fsck

            report = await fsck(self.miv.db)
            lines = [f"note: {n}" for n in report.notes] + [str(p) for p in report.problems]
            verdict = "no problems" if report.ok else f"{len(report.problems)} problem(s)"
            lines.append(f"\n{report.images_checked} image(s) checked: {verdict}")
            self.push_screen(ReportModal("fsck", "\n".join(lines), error=not report.ok))

        self.operation("fsck", run())

    def action_doctor(self) -> None:
        async def run() -> None:
            from minivirt_core.doctor import run_checks

            lines = []
            for c in await run_checks(self.miv.db):
                mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
                lines.append(f"{mark} {c.name}: {c.detail}" + (f"\n     {c.fix}" if c.fix and not c.ok else ""))
            self.push_screen(ReportModal("doctor", "\n".join(lines)))

        self.operation("doctor", run())

    async def action_close_tab(self) -> None:
        tabs = self.query_one("#output", TabbedContent)
        active = tabs.active
        if not active or active == "tab-events":
            return
        pane = tabs.get_pane(active)
        for term in pane.query(SerialTerminal):
            await term.detach()
            if term.vm_name in self._ephemeral:
                self._ephemeral.discard(term.vm_name)
                self.operation(f"destroy {term.vm_name}", self._destroy_run(term.vm_name))
        for view in pane.query(JobView):
            if view.worker is not None and not view.finished:
                view.worker.cancel()
        await tabs.remove_pane(active)

    async def _destroy_run(self, name: str) -> str:
        await self.miv.vms.destroy(name)
        return f"destroyed {name} (its console tab was closed)"

    def action_focus_output(self) -> None:
        tabs = self.query_one("#output", TabbedContent)
        if tabs.active:
            pane = tabs.get_pane(tabs.active)
            focusable = pane.query(SerialTerminal) or pane.query("Log")
            if focusable:
                focusable.first().focus()


def run_dashboard() -> None:
    """Entry point of ``miv tui``."""
    MivApp().run()
