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

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import BindingsMap
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Static, TabbedContent, TabPane

from minivirt_core import Minivirt, MinivirtError

from ..render import home_short
from . import actions
from .actions import Action
from .actions_images import ImageActions
from .actions_remotes import RemoteActions
from .actions_vms import VmActions
from .keys import HelpScreen, KeysBar, MivCommands
from .modals import ConfirmModal, Field, FormModal, ReportModal
from .output import EventsLog, JobView
from .state import Snapshot, StateReader
from .tables import ImagesTable, RemotesTable, ResourceTable, VmsTable
from .terminal import SerialTerminal

MIN_SIZE = (80, 24)  # below this, the panes can't show 3 rows each: a message says so


class MivApp(ImageActions, VmActions, RemoteActions):
    """``miv tui``."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere find it too
    TITLE = "minivirt"
    COMMANDS = {MivCommands}  # every action of ours, once (Textual's own add nothing a user needs here)

    def __init__(self, miv: Minivirt | None = None, *, clock: Callable[[], float] = time.time,
                 refresh_interval: float = 1.0, probe_accel: bool = True, cursor_blink: bool = True) -> None:
        super().__init__()
        # The app's keys come from the declared actions (read now: a new entry counts).
        self._bindings = BindingsMap.merge([self._bindings, BindingsMap(actions.bindings("global") +
                                                                        actions.bindings("tabs"))])
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
                yield Input(placeholder="filter images (tags, id)", id="images-filter", classes="filter")
            with Vertical(id="remotes-pane", classes="pane"):
                yield RemotesTable(clock=self.clock, id="remotes")
                yield Input(placeholder="filter remotes", id="remotes-filter", classes="filter")
        with Vertical(id="lower", classes="pane"):
            yield VmsTable(clock=self.clock, id="vms")
            yield Input(placeholder="filter VMs (name, state, image)", id="vms-filter", classes="filter")
        with TabbedContent(id="output"), TabPane("Events", id="tab-events"):
            yield EventsLog(clock=self.clock, id="events")
        yield KeysBar(self.footer_context, self.action_available, id="keys")
        yield Static(id="too-small")

    def on_mount(self) -> None:
        self.miv.db.ensure()
        for table in self.query(ResourceTable):
            table._update_title()
        for box in self.query(".filter").results(Input):
            box.cursor_blink = self.cursor_blink
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

    def on_resize(self, event: events.Resize) -> None:
        width, height = event.size
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        main = self.screen_stack[0] if self.screen_stack else self.screen
        main.set_class(small, "-too-small")
        if small:
            self.query_one("#too-small", Static).update(
                f"The terminal is {width}x{height}: minivirt needs at least {MIN_SIZE[0]}x{MIN_SIZE[1]}.\n"
                "Make the window bigger (q quits).")

    # Keys ----------------------------------------------------------------------

    def footer_context(self) -> str:
        """Where the focus is, as the footer's context: a pane, ``console`` or ``output``."""
        node = self.focused
        while node is not None:
            if isinstance(node, SerialTerminal):
                return "console"
            if isinstance(node, ResourceTable):
                return node.PANE
            if node.id == "output":
                return "output"
            node = node.parent  # type: ignore[assignment]
        return "global"

    def action_available(self, action: Action) -> bool:
        """Whether the footer shows ``action`` now (cancel only while a job's tab is shown)."""
        if action.name == "cancel_job":
            return self.shown_job() is not None
        return True

    def refresh_keys(self) -> None:
        for bar in self.query(KeysBar):
            bar.update_keys()

    @on(TabbedContent.TabActivated)
    def _tab_shown(self) -> None:
        self.refresh_keys()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

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

    def action_cache_file(self) -> None:
        """The twin of ``miv cache add URL FILE [--sha256]``."""
        from minivirt_core.download import add_to_cache, shown_url
        from minivirt_core.fsutil import human_size

        def go(values: dict[str, str]) -> None:
            url, file = values["url"], Path(values["file"]).expanduser()

            async def run(view: JobView) -> str:
                view.set_status("copying" + (" and verifying its sha256" if values["sha256"] else ""))
                cached = await add_to_cache(url, file, self.miv.db.cache_dir, values["sha256"] or None)
                return f"cached {file} ({human_size(cached.stat().st_size)}) as {shown_url(url)}"

            self.job(f"cache {file.name}", run)

        def is_file(text: str) -> None:
            if not Path(text).expanduser().is_file():
                raise ValueError(f"{text!r} is not a file")

        def is_sha256(text: str) -> None:
            if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
                raise ValueError("64 hex digits")

        def is_url(text: str) -> None:
            if not text.startswith(("http://", "https://", "file://")):
                raise ValueError("an http, https or file URL (the one a recipe downloads)")

        self.ask(FormModal("Put a file into the download cache", [
            Field("url", "URL (a recipe's download of it then uses the file)",
                  placeholder="https://example.org/images/disk.qcow2",
                  check=is_url),
            Field("file", "File", check=is_file),
            Field("sha256", "SHA256 the file must have (optional)", required=False, check=is_sha256),
        ], "Cache"), go)

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

    def shown_job(self) -> JobView | None:
        """The running job whose tab is shown, if any."""
        tabs = self.query_one("#output", TabbedContent)
        if not tabs.active or tabs.active == "tab-events":
            return None
        for view in tabs.get_pane(tabs.active).query(JobView):
            if not view.finished:
                return view
        return None

    def action_cancel_job(self) -> None:
        if (view := self.shown_job()) is not None:
            view.cancel()
        else:
            self.notify("No running job in the tab shown", severity="warning")

    def _switch_tab(self, step: int) -> None:
        tabs = self.query_one("#output", TabbedContent)
        ids = [p.id for p in tabs.query(TabPane) if p.id]
        if not ids:
            return
        was_in_output = self.footer_context() in ("console", "output")
        index = ids.index(tabs.active) if tabs.active in ids else 0
        tabs.active = ids[(index + step) % len(ids)]
        if was_in_output:
            self.call_after_refresh(self.action_focus_output)

    def action_previous_tab(self) -> None:
        self._switch_tab(-1)

    def action_next_tab(self) -> None:
        self._switch_tab(1)

    # Filter and sort -----------------------------------------------------------

    def focused_table(self) -> ResourceTable | None:
        node = self.focused
        if isinstance(node, Input) and node.has_class("filter"):
            return self.query_one(f"#{node.id.removesuffix('-filter')}", ResourceTable)  # type: ignore[union-attr]
        return node if isinstance(node, ResourceTable) else None

    def action_filter(self) -> None:
        if (table := self.focused_table()) is None:
            self.notify("Focus a pane to filter it (1, 2, 3)", severity="warning")
            return
        box = self.query_one(f"#{table.id}-filter", Input)
        box.display = True
        box.value = table.filter_text
        box.focus()

    @on(Input.Changed, ".filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        table = self.query_one(f"#{event.input.id.removesuffix('-filter')}", ResourceTable)  # type: ignore[union-attr]
        table.set_filter(event.value)

    @on(Input.Submitted, ".filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        table = self.query_one(f"#{event.input.id.removesuffix('-filter')}", ResourceTable)  # type: ignore[union-attr]
        if not event.value:
            event.input.display = False
        table.focus()

    def on_key(self, event: events.Key) -> None:
        if event.key != "escape":
            return
        focused = self.focused
        table = self.focused_table()
        if table is not None and (table.filter_text or isinstance(focused, Input)):
            event.stop()
            table.set_filter("")
            box = self.query_one(f"#{table.id}-filter", Input)
            box.value = ""
            box.display = False
            table.focus()

    def action_sort(self) -> None:
        if (table := self.focused_table()) is None:
            self.notify("Focus a pane to sort it (1, 2, 3)", severity="warning")
            return
        table.cycle_sort()

    # Quitting --------------------------------------------------------------------

    async def action_quit(self) -> None:
        jobs = [v for v in self.query(JobView) if not v.finished]
        if not jobs:
            self.exit()
            return
        lines = [f"  {v.title}: {v.status_text}" for v in jobs]
        lines += [f"  throw-away VM {n} (destroyed with its tab)" for n in sorted(self._ephemeral)]

        def go(confirmed: bool) -> None:
            if confirmed:
                self.exit()

        self.ask(ConfirmModal(f"Quit? {len(jobs)} job(s) running will be cancelled:", "Quit",
                              "\n".join(lines)), go)

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
