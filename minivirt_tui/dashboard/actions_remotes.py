"""The Remotes pane's actions: add, remove, pull, list tags."""

from __future__ import annotations

import asyncio

from textual import work

from minivirt_core import MinivirtError
from minivirt_core.hostinfo import host_arch
from minivirt_core.imageconfig import ARCHES

from .base import DashboardBase
from .modals import ConfirmModal, Field, FormModal
from .output import JobView


class RemoteActions(DashboardBase):
    """Mixed into :class:`~minivirt_tui.dashboard.app.MivApp`."""

    def action_add_remote(self) -> None:
        def go(values: dict[str, str]) -> None:
            insecure = values["insecure"].startswith("yes")

            async def run() -> str:
                r = await asyncio.to_thread(self.miv.remotes.add, values["name"], values["url"], insecure)
                return f"added remote {r.name} ({r.url})"

            self.operation("add remote", run())

        self.ask(FormModal("Add a remote", [
            Field("name", "Name"),
            Field("url", "URL", placeholder="https://host/bucket, file:///path or oci://registry/namespace"),
            Field("insecure", "Plain HTTP (oci:// only: a registry of your own, e.g. on 127.0.0.1)",
                  options=("no", "yes: plain HTTP")),
        ], "Add"), go)

    def action_remote_tags(self) -> None:
        if remote := self.selected("remotes", "remote"):
            self._show_tags(remote)

    @work(group="ops", exit_on_error=False, name="list remote tags")
    async def _show_tags(self, remote: str) -> None:
        """What ``miv remote ls REMOTE`` prints: its tags (a registry's ``NAME:TAG``s)."""
        from .modals import ReportModal

        tags = await self.miv.remotes.tags(remote)
        body = "\n".join(tags) if tags else "no tags (or the remote does not allow listing them)"
        self.push_screen(ReportModal(f"Tags on {remote} ({len(tags)})", body))

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
                progress = self.transfer_progress(view)
                result = await self.miv.remotes.pull(remote, values["tag"], values["local"] or None, progress,
                                                     arch=values["arch"])
                what = "pulled" if result.downloaded else "already had"
                return f"{what} {result.image.short_id} from {remote} as {', '.join(result.image.tags)}"

            self.job(f"pull {values['tag']}", run)

        # The architecture fills `{arch}` in the tags and picks from a tag that holds several (an
        # OCI index): the host's by default, as `miv pull --arch`.
        arch_field = Field("arch", "Architecture", value=host_arch(), options=ARCHES)
        self.ask(FormModal(f"Pull from {remote}", [tag_field, Field("local", "Local tag (default: the same)",
                                                                     required=False), arch_field], "Pull"), go)
