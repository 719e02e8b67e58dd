"""Conversations with a VM's QEMU over its QMP socket, through ``qemu.qmp``, one at a time.

QEMU's QMP socket serves one client at a time: a second connection is accepted by the
kernel but gets no greeting until the first one leaves, so two ``miv`` processes (a stop,
a port change, the dashboard's refresh, a snapshot) that talk to one VM at once would hang
on each other. Every conversation therefore holds the VM's QMP lock (an ``flock`` on
``qmp.lock`` next to the socket, so it works across processes) from connect to disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import layout
from ..errors import ExternalError, Timeout
from ..fsutil import flock_async
from .sockets import short_path

if TYPE_CHECKING:
    from qemu.qmp import QMPClient

# qemu.qmp logs every event at INFO/WARNING on its own loggers; keep them quiet.
logging.getLogger("qemu.qmp").setLevel(logging.ERROR)

LOCK_WAIT = 60.0  # the longest a conversation waits for another one to finish


@contextlib.asynccontextmanager
async def qmp_lock(qmp_socket: Path, wait: float = LOCK_WAIT) -> AsyncIterator[None]:
    """Hold the VM's QMP lock (``qmp.lock`` in the socket's folder) for the block;
    :class:`Timeout` if another conversation keeps it longer than ``wait`` seconds."""
    fd = os.open(qmp_socket.parent / layout.VM_QMP_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            await asyncio.wait_for(flock_async(fd, poll=0.01), wait)
        except TimeoutError as e:
            raise Timeout(f"another miv is talking to QEMU ({qmp_socket.parent.name}) for over {wait:.0f} s",
                          hint="Try again; `miv kill` ends a VM whose QEMU no longer answers.") from e
        yield
    finally:
        os.close(fd)  # releases the flock


@contextlib.asynccontextmanager
async def session(qmp_socket: Path, timeout: float = 5.0) -> AsyncIterator[QMPClient]:
    """A connected QMP client for a conversation of several commands, holding the VM's QMP
    lock throughout. Connecting must succeed within ``timeout`` seconds."""
    from qemu.qmp import QMPClient
    from qemu.qmp.error import QMPError

    async with qmp_lock(qmp_socket):
        client = QMPClient("miv")
        try:
            try:
                async with short_path(qmp_socket) as path:
                    await asyncio.wait_for(client.connect(path), timeout)
            except (TimeoutError, QMPError, OSError) as e:
                raise ExternalError(f"QMP connection failed: {e or type(e).__name__}") from e
            except AssertionError as e:  # qemu.qmp's own check, when QEMU exits as it connects
                raise ExternalError("QMP connection failed: QEMU closed it at once") from e
            yield client
        finally:
            try:
                await asyncio.wait_for(client.disconnect(), 2)
            except Exception:
                pass


async def run(client: QMPClient, command: str, arguments: dict[str, Any] | None = None,
              timeout: float = 5.0) -> Any:
    """Run one command in a :func:`session`; the result or :class:`ExternalError`."""
    from qemu.qmp.error import QMPError

    try:
        return await asyncio.wait_for(client.execute(command, arguments), timeout)
    except (TimeoutError, QMPError, OSError) as e:
        raise ExternalError(f"QMP {command} failed: {e or type(e).__name__}") from e


async def hmp(client: QMPClient, command_line: str, timeout: float = 5.0) -> str:
    """Run a human-monitor command in a :func:`session`; its output (HMP reports most
    errors as text, which callers check)."""
    out = await run(client, "human-monitor-command", {"command-line": command_line}, timeout)
    return out if isinstance(out, str) else ""


async def execute(qmp_socket: Path, command: str, arguments: dict[str, Any] | None = None,
                  timeout: float = 5.0) -> Any:
    """Connect, run one QMP command, disconnect; the result or :class:`ExternalError`."""
    async with session(qmp_socket, timeout) as client:
        return await run(client, command, arguments, timeout)


async def try_execute(qmp_socket: Path, command: str, timeout: float = 3.0) -> bool:
    """Like :func:`execute` but returns False instead of raising (QEMU may be exiting)."""
    try:
        await execute(qmp_socket, command, timeout=timeout)
        return True
    except (ExternalError, Timeout):
        return False


def describe_vcpus(registers: str) -> str:
    """HMP's ``info registers -a`` in brief: each vCPU's instruction pointer, privilege level
    and whether it is halted (firmware, kernel or user space; idle or spinning)."""
    said = []
    for block in re.split(r"^CPU#", registers, flags=re.M)[1:]:
        ip = re.search(r"\b([RE]IP)=([0-9a-f]+)", block)
        if ip is None:
            continue
        cpl, hlt = re.search(r"\bCPL=(\d)", block), re.search(r"\bHLT=(\d)", block)
        state = "halted" if hlt and hlt.group(1) == "1" else "busy"
        said.append(f"vCPU {block.split(maxsplit=1)[0]} {state} at {ip.group(1)}={ip.group(2)}"
                    + (f" CPL={cpl.group(1)}" if cpl else ""))
    return ", ".join(said)
