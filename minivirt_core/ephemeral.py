"""Throw-away VMs (``miv run``, recipe tests): created, booted, and always destroyed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .vms import DEFAULT_CPUS, DEFAULT_MEMORY_MB, VmManager, VmStatus

if TYPE_CHECKING:
    from .seed import CloudInit
    from .warm import Note


@asynccontextmanager
async def ephemeral_vm(
    vms: VmManager,
    image: str,
    memory: int | str = DEFAULT_MEMORY_MB,
    cpus: int = DEFAULT_CPUS,
    ports: Iterable[str] = (),
    wait_for_ssh: float | None = 120.0,
    prefix: str = "run",
    isolated: bool = False,
    cold: bool = False,
    note: Note | None = None,
    cloud_init: CloudInit | None = None,
) -> AsyncIterator[VmStatus]:
    """A running VM of ``image`` for the block; destroyed after it, also on errors,
    cancellation (Ctrl-C) and a QEMU that died meanwhile. It records this process as its
    owner, so if the process is killed outright, ``prune`` removes what it left. It starts
    from the image's warm state when there is one, unless ``cold`` (see warm.py); ``note``
    hears about warm states made or not used."""
    name = vms.ephemeral_name(prefix)
    created = False
    if wait_for_ssh:
        from .ssh import preload

        preload()  # a login follows: the SSH client's import overlaps the VM's creation and start
    try:
        await vms.create(image, name, memory=memory, cpus=cpus, ports=ports, throwaway=True, isolated=isolated,
                         cloud_init=cloud_init)
        created = True
        yield await vms.start(name, wait_for_ssh=wait_for_ssh, cold=cold, note=note)
    finally:
        if created:
            # Shielded: a second Ctrl-C must not leave the VM behind half-destroyed.
            await asyncio.shield(vms.destroy(name))
