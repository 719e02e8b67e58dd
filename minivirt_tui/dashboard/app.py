"""The minivirt dashboard: images, VMs, remotes, and live output, in one screen.

The App owns the core services (injected, so tests can point it at a temporary
database). Every operation is a core coroutine run in a worker; failures go through
one handler and become notifications (or a report for unexpected errors), so a failed
operation never ends the app. Quitting leaves running VMs running.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from minivirt_core import Minivirt, MinivirtError

from .modals import ConfirmModal, Field, FormModal, ReportModal
from .output import EventsLog, JobView
from .state import Snapshot, StateReader
from .tables import ImagesTable, RemotesTable, ResourceTable, VmsTable
from .terminal import LEAVE_KEY_DISPLAY, SerialTerminal

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


class MivApp(App[None]):
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
        self.log_event(f"database {self.miv.db.root}")

    async def on_unmount(self) -> None:
        # `run` VMs live as long as their console tab; everything else keeps running.
        for name in list(self._ephemeral):
            try:
                await self.miv.vms.destroy(name)
            except MinivirtError:
                pass

    def _update_topbar(self) -> None:
        self.query_one("#topbar", Static).update(f"minivirt │ {self.miv.db.root} │ {self.accel_text}")

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

    def log_event(self, text: str) -> None:
        self.query_one("#events", EventsLog).record(text)

    def threadsafe(self, fn: Callable[..., Any]) -> Callable[..., None]:
        """``fn`` made safe to call from worker threads (progress callbacks)."""

        def call(*args: Any) -> None:
            if threading.get_ident() == self._main_thread:
                fn(*args)
            else:
                self.call_from_thread(fn, *args)

        return call

    # Running operations -------------------------------------------------------

    def operation(self, description: str, coro: Awaitable[str | None]) -> Worker[Any]:
        """Run a core coroutine; its result (a sentence) is logged, its failure reported."""

        async def job() -> str | None:
            result = await coro
            self.refresh_state()
            return result

        return self.run_worker(job(), name=description, group="ops", exit_on_error=False)

    def job(self, title: str, make: Callable[[JobView], Awaitable[str | None]]) -> JobView:
        """A long operation with its own output tab: progress, live output, ctrl+x cancels."""
        self._job_count += 1
        pane_id = f"tab-job-{self._job_count}"
        view = JobView(title)
        tabs = self.query_one("#output", TabbedContent)
        tabs.add_pane(TabPane(title, view, id=pane_id))
        tabs.active = pane_id

        async def run() -> str | None:
            try:
                result = await make(view)
            except BaseException as e:
                view.finish("cancelled" if isinstance(e, __import__("asyncio").CancelledError) else f"failed: {e}")
                raise
            view.finish(result or "done")
            self.refresh_state()
            return result

        view.worker = self.run_worker(run(), name=title, group="jobs", exit_on_error=False)
        return view

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group not in ("ops", "jobs", "accel"):
            return
        if event.state == WorkerState.SUCCESS and isinstance(worker.result, str):
            self.log_event(worker.result)
            self.notify(worker.result, timeout=4)
        elif event.state == WorkerState.CANCELLED:
            self.log_event(f"{worker.name}: cancelled")
        elif event.state == WorkerState.ERROR:
            self.report_error(worker.name, worker.error)

    def report_error(self, what: str, error: BaseException | None) -> None:
        if isinstance(error, MinivirtError):
            self.log_event(f"{what} failed: {error.message}")
            self.notify(str(error), title=f"{what} failed", severity="error", timeout=8)
        else:
            detail = "".join(traceback.format_exception(error)) if error else "unknown error"
            self.log_event(f"{what} failed unexpectedly: {error!r}")
            self.push_screen(ReportModal(f"{what} failed unexpectedly", detail, error=True))

    def ask(self, screen: Any, then: Callable[[Any], None]) -> None:
        """Show a modal; call ``then`` with its result unless it was cancelled."""
        if isinstance(screen, FormModal):
            screen.cursor_blink = self.cursor_blink

        def done(result: Any) -> None:
            if result:
                then(result)

        self.push_screen(screen, done)

    # Selection -----------------------------------------------------------------

    def selected(self, table_id: str, what: str) -> str | None:
        key = self.query_one(f"#{table_id}", ResourceTable).selected_key
        if key is None:
            self.notify(f"No {what} selected", severity="warning")
        return key

    def _image_label(self, image_id: str) -> str:
        for image in self.snapshot.images if self.snapshot else ():
            if image.id == image_id:
                return image.label
        return image_id[:12]

    def _image_tags(self, image_id: str) -> tuple[str, ...]:
        for image in self.snapshot.images if self.snapshot else ():
            if image.id == image_id:
                return image.tags
        return ()

    # Image actions -------------------------------------------------------------------

    def action_tag_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return

        def go(values: dict[str, str]) -> None:
            async def run() -> str:
                changes = self.miv.images.tag(image_id, [values["tag"]])
                moved = f" (moved from {changes[0].previous_id[:12]})" if changes[0].previous_id else ""
                return f"tagged {image_id[:12]} as {values['tag']}{moved}"

            self.operation("tag", run())

        self.ask(FormModal(f"Tag image {self._image_label(image_id)}", [Field("tag", "New tag")], "Tag"), go)

    def action_untag_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return
        tags = self._image_tags(image_id)
        if not tags:
            self.notify("This image has no tags", severity="warning")
            return

        def go(values: dict[str, str]) -> None:
            async def run() -> str:
                self.miv.images.untag([values["tag"]])
                return f"untagged {values['tag']}"

            self.operation("untag", run())

        self.ask(FormModal(f"Untag image {image_id[:12]}", [Field("tag", "Tag to remove", options=tags)],
                           "Untag"), go)

    def action_prune(self) -> None:
        def go(confirmed: bool) -> None:
            async def run() -> str:
                from minivirt_core.fsutil import human_size

                report = self.miv.images.prune()
                return (f"pruned {len(report.images)} image(s), {len(report.leftovers)} leftover(s), "
                        f"freed {human_size(report.freed)}")

            self.operation("prune", run())

        self.ask(ConfirmModal("Remove every image that no tag and no VM uses?", "Prune"), go)

    def action_create_vm(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return

        def go(values: dict[str, str]) -> None:
            ports = [p.strip() for p in values["ports"].split(",") if p.strip()]

            async def run() -> str:
                st = await self.miv.vms.create(image_id, values["name"], memory=values["memory"],
                                               cpus=int(values["cpus"] or 1), ports=ports)
                return f"created VM {st.name} from {st.image_label}"

            self.operation("create VM", run())

        self.ask(FormModal(f"Create a VM from {self._image_label(image_id)}", [
            Field("name", "Name"), Field("memory", "Memory (MiB, or 512M, 2G)", "1024"),
            Field("cpus", "CPUs", "1"), Field("ports", "Port forwards (HOST:GUEST, comma separated)", required=False),
        ], "Create"), go)

    def action_run_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return

        async def run() -> str:
            vms = self.miv.vms
            name = vms.ephemeral_name("run")
            await vms.create(image_id, name, memory=256)
            self._ephemeral.add(name)
            try:
                await vms.start(name)
            except BaseException:
                self._ephemeral.discard(name)
                await vms.destroy(name)
                raise
            self.open_console(name, show_log=False)
            return f"running {name} ({self._image_label(image_id)}); closing its tab destroys it"

        self.operation("run", run())

    def action_push_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return
        remotes = [r.name for r in (self.snapshot.remotes if self.snapshot else ())]
        if not remotes:
            self.notify("Add a remote first (Remotes pane, a)", severity="warning")
            return
        tags = self._image_tags(image_id)

        def go(values: dict[str, str]) -> None:
            async def run(view: JobView) -> str:
                progress = self.threadsafe(lambda p: view.set_progress(p.done, p.total))
                view.set_status("compressing and uploading")
                result = await self.miv.remotes.push(values["remote"], image_id, values["tag"], progress)
                return (f"pushed {image_id[:12]} to {values['remote']} as {values['tag']}" if result.uploaded else
                        f"{values['remote']} had {image_id[:12]} already; wrote tag {values['tag']}")

            self.job(f"push {values['tag']}", run)

        self.ask(FormModal(f"Push image {self._image_label(image_id)}", [
            Field("remote", "Remote", options=tuple(remotes)),
            Field("tag", "Tag on the remote ({arch} allowed)", tags[0] if tags else ""),
        ], "Push"), go)

    def action_save_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return

        def go(values: dict[str, str]) -> None:
            path = Path(values["path"]).expanduser()

            async def run(view: JobView) -> str:
                progress = self.threadsafe(lambda p: view.set_progress(p.done, p.total))
                await self.miv.images.save_to_file(image_id, path, progress)
                return f"saved {self._image_label(image_id)} to {path}"

            self.job(f"save {path.name}", run)

        self.ask(FormModal(f"Save image {self._image_label(image_id)} as a tar file",
                           [Field("path", "File (relative to the current folder, or absolute)",
                                  f"{self._image_label(image_id)}.tar")], "Save"), go)

    # VM actions -----------------------------------------------------------------

    def action_start_vm(self) -> None:
        if name := self.selected("vms", "VM"):
            async def run() -> str:
                st = await self.miv.vms.start(name)
                return f"started {name} (ssh port {st.ssh_port})"

            self.operation(f"start {name}", run())

    async def _detach_console(self, name: str) -> SerialTerminal | None:
        """Close our console connection before stopping QEMU (it can deadlock otherwise)."""
        for term in self.query(SerialTerminal):
            if term.vm_name == name:
                await term.detach()
                return term
        return None

    def _resume_console(self, term: SerialTerminal | None) -> None:
        if term is not None and term.is_mounted:
            term.resume()

    def action_stop_vm(self) -> None:
        if name := self.selected("vms", "VM"):
            async def run() -> str:
                term = await self._detach_console(name)
                graceful = await self.miv.vms.stop(name)
                self._resume_console(term)
                return f"stopped {name}" + ("" if graceful else " (forced)")

            self.operation(f"stop {name}", run())

    def action_kill_vm(self) -> None:
        if name := self.selected("vms", "VM"):
            async def run() -> str:
                term = await self._detach_console(name)
                await self.miv.vms.kill(name)
                self._resume_console(term)
                return f"killed {name}"

            self.operation(f"kill {name}", run())

    def action_destroy_vm(self) -> None:
        if not (name := self.selected("vms", "VM")):
            return

        def go(confirmed: bool) -> None:
            async def run() -> str:
                await self._detach_console(name)
                self._close_console_tab(name)
                await self.miv.vms.destroy(name)
                self._ephemeral.discard(name)
                return f"destroyed {name}"

            self.operation(f"destroy {name}", run())

        self.ask(ConfirmModal(f"Destroy VM {name}? Its disk is deleted.", "Destroy"), go)

    def action_attach_console(self) -> None:
        if name := self.selected("vms", "VM"):
            self.open_console(name)

    def console_tab_id(self, name: str) -> str:
        return f"tab-console-{name}"

    def open_console(self, name: str, show_log: bool = True) -> SerialTerminal:
        tabs = self.query_one("#output", TabbedContent)
        pane_id = self.console_tab_id(name)
        existing = self.query(f"#{pane_id} SerialTerminal")
        if existing:
            term = existing.first(SerialTerminal)
        else:
            term = SerialTerminal(name, self.miv.vms.path(name), show_log=show_log)
            tabs.add_pane(TabPane(f"console: {name}", term, id=pane_id))
            self.log_event(f"console of {name} attached ({LEAVE_KEY_DISPLAY} returns to the dashboard)")
        tabs.active = pane_id
        self.call_after_refresh(term.focus)
        return term

    def _close_console_tab(self, name: str) -> None:
        pane_id = self.console_tab_id(name)
        if self.query(f"#{pane_id}"):
            self.query_one("#output", TabbedContent).remove_pane(pane_id)

    @on(SerialTerminal.Left)
    def _left_console(self) -> None:
        self.query_one("#vms", VmsTable).focus()

    @on(SerialTerminal.StateChanged)
    def _console_state(self, event: SerialTerminal.StateChanged) -> None:
        self.log_event(f"console of {event.terminal.vm_name}: {event.text}")

    def action_ssh_vm(self) -> None:
        if not (name := self.selected("vms", "VM")):
            return
        import subprocess

        miv = str(Path(sys.executable).parent / "miv")
        try:
            with self.suspend():
                subprocess.run([miv, "ssh", name], env={**os.environ, "MINIVIRT_DB_PATH": str(self.miv.db.root)})
        except Exception as e:
            self.notify(f"cannot open SSH here: {e}", severity="error")
            return
        self.log_event(f"SSH session to {name} ended")

    def action_commit_vm(self) -> None:
        if not (name := self.selected("vms", "VM")):
            return

        def go(values: dict[str, str]) -> None:
            async def run(view: JobView) -> str:
                view.set_status("converting the disk (qemu-img convert)")
                image = await self.miv.vms.commit(name, [values["tag"]])
                return f"committed {name} as {image.short_id} ({values['tag']})"

            self.job(f"commit {name}", run)

        self.ask(FormModal(f"Commit VM {name} (it must be stopped)", [Field("tag", "Tag for the new image")],
                           "Commit"), go)

    def action_copy_file(self) -> None:
        if not (name := self.selected("vms", "VM")):
            return

        def go(values: dict[str, str]) -> None:
            upload = values["direction"].startswith("host")

            async def run() -> str:
                from minivirt_core import ssh

                port = await self.miv.vms.wait_for_ssh(name, 60)
                conn = await ssh.connect(port)
                try:
                    await ssh.copy(conn, values["src"], values["dest"], upload=upload)
                finally:
                    conn.close()
                return f"copied {values['src']} to {'' if not upload else name + ':'}{values['dest']}"

            self.operation(f"copy to/from {name}", run())

        self.ask(FormModal(f"Copy a file to or from {name}", [
            Field("direction", "Direction", options=("host -> VM", "VM -> host")),
            Field("src", "From (path)"), Field("dest", "To (path)"),
        ], "Copy"), go)

    # Remote actions -----------------------------------------------------------------

    def action_add_remote(self) -> None:
        def go(values: dict[str, str]) -> None:
            async def run() -> str:
                r = self.miv.remotes.add(values["name"], values["url"])
                return f"added remote {r.name} ({r.url})"

            self.operation("add remote", run())

        self.ask(FormModal("Add a remote", [
            Field("name", "Name"), Field("url", "URL", placeholder="https://host/bucket or file:///path"),
        ], "Add"), go)

    def action_remove_remote(self) -> None:
        if not (name := self.selected("remotes", "remote")):
            return

        def go(confirmed: bool) -> None:
            async def run() -> str:
                self.miv.remotes.remove(name)
                return f"removed remote {name}"

            self.operation("remove remote", run())

        self.ask(ConfirmModal(f"Forget remote {name}? (Nothing on the remote changes.)", "Remove"), go)

    def action_pull_image(self) -> None:
        if not (remote := self.selected("remotes", "remote")):
            return
        self._pull_dialog(remote)

    @work(group="ops", exit_on_error=False, name="list remote tags")
    async def _pull_dialog(self, remote: str) -> None:
        try:
            tags = await self.miv.remotes.tags(remote)
        except MinivirtError as e:
            self.log_event(f"cannot list the tags of {remote}: {e.message}")
            tags = []
        tag_field = Field("tag", "Tag on the remote", options=tuple(tags)) if tags else \
            Field("tag", "Tag on the remote ({arch} allowed)")

        def go(values: dict[str, str]) -> None:
            async def run(view: JobView) -> str:
                view.set_status("downloading and verifying")
                result = await self.miv.remotes.pull(remote, values["tag"], values["local"] or None,
                                                     lambda p: view.set_progress(p.done, p.total))
                what = "pulled" if result.downloaded else "already had"
                return f"{what} {result.image.short_id} from {remote} as {', '.join(result.image.tags)}"

            self.job(f"pull {values['tag']}", run)

        self.ask(FormModal(f"Pull from {remote}", [tag_field, Field("local", "Local tag (default: the same)",
                                                                     required=False)], "Pull"), go)

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
            Field("recipe", "Recipe file", str(default) if default.exists() else ""),
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
