"""Starting a VM from a warm state (see :mod:`.warm` for the states themselves).

The steps :meth:`VmManager.start <minivirt_core.vms.VmManager.start>` takes for a warm
start, its one caller: :func:`plan` the machine a state must match, :func:`restore` the
state into the VM (under the VM's lock), then :func:`make_safe` the restored guest before
anybody uses it (clock, RNG, the VM's own key, hostname). Each step that fails falls back
to what a cold boot would do and tells ``note`` why; a VM never ends half-restored.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from . import clonesafety, layout, vmkey, warm
from .database import read_json
from .errors import ExternalError, MinivirtError
from .fsutil import atomic_write_json
from .hostinfo import qemu_system_name
from .qemu import process
from .tools import run_tool
from .vmconfig import VmConfig, read_config

if TYPE_CHECKING:

    from .accel import AccelChoice
    from .qemu.command import Drive
    from .vms import VmManager
    from .vmssh import Handoff

async def plan(vms: VmManager, vm_dir: Path, config: VmConfig, attached: tuple[Drive, ...], snapshot: bool,
               choice: AccelChoice) -> warm.Machine | None:
    """The machine a warm state of this start must match, or None when it may not use one."""
    image = vms.images.get(config.image) if config.image else None
    if image is None or not warm.eligible(vm_dir, image.id, image.arch, attached, snapshot):
        return None
    facts = await warm.qemu_facts(qemu_system_name(image.arch))
    if facts is None:
        return None
    return warm.Machine(image.id, config.memory_mb, config.cpus, tuple(choice.qemu_args), facts[1], facts[0],
                        config.isolated, tuple(d.kind for d in attached))


async def restore(vms: VmManager, name: str, vm_dir: Path, config: VmConfig, machine: warm.Machine,
                  choice: AccelChoice, note: warm.Note | None) -> bool:
    """Restore the warm state of ``machine`` into the VM (the caller holds its lock); False
    (after ``note`` says why, and with the VM's disk as it was) when there is none or it failed."""
    try:
        folder = warm.check_state(vms.db, machine)
    except ExternalError as e:
        folder = warm.state_dir(vms.db, machine)
        await asyncio.to_thread(warm.discard, vms.db, folder)
        if note:
            note(warm.Notice(f"the warm state is unusable ({e.message}): removed it, booting cold", warm.WARNING))
        return False
    if folder is None:
        return False
    # A login follows the restore, which is shorter than the SSH client's import: start that now.
    vmkey.prepare_login(vm_dir)
    cold_disk = vm_dir / f".cold-{layout.VM_DISK}"
    os.rename(vm_dir / layout.VM_DISK, cold_disk)
    try:
        await asyncio.to_thread(warm.install_disk, folder, vm_dir)
        attached = vms.checked_drives(name, vm_dir, config)  # the copied disk is checked like any
        await vms.launch(name, vm_dir, config, attached, False, choice, machine,
                         tuple(warm.incoming_args(folder, machine)))
        pid = process.running_pid(vm_dir)
        if pid is None:
            raise ExternalError("QEMU exited while restoring")
        await warm.wait_restored(vm_dir, pid)
    except MinivirtError as e:
        await _kill(vm_dir)
        os.replace(cold_disk, vm_dir / layout.VM_DISK)
        await asyncio.to_thread(warm.discard, vms.db, folder)
        if note:
            note(warm.Notice(f"the warm state could not be restored ({e.message}): removed it, booting cold",
                             warm.WARNING))
        return False
    os.unlink(cold_disk)
    run = read_json(vm_dir / layout.VM_RUN) or {}
    atomic_write_json(vm_dir / layout.VM_RUN, {**run, "warm": folder.name})
    return True


async def make_safe(vms: VmManager, name: str, wait: float, note: warm.Note | None) -> Handoff | None:
    """Right after a restore: clock, RNG, the VM's own key (the first contact). A guest
    that cannot be made safe is stopped and booted cold instead (waiting ``wait`` s for
    its SSH server).

    A throw-away VM's first connection is returned instead, open, for its command (one
    login less): its key replacement started, its clone-safety steps still due; they run
    in front of its first command, in the same exec (see :class:`~minivirt_core.vmssh.VmSsh`)."""
    vm_dir = vms.path(name)
    try:
        # No banner polling: the server was listening when the state was saved, and each
        # poll would cost the guest a fork of its SSH server.
        port = (read_json(vm_dir / layout.VM_RUN) or {}).get("ssh_port")
        if not isinstance(port, int):
            raise ExternalError("the VM has no SSH port")
        timeout = min(wait, warm.LOGIN_TIMEOUT)
        if read_config(vm_dir).owner is not None:
            handoff = await vmkey.open_first(vm_dir, name, port, timeout=timeout)
            vms.ssh.saw_answer(name, port)
            return handoff
        # The clone-safety steps and the key replacement run side by side (two channels of
        # one connection); both are done before anybody else gets the guest.
        conn = await vmkey.connect(vm_dir, name, port, timeout=timeout, alongside=clonesafety.make_safe)
        conn.close()
        vms.ssh.saw_answer(name, port)
        return None
    except MinivirtError as e:
        removed = isinstance(e, clonesafety.GuestUnsafe) and await forget_unsafe_state(vms, name)
        if note:
            note(warm.Notice(f"the warm-started guest could not be made safe ({e.message}): "
                             f"{'removed its warm state, ' if removed else ''}booting it cold", warm.WARNING))
        async with vms.locked(name):
            await _kill(vm_dir)
            await _recreate_disk(vm_dir)
            config = read_config(vm_dir)
            await vms.launch(name, vm_dir, config, vms.checked_drives(name, vm_dir, config), False,
                             await vms.accelerator())
        await vms.wait_for_ssh(name, wait)
        return None


async def forget_unsafe_state(vms: VmManager, name: str) -> bool:
    """VM ``name`` was warm-started from a state whose guest fails its clone-safety steps
    (:class:`~minivirt_core.clonesafety.GuestUnsafe`): remove that state, so that the next
    start boots cold (and saves a new state if that guest can be made safe). Whether one was
    removed."""
    run = read_json(vms.path(name) / layout.VM_RUN) or {}
    folder = warm.named_state(vms.db, run.get("warm"))
    if folder is None or not folder.is_dir():
        return False
    await asyncio.to_thread(warm.discard, vms.db, folder)
    return True


async def _kill(vm_dir: Path) -> None:
    """End the VM's QEMU at once (its guest is of no use) and remove its runtime files."""
    pid = process.running_pid(vm_dir)
    if pid is not None:
        process.terminate(pid, vm_dir, signal.SIGKILL)
        await process.wait_exit(pid, vm_dir, 5)
    process.clean_runtime(vm_dir)


async def _recreate_disk(vm_dir: Path) -> None:
    """Give a never-used VM a fresh overlay over its image (a failed warm start's disk is
    discarded), and forget any key replacement done on the discarded disk."""
    from .vms import overlay_command

    config = read_config(vm_dir)
    tmp = vm_dir / f".new-{layout.VM_DISK}"
    args = overlay_command(config.image, None)
    await run_tool([*args[:-1], tmp.name], cwd=vm_dir)
    os.replace(tmp, vm_dir / layout.VM_DISK)
    (vm_dir / layout.VM_SSH_KEY_STATE).unlink(missing_ok=True)
