"""What every dashboard action relies on: running core work as workers and jobs, asking
through modals, the selected row, the events log. The pane mixins and the App share it."""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from textual import on
from textual.app import App
from textual.widgets import TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from minivirt_core import Minivirt, MinivirtError

from .modals import Field, FormModal, ReportModal, describe
from .output import EventsLog, JobView
from .state import Snapshot
from .tables import ResourceTable


class DashboardBase(App[None]):
    """The dashboard's shared machinery (the App's ``__init__`` sets these)."""

    miv: Minivirt
    snapshot: Snapshot | None
    cursor_blink: bool
    _main_thread: int
    _ephemeral: set[str]
    _job_count: int

    def refresh_state(self) -> None:
        """Read the database again (the App does it)."""
        raise NotImplementedError

    async def open_console(self, name: str, show_log: bool = True) -> Any:
        """Open (or focus) the console tab of VM ``name`` (the VMs pane does it)."""
        raise NotImplementedError

    def refresh_keys(self) -> None:
        """Show the keys that work now in the footer (the App does it)."""

    def log_event(self, text: str) -> None:
        self.query_one("#events", EventsLog).record(text)

    def threadsafe(self, fn: Callable[..., Any]) -> Callable[..., None]:
        """``fn`` made safe to call from worker threads (progress callbacks): from another
        thread the call is queued on the app's loop, and the thread does not wait for it.
        Call this on the app's thread."""
        loop = asyncio.get_running_loop()

        def call(*args: Any) -> None:
            if threading.get_ident() == self._main_thread:
                fn(*args)
                return
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass  # the app has closed: nobody is watching any more

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

        def label() -> str:
            return f"{title} · {view.outcome}" if view.finished else title

        async def show() -> None:
            await tabs.add_pane(TabPane(label(), view, id=pane_id))  # the pane must exist to be active
            tabs.active = pane_id

        self.call_next(show)

        def ended() -> None:
            if self.query(f"#{pane_id}"):
                tabs.get_tab(pane_id).label = label()
            self.call_later(self.refresh_keys)

        async def run() -> str | None:
            try:
                result = await make(view)
            except BaseException as e:
                cancelled = isinstance(e, asyncio.CancelledError)
                view.finish("cancelled" if cancelled else f"failed: {e}", "cancelled" if cancelled else "failed")
                ended()
                raise
            view.finish(result or "done")
            ended()
            self.refresh_state()
            return result

        view.worker = self.run_worker(run(), name=title, group="jobs", exit_on_error=False)
        return view

    def transfer_progress(self, view: JobView) -> Callable[[Any], None]:
        """A progress callback for a core transfer (called from its thread): it shows the
        figures in ``view``; once the job is cancelled it raises ``Cancelled`` in that
        thread, so work the core does in a thread (an upload, a save) stops there too,
        instead of finishing unseen after the tab said cancelled."""
        from minivirt_core.download import Cancelled

        show = self.threadsafe(lambda p: view.set_progress(p.done, p.total))

        def progress(p: Any) -> None:
            if view.worker is not None and view.worker.is_cancelled:
                raise Cancelled()
            show(p)

        return progress

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

    def show_inspect(self, title: str, data: dict[str, Any]) -> None:
        """The inspect view of a VM or an image (``data``: core inspect's JSON-ready dict)."""
        import shlex

        from ..render import home_short

        def short(value: Any) -> Any:  # paths under the home folder as ~/...
            if isinstance(value, str):
                return home_short(value)
            if isinstance(value, dict):
                return {k: short(v) for k, v in value.items()}
            if isinstance(value, list):
                return [short(v) for v in value]
            return value

        shown = short(dict(data))
        if isinstance(shown.get("command_line"), list):
            shown["command_line"] = shlex.join(shown["command_line"])
        self.push_screen(ReportModal(title, describe(shown)))

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

    def image_reference(self, image_id: str) -> str | None:
        """How the user named the selected image: the tag typed in the pane's filter, else
        its only tag; None when it has several and nothing says which (the dialogs then ask)."""
        tags = self._image_tags(image_id)
        typed = self.query_one("#images", ResourceTable).filter_text.split()
        for word in typed:
            if word in tags:
                return word
        return tags[0] if len(tags) == 1 else None

    def image_name(self, image_id: str) -> str:
        """The image as the row shows it, for titles and messages: ``tiny`` (the reference
        the user selected or typed), else ``67da1ea8d470 (mytiny tiny)``, else the short id."""
        if ref := self.image_reference(image_id):
            return ref
        tags = self._image_tags(image_id)
        return f"{image_id[:12]} ({' '.join(tags)})" if tags else image_id[:12]

    def reference_field(self, image_id: str) -> list[Field]:
        """A choice of the image's tags when it has several and nothing says which one the
        user means (what a new VM remembers, the default remote tag), else nothing."""
        tags = self._image_tags(image_id)
        if self.image_reference(image_id) is not None or len(tags) < 2:
            return []
        return [Field("reference", "Image (which of its tags)", options=tags)]

    def chosen_reference(self, image_id: str, values: dict[str, str]) -> str:
        """The reference a dialog's answer names: the chosen tag, the one the user named, else the id."""
        return values.get("reference") or self.image_reference(image_id) or image_id

    def _image_tags(self, image_id: str) -> tuple[str, ...]:
        for image in self.snapshot.images if self.snapshot else ():
            if image.id == image_id:
                return image.tags
        return ()
