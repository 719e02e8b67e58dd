"""The Remotes pane's actions: add, remove, pull."""

from __future__ import annotations

import asyncio

from textual import work

from minivirt_core import MinivirtError

from .base import DashboardBase
from .modals import ConfirmModal, Field, FormModal
from .output import JobView


class RemoteActions(DashboardBase):
    """Mixed into :class:`~minivirt_tui.dashboard.app.MivApp`."""

    def action_add_remote(self) -> None:
        def go(values: dict[str, str]) -> None:
            async def run() -> str:
                r = await asyncio.to_thread(self.miv.remotes.add, values["name"], values["url"])
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
                await asyncio.to_thread(self.miv.remotes.remove, name)
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
                progress = self.threadsafe(lambda p: view.set_progress(p.done, p.total))
                result = await self.miv.remotes.pull(remote, values["tag"], values["local"] or None, progress)
                what = "pulled" if result.downloaded else "already had"
                return f"{what} {result.image.short_id} from {remote} as {', '.join(result.image.tags)}"

            self.job(f"pull {values['tag']}", run)

        self.ask(FormModal(f"Pull from {remote}", [tag_field, Field("local", "Local tag (default: the same)",
                                                                     required=False)], "Pull"), go)
