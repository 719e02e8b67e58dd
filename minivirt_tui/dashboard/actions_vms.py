"""The VMs pane's actions: start, stop, kill, destroy, console, SSH, inspect, commit, copy,
snapshots (save, restore, remove) and port forwards (add, remove)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.widgets import TabbedContent, TabPane

from minivirt_core import MinivirtError
from minivirt_core.rows import kill_message, stop_message

from .base import DashboardBase
from .modals import ConfirmModal, Field, FormModal
from .output import JobView
from .tables import VmsTable
from .terminal import LEAVE_KEY_DISPLAY, SerialTerminal


class VmActions(DashboardBase):
    """Mixed into :class:`~minivirt_tui.dashboard.app.MivApp`."""

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
                outcome = await self.miv.vms.stop(name)
                self._resume_console(term)
                return stop_message(name, outcome)

            self.operation(f"stop {name}", run())

    def action_kill_vm(self) -> None:
        if name := self.selected("vms", "VM"):
            async def run() -> str:
                term = await self._detach_console(name)
                was_running = await self.miv.vms.kill(name)
                self._resume_console(term)
                return kill_message(name, was_running)

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

    def _when_running(self, name: str, what: str, then: Callable[[], Any], wait_for_ssh: bool = False) -> None:
        """Do ``then`` if VM ``name`` runs; else say so plainly and offer to start it first
        (opening nothing)."""
        if self.miv.vms.status(name).running:
            then()
            return
        self.log_event(f"{what}: VM {name} is not running")

        def go(confirmed: bool) -> None:
            async def run() -> str:
                await self.miv.vms.start(name, wait_for_ssh=120 if wait_for_ssh else None)
                self.call_later(then)
                return f"started {name}"

            self.operation(f"start {name}", run())

        self.ask(ConfirmModal(f"VM {name} is not running. Start it, then {what}?", "Start"), go)

    def action_attach_console(self) -> None:
        if name := self.selected("vms", "VM"):
            self._when_running(name, "attach its console", lambda: self.call_later(self.open_console, name))

    def console_tab_id(self, name: str) -> str:
        return f"tab-console-{name}"

    async def open_console(self, name: str, show_log: bool = True) -> SerialTerminal:
        tabs = self.query_one("#output", TabbedContent)
        pane_id = self.console_tab_id(name)
        existing = self.query(f"#{pane_id} SerialTerminal")
        if existing:
            term = existing.first(SerialTerminal)
        else:
            term = SerialTerminal(name, self.miv.vms.path(name), show_log=show_log)
            await tabs.add_pane(TabPane(f"console: {name}", term, id=pane_id))  # before it can be active
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
        hint = f" ({LEAVE_KEY_DISPLAY} returns to the dashboard)" if event.attached else ""
        self.log_event(f"console of {event.terminal.vm_name}: {event.text}{hint}")

    def action_ssh_vm(self) -> None:
        if name := self.selected("vms", "VM"):
            self._when_running(name, "open an SSH session", lambda: self._ssh(name), wait_for_ssh=True)

    def _ssh(self, name: str) -> None:
        import subprocess

        miv = str(Path(sys.executable).parent / "miv")
        try:
            with self.suspend():
                subprocess.run([miv, "ssh", name], env={**os.environ, "MINIVIRT_DB_PATH": str(self.miv.db.root)})
        except Exception as e:
            self.notify(f"cannot open SSH here: {e}", severity="error")
            return
        self.log_event(f"SSH session to {name} ended")

    def action_inspect_vm(self) -> None:
        if not (name := self.selected("vms", "VM")):
            return

        async def run() -> None:
            from minivirt_core.inspect import inspect_vm

            self.show_inspect(f"VM {name}", await inspect_vm(self.miv.db, name))

        self.operation(f"inspect {name}", run())

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

                conn = await self.miv.vms.ssh_connect(name, 60)
                try:
                    await ssh.copy(conn, values["src"], values["dest"], upload=upload, guest=f"VM {name}")
                finally:
                    conn.close()
                return f"copied {values['src']} to {'' if not upload else name + ':'}{values['dest']}"

            self.operation(f"copy to/from {name}", run())

        self.ask(FormModal(f"Copy a file to or from {name}", [
            Field("direction", "Direction", options=("host -> VM", "VM -> host")),
            Field("src", "From (path)"), Field("dest", "To (path)"),
        ], "Copy"), go)

    # Snapshots ------------------------------------------------------------------

    def action_save_snapshot(self) -> None:
        if not (name := self.selected("vms", "VM")):
            return
        from minivirt_core import snapshots

        def go(values: dict[str, str]) -> None:
            async def run() -> str:
                s = await snapshots.save(self.miv.vms, name, values["snapshot"] or None)
                return f"saved snapshot {s.name} of {name} ({'disk and memory' if s.memory else 'disk only'})"

            self.operation(f"snapshot {name}", run())

        running = self.miv.vms.status(name).running
        self.ask(FormModal(f"Snapshot VM {name} ({'live, with its memory' if running else 'its disk'})", [
            Field("snapshot", "Snapshot name (empty: the time)", required=False, placeholder="before-upgrade",
                  check=snapshots.validate_name)], "Save"), go)

    def action_restore_snapshot(self) -> None:
        if name := self.selected("vms", "VM"):
            self._snapshot_dialog(name, restore=True)

    def action_remove_snapshot(self) -> None:
        if name := self.selected("vms", "VM"):
            self._snapshot_dialog(name, restore=False)

    @work(group="ops", exit_on_error=False, name="list snapshots")
    async def _snapshot_dialog(self, name: str, restore: bool) -> None:
        """Choose one of the VM's snapshots (listed first), then restore or remove it."""
        from minivirt_core import snapshots
        from minivirt_core.rows import ago

        found = await snapshots.list_snapshots(self.miv.vms, name)
        if not found:
            self.notify(f"{name} has no snapshots (n saves one)", severity="warning")
            return
        labels = {f"{s.name}  ({'disk and memory' if s.memory else 'disk'}, {ago(s.created)})": s.name
                  for s in reversed(found)}  # the newest first

        def go(values: dict[str, str]) -> None:
            snapshot = labels[values["snapshot"]]

            async def run() -> str:
                if restore:
                    s = await snapshots.restore(self.miv.vms, name, snapshot)
                    return f"restored {name} to snapshot {s.name}" + (", running" if s.memory else "")
                s = await snapshots.remove(self.miv.vms, name, snapshot)
                return f"removed snapshot {s.name} of {name}"

            self.operation(f"{'restore' if restore else 'remove'} snapshot of {name}", run())

        title = (f"Restore VM {name} to a snapshot? What it did since is lost." if restore else
                 f"Delete a snapshot of VM {name}?")
        self.ask(FormModal(title, [Field("snapshot", "Snapshot", options=tuple(labels))],
                           "Restore" if restore else "Delete"), go)

    # Port forwards ----------------------------------------------------------------

    def action_add_port(self) -> None:
        if not (name := self.selected("vms", "VM")):
            return
        from minivirt_core import portfwd
        from minivirt_core.ports import parse_forward

        def go(values: dict[str, str]) -> None:
            async def run() -> str:
                f = await portfwd.add(self.miv.vms, name, values["forward"])
                when = "now and at every start" if self.miv.vms.status(name).running else "from its next start"
                return f"{name}: 127.0.0.1:{f.host_port} -> guest port {f.guest_port}, {when}"

            self.operation(f"add a port to {name}", run())

        self.ask(FormModal(f"Forward a port into VM {name}", [
            Field("forward", "HOST:GUEST (127.0.0.1:HOST reaches the guest's GUEST port)", placeholder="8080:80",
                  check=parse_forward)], "Add"), go)

    def action_remove_port(self) -> None:
        if not (name := self.selected("vms", "VM")):
            return
        try:
            config = self.miv.vms.status(name).config
        except MinivirtError as e:
            self.report_error(f"ports of {name}", e)
            return
        forwards = {str(f): f for f in (config.ports if config else ())}
        if not forwards:
            self.notify(f"{name} forwards no ports (p adds one)", severity="warning")
            return

        def go(values: dict[str, str]) -> None:
            async def run() -> str:
                from minivirt_core import portfwd

                f = await portfwd.remove(self.miv.vms, name, forwards[values["forward"]].host_port)
                return f"{name}: no longer forwards 127.0.0.1:{f.host_port} (guest port {f.guest_port})"

            self.operation(f"remove a port of {name}", run())

        self.ask(FormModal(f"Remove a port forward of VM {name}", [
            Field("forward", "Forward (HOST:GUEST)", options=tuple(forwards))], "Remove"), go)
