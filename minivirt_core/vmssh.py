"""This process's SSH reach into its VMs: waiting for their servers, logging in, sessions.

What one ``miv`` process remembers of the VMs it talks to (never written anywhere: state
on disk is derived, this is only what saves the guest work): which VMs' SSH servers it
saw answer (another banner probe would only cost the guest a fork), the connection that
saw the answer (kept for this process's next login, the guest's server has forked for it
already), and a warm-started throw-away VM's first connection, made safe, handed to its
command. :class:`~minivirt_core.vms.VmManager` owns one :class:`VmSsh` and closes what it
keeps when a VM stops, is killed or destroyed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from . import layout, vmkey
from .database import read_json
from .errors import Conflict
from .qemu import process
from .vmconfig import read_config

if TYPE_CHECKING:
    import asyncssh

    from .vms import VmManager


class VmSsh:
    """SSH into the running VMs of a :class:`~minivirt_core.vms.VmManager`, remembering
    what saves the guests work between this process's logins."""

    def __init__(self, vms: VmManager) -> None:
        self.vms = vms
        # (QEMU pid, SSH port) of the VMs whose SSH server this process saw answer.
        self._answered: dict[str, tuple[int, int]] = {}
        # (QEMU pid, SSH port, connection) that saw a VM's SSH server answer, kept for a login.
        self._kept_sockets: dict[str, tuple[int, int, socket.socket]] = {}
        # A warm-started throw-away VM's first connection, kept for its command.
        self._handoff: dict[str, Handoff] = {}
        # VMs warm-started by this process whose clone-safety steps are still due.
        self._safety_due: set[str] = set()

    async def wait(self, name: str, timeout: float, keep: bool = False) -> int:
        """Wait until the running VM's SSH server answers; returns its port.

        ``keep``: keep the connection that saw the answer for this process's next login
        (:meth:`connect`, :meth:`session`; closed by :meth:`forget`): the guest's server
        has forked for it already."""
        from . import sshwait

        st = self.vms.status(name)
        if not st.running or st.ssh_port is None:
            raise Conflict(f"VM {name!r} is not running", hint=f"`miv start {name}` first.")
        vm_dir = st.path
        pid = st.pid
        assert pid is not None
        if self._answered.get(name) == (pid, st.ssh_port):
            return st.ssh_port  # this process saw it answer: another probe would only cost the guest a fork
        # A VM resumed from a warm state was up at once: its slow guest's SSH server is best
        # not flooded with the short-lived probes meant for a guest whose network is not up.
        sock = await sshwait.wait_for_banner(st.ssh_port, timeout, alive=lambda: process.pid_alive(pid, vm_dir),
                                             keep=keep, answered=st.warm is not None, net_probe=st.net_probe_port)
        self._answered[name] = (pid, st.ssh_port)
        if sock is not None:
            self._drop_kept_socket(name)
            self._kept_sockets[name] = (pid, st.ssh_port, sock)
        return st.ssh_port

    def saw_answer(self, name: str, port: int) -> None:
        """Record that running VM ``name``'s SSH server on ``port`` answered (a login made
        without :meth:`wait`, e.g. right after a warm restore): no banner wait before the
        next login, whose probes would only pile up in a slow guest's SSH server."""
        pid = self.vms.status(name).pid
        if pid is not None:
            self._answered[name] = (pid, port)

    def kept_socket(self, name: str, port: int) -> socket.socket | None:
        """The connection :meth:`wait` kept for VM ``name``'s next login, if it is one to
        this run of the VM (its port ``port``); handed over once."""
        kept = self._kept_sockets.pop(name, None)
        if kept is None:
            return None
        if kept[:2] != self._answered.get(name) or kept[1] != port:
            kept[2].close()
            return None
        return kept[2]

    def has_kept_socket(self, name: str) -> bool:
        """Whether a connection to VM ``name`` is kept for a login (for tests and checks)."""
        return name in self._kept_sockets

    def hand_off(self, name: str, handoff: Handoff) -> None:
        """Keep a warm-started throw-away VM's first connection for its command; the
        guest's clone-safety steps are due on it before anything else runs."""
        self._handoff[name] = handoff
        self._safety_due.add(name)

    def _drop_kept_socket(self, name: str) -> None:
        if (kept := self._kept_sockets.pop(name, None)) is not None:
            kept[2].close()

    async def forget(self, name: str) -> None:
        """Close what is kept open to VM ``name`` (it stops, is killed or destroyed)."""
        self._drop_kept_socket(name)
        self._safety_due.discard(name)
        if (handed := self._handoff.pop(name, None)) is not None:
            await _close(handed)

    async def _take_handoff(self, name: str) -> tuple[Handoff | None, bool]:
        """VM ``name``'s handed-over connection (None when there is none, or it closed
        meanwhile), and whether its clone-safety steps are still due; both taken once."""
        due = name in self._safety_due
        self._safety_due.discard(name)
        handed = self._handoff.pop(name, None)
        if handed is not None and handed[0].is_closed():
            await _close(handed)
            handed = None
        return handed, due

    async def connect(self, name: str, wait: float = 120.0) -> asyncssh.SSHClientConnection:
        """A root SSH connection to running VM ``name`` (waiting up to ``wait`` s for its
        server), with the VM's own key: the first one replaces the well-known key in the
        guest. A warm start's clone-safety steps still due are done first."""
        handed, due = await self._take_handoff(name)
        alongside = self._make_safe(name) if due else None
        if handed is not None:
            await vmkey.finish_first(*handed, alongside=alongside)
            return handed[0]
        port = await self.wait(name, wait)
        vm_dir = self.vms.path(name)
        run = read_json(vm_dir / layout.VM_RUN) or {}
        return await vmkey.connect(vm_dir, name, port, snapshot=run.get("snapshot") is True,
                                   sock=self.kept_socket(name, port), alongside=alongside)

    @asynccontextmanager
    async def session(self, name: str, wait: float = 120.0) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """A root SSH connection to running VM ``name`` for a block of work, closed after
        it (see :meth:`command_session`)."""
        async with self.command_session(name, wait) as (conn, _):
            yield conn

    @asynccontextmanager
    async def command_session(self, name: str, wait: float = 120.0, command: str | None = None,
                              ) -> AsyncIterator[tuple[asyncssh.SSHClientConnection, str | None]]:
        """A root SSH connection to running VM ``name`` for a block of work, closed after
        it, and the command line to run first on it.

        In a throw-away VM (``miv run``), a first contact's key replacement runs alongside
        the block, so the command starts sooner (see :func:`minivirt_core.vmkey.session`),
        and a warm start's first connection is reused. A warm start's clone-safety steps
        (clock, RNG) are done before the block; with a ``command`` (a shell line, not an
        interactive shell) they come back in front of it instead, to run in the same
        exec (:func:`minivirt_core.clonesafety.prefixed`): one round trip to the guest less."""
        handed, due = await self._take_handoff(name)

        async def first_line(conn: asyncssh.SSHClientConnection) -> str | None:
            from . import clonesafety

            if due and command is not None and (line := clonesafety.prefixed(command)) is not None:
                return line
            if due:
                await self._make_safe(name)(conn)
            return command

        if handed is not None:
            async with vmkey.replacing_alongside(*handed):
                yield handed[0], await first_line(handed[0])
            return
        port = await self.wait(name, wait)
        vm_dir = self.vms.path(name)
        run = read_json(vm_dir / layout.VM_RUN) or {}
        throwaway = read_config(vm_dir).owner is not None
        async with vmkey.session(vm_dir, name, port, snapshot=run.get("snapshot") is True,
                                 throwaway=throwaway, sock=self.kept_socket(name, port)) as conn:
            yield conn, await first_line(conn)

    async def run(self, name: str, command: str, out: Callable[[bytes], Any], err: Callable[[bytes], Any], *,
                  stdin: int | None = None, wait: float = 120.0, on_connected: Callable[[], None] | None = None
                  ) -> int:
        """Run shell line ``command`` in running VM ``name`` (:meth:`command_session`), its
        output streamed to ``out`` and ``err`` and the descriptor ``stdin`` to it; its exit status.

        When a warm start's clone-safety steps, run in front of it, fail, the command does not
        run (:data:`~minivirt_core.clonesafety.SAFETY_FAILED` on ``err``, status 1) and the warm
        state the VM came from is removed, as :meth:`connect` does for a failure of its own."""
        from . import clonesafety, ssh

        marker = (clonesafety.SAFETY_FAILED + "\n").encode()
        head = bytearray()

        def watched(data: bytes) -> None:
            if len(head) < len(marker):
                head.extend(data[:len(marker) - len(head)])
            err(data)

        async with self.command_session(name, wait, command) as (conn, line):
            if on_connected is not None:
                on_connected()
            prefixed = line != command
            status = await ssh.run(conn, line or command, out, watched if prefixed else err, stdin=stdin)
        if prefixed and status == 1 and head == marker:
            from .warmstart import forget_unsafe_state

            await forget_unsafe_state(self.vms, name)
        return status

    def _make_safe(self, name: str) -> Callable[[asyncssh.SSHClientConnection], Awaitable[None]]:
        """The clone-safety steps for VM ``name``'s connection; when the guest fails them, the
        warm state it came from is removed (:class:`~minivirt_core.clonesafety.GuestUnsafe`)."""
        from . import clonesafety

        async def make_safe(conn: asyncssh.SSHClientConnection) -> None:
            try:
                await clonesafety.make_safe(conn)
            except clonesafety.GuestUnsafe:
                from .warmstart import forget_unsafe_state

                await forget_unsafe_state(self.vms, name)
                raise

        return make_safe


Handoff = tuple["asyncssh.SSHClientConnection", "asyncio.Task[None] | None"]
"""A warm-started throw-away VM's first connection, and the task replacing the
well-known key over it (from :func:`minivirt_core.vmkey.open_first`)."""


async def _close(handed: Handoff) -> None:
    """Abandon a handed-over connection: its key replacement cancelled, the connection closed."""
    conn, replacement = handed
    if replacement is not None and not replacement.done():
        replacement.cancel()
    if replacement is not None:
        await asyncio.gather(replacement, return_exceptions=True)
    conn.close()
