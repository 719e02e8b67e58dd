"""The Images pane's actions: run, create VM, tag, untag, push, save, inspect, prune."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual import work

from minivirt_core import defaults

from ..render import home_short
from .base import DashboardBase
from .modals import ConfirmModal, Field, FormModal
from .output import JobView


class ImageActions(DashboardBase):
    """Mixed into :class:`~minivirt_tui.dashboard.app.MivApp`."""

    def action_tag_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return

        def go(values: dict[str, str]) -> None:
            async def run() -> str:
                changes = await asyncio.to_thread(self.miv.images.tag, image_id, [values["tag"]])
                moved = f" (moved from {changes[0].previous_id[:12]})" if changes[0].previous_id else ""
                return f"tagged {image_id[:12]} as {values['tag']}{moved}"

            self.operation("tag", run())

        from minivirt_core.names import validate_tag

        self.ask(FormModal(f"Tag image {self.image_name(image_id)}", [Field("tag", "New tag", check=validate_tag)],
                           "Tag"), go)

    def action_untag_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return
        tags = self._image_tags(image_id)
        if not tags:
            self.notify("This image has no tags", severity="warning")
            return

        def go(values: dict[str, str]) -> None:
            async def run() -> str:
                await asyncio.to_thread(self.miv.images.untag, [values["tag"]])
                return f"untagged {values['tag']}"

            self.operation("untag", run())

        self.ask(FormModal(f"Untag image {self.image_name(image_id)}", [
            Field("tag", "Tag to remove", self.image_reference(image_id) or "", options=tags)], "Untag"), go)

    def action_prune(self) -> None:
        self._ask_prune()

    @work(group="ops", exit_on_error=False, name="prune")
    async def _ask_prune(self) -> None:
        """List what a prune would remove and the space it frees, then ask."""
        from minivirt_core.fsutil import human_size

        plan = await asyncio.to_thread(self.miv.images.prune, True)  # a dry run: it only looks
        sizes = {i.id: i.size for i in (self.snapshot.images if self.snapshot else ())}
        lines = [f"  image {i[:12]}  {human_size(sizes[i]) if i in sizes else ''}".rstrip() for i in plan.images]
        lines += [f"  throw-away VM {n} (its process is gone)" for n in plan.vms]
        lines += [f"  leftover {home_short(str(p))}" for p in plan.leftovers]
        if not lines:
            self.notify("Nothing to prune: every image has a tag or a VM", timeout=4)
            return

        def go(confirmed: bool) -> None:
            async def run() -> str:
                from minivirt_core.fsutil import human_size

                report = await asyncio.to_thread(self.miv.images.prune, False, plan)  # only what was listed
                return (f"pruned {len(report.images)} image(s), {len(report.leftovers)} leftover(s), "
                        f"freed {human_size(report.freed)}")

            self.operation("prune", run())

        self.ask(ConfirmModal(f"Prune? This frees {human_size(plan.freed)} by removing:", "Prune", "\n".join(lines)),
                 go)

    def action_create_vm(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return

        def go(values: dict[str, str]) -> None:
            ports = [p.strip() for p in values["ports"].split(",") if p.strip()]

            reference = self.chosen_reference(image_id, values)  # the VM remembers it, as `miv create` does

            async def run() -> str:
                st = await self.miv.vms.create(reference, values["name"], memory=values["memory"],
                                               cpus=int(values["cpus"] or defaults.CPUS), ports=ports)
                return f"created VM {st.name} from {st.image_label}"

            self.operation("create VM", run())

        from minivirt_core.names import validate_vm_name
        from minivirt_core.ports import parse_forward
        from minivirt_core.vmconfig import parse_cpus, parse_memory

        def ports_ok(text: str) -> None:
            for p in text.split(","):
                if p.strip():
                    parse_forward(p.strip())

        def cpus_ok(text: str) -> None:
            if not text.isdigit():
                raise ValueError(f"{text!r} is not a whole number")
            parse_cpus(int(text))

        def name_free(name: str) -> None:
            validate_vm_name(name)
            if self.miv.vms.path(name).exists():
                raise ValueError(f"a VM named {name!r} exists already")

        tags = self._image_tags(image_id)
        base = self.image_reference(image_id) or (tags[0] if tags else image_id[:12])
        self.ask(FormModal(f"Create a VM from {self.image_name(image_id)}", [
            *self.reference_field(image_id),
            Field("name", "Name", self._free_vm_name(base), check=name_free),
            Field("memory", "Memory (MiB, or 512M, 2G)", str(defaults.MEMORY_MB), check=parse_memory),
            Field("cpus", "CPUs", str(defaults.CPUS), check=cpus_ok),
            Field("ports", "Port forwards (HOST:GUEST, comma separated)", required=False, check=ports_ok),
        ], "Create"), go)

    def _free_vm_name(self, label: str) -> str:
        """``tiny-1``, ``tiny-2``…: the first name no VM has, from the image's label."""
        base = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "-" for c in label).strip("-._")
        base = (base or "vm")[:40]
        if not base[0].isalnum():
            base = "vm-" + base
        taken = set(self.miv.vms.names())
        n = 1
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    def action_inspect_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return

        async def run() -> None:
            from minivirt_core.inspect import inspect_image

            self.show_inspect(f"image {self.image_name(image_id)}", await inspect_image(self.miv.db, image_id))

        self.operation("inspect", run())

    def action_run_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return
        reference = self.image_reference(image_id) or image_id  # what the VMs pane shows for it
        shown = self.image_name(image_id)

        async def run() -> str:
            vms = self.miv.vms
            name = vms.ephemeral_name("run")
            await vms.create(reference, name, memory=defaults.MEMORY_MB, cpus=defaults.CPUS, throwaway=True)
            self._ephemeral.add(name)
            try:
                await vms.start(name)
            except BaseException:
                self._ephemeral.discard(name)
                await vms.destroy(name)
                raise
            await self.open_console(name, show_log=False)
            return f"running {name} ({shown}); closing its tab destroys it"

        self.operation("run", run())

    def action_push_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return
        remotes = [r.name for r in (self.snapshot.remotes if self.snapshot else ())]
        if not remotes:
            self.notify("Add a remote first (Remotes pane, a)", severity="warning")
            return
        tags = self._image_tags(image_id)
        shown = self.image_name(image_id)

        def go(values: dict[str, str]) -> None:
            async def run(view: JobView) -> str:
                progress = self.transfer_progress(view)
                view.set_status("compressing and uploading")
                result = await self.miv.remotes.push(values["remote"], image_id, values["tag"], progress)
                return (f"pushed {shown} to {values['remote']} as {values['tag']}" if result.uploaded else
                        f"{values['remote']} had {shown} already; wrote tag {values['tag']}")

            self.job(f"push {values['tag']}", run)

        self.ask(FormModal(f"Push image {shown}", [
            Field("remote", "Remote", options=tuple(remotes)),
            Field("tag", "Tag on the remote ({arch} allowed)", self.image_reference(image_id) or "",
                  placeholder=f"e.g. {' or '.join(tags)}" if tags else ""),
        ], "Push"), go)

    def action_save_image(self) -> None:
        if not (image_id := self.selected("images", "image")):
            return
        shown = self.image_name(image_id)

        def go(values: dict[str, str]) -> None:
            path = Path(values["path"]).expanduser()

            async def run(view: JobView) -> str:
                progress = self.transfer_progress(view)
                await self.miv.images.save_to_file(image_id, path, progress)
                return f"saved {shown} to {path}"

            self.job(f"save {path.name}", run)

        self.ask(FormModal(f"Save image {shown} as a tar file",
                           [Field("path", "File (relative to the current folder, or absolute)",
                                  f"{self.image_reference(image_id) or image_id[:12]}.tar")], "Save"), go)
