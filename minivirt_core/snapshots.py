"""Named snapshots of a VM (``miv snapshot save/ls/restore/rm``): qcow2 internal snapshots
in the VM's own ``disk.qcow2``.

Of a running VM a snapshot is live and holds its memory too (QEMU ``savevm``; the guest
pauses for a moment and runs on); restoring it brings the VM back exactly where it was,
running (``loadvm`` on a running VM, ``-loadvm`` at start on a stopped one). Of a stopped
VM a snapshot holds the disk only (``qemu-img snapshot``), and is restored on a stopped VM.
The image under the VM is never touched, and ``commit`` still yields a plain image
(``qemu-img convert`` copies no snapshots). Every change holds the VM's lock.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import layout, vmkey
from .errors import Conflict, ExternalError, InvalidName, NotFound
from .qemu import monitor, process
from .tools import run_tool

if TYPE_CHECKING:
    from .vms import VmManager

SNAPSHOT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SAVE_TIMEOUT = 300.0  # savevm/loadvm block QEMU's monitor while they copy the memory


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of a VM's disk (``memory``: it holds the running machine too)."""

    name: str
    created: float
    memory: bool
    vm_state_bytes: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "memory": self.memory,
                "vm_state_bytes": self.vm_state_bytes}


def validate_name(name: str) -> str:
    """``name`` if it can name a snapshot (it reaches QEMU's monitor), else :class:`InvalidName`."""
    if not SNAPSHOT_NAME_RE.fullmatch(name):
        raise InvalidName(f"invalid snapshot name {name[:70]!r}",
                          hint="Use up to 64 ASCII letters, digits, '_', '.' and '-', starting with a letter or digit.")
    return name


async def list_snapshots(vms: VmManager, name: str) -> list[Snapshot]:
    """The VM's snapshots, oldest first (read while it runs too: ``qemu-img -U``)."""
    disk = _disk(vms, name)
    out = await run_tool(["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", str(disk)])
    try:
        raw = json.loads(out).get("snapshots") or []
        found = [Snapshot(str(s["name"]), float(s.get("date-sec", 0)) + float(s.get("date-nsec", 0)) / 1e9,
                          int(s.get("vm-state-size", 0)) > 0, int(s.get("vm-state-size", 0))) for s in raw]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ExternalError(f"qemu-img gave an unreadable snapshot list for VM {name!r}") from e
    return sorted(found, key=lambda s: s.created)


async def save(vms: VmManager, name: str, snapshot: str | None = None) -> Snapshot:
    """Snapshot VM ``name``: with its memory while it runs (it keeps running), its disk
    only when stopped. The name defaults to the time; an existing name is a :class:`Conflict`."""
    snapshot = validate_name(snapshot or time.strftime("snap-%Y%m%d-%H%M%S"))
    async with vms.locked(name) as vm_dir:
        if any(s.name == snapshot for s in await list_snapshots(vms, name)):
            raise Conflict(f"VM {name!r} has a snapshot named {snapshot!r} already",
                           hint=f"Choose another name, or `miv snapshot rm {name} {snapshot}` first.")
        if process.running_pid(vm_dir) is not None:
            await _hmp(vm_dir, f"savevm {snapshot}", "save the snapshot")
        else:
            await run_tool(["qemu-img", "snapshot", "-c", snapshot, str(vm_dir / layout.VM_DISK)])
    return await _find(vms, name, snapshot)


async def restore(vms: VmManager, name: str, snapshot: str) -> Snapshot:
    """Bring VM ``name`` back to ``snapshot``: a snapshot with memory makes the VM run from
    where it was (started if stopped); a disk-only one needs the VM stopped and leaves it so."""
    found = await _find(vms, name, validate_name(snapshot))
    vm_dir = vms.path(name)
    _assume_own_key(vm_dir)  # before a start: its ssh-config then names the VM's own key
    if found.memory:
        if process.running_pid(vm_dir) is not None:
            async with vms.locked(name):
                await _hmp(vm_dir, f"loadvm {snapshot}", "restore the snapshot")
        else:
            await vms.start(name, loadvm=snapshot)
    else:
        async with vms.locked(name):
            if process.running_pid(vm_dir) is not None:
                raise Conflict(f"snapshot {snapshot!r} of VM {name!r} holds its disk only: stop the VM to restore it",
                               hint=f"`miv stop {name}` first.")
            await run_tool(["qemu-img", "snapshot", "-a", snapshot, str(vm_dir / layout.VM_DISK)])
    return found


async def remove(vms: VmManager, name: str, snapshot: str) -> Snapshot:
    """Delete a snapshot of VM ``name`` (running or not)."""
    found = await _find(vms, name, validate_name(snapshot))
    async with vms.locked(name) as vm_dir:
        if process.running_pid(vm_dir) is not None:
            await _hmp(vm_dir, f"delvm {snapshot}", "remove the snapshot")
        else:
            await run_tool(["qemu-img", "snapshot", "-d", snapshot, str(vm_dir / layout.VM_DISK)])
    return found


def _assume_own_key(vm_dir: Path) -> None:
    """The restored disk may hold the VM's own key where the record says the well-known one:
    record the former, so ``commit`` makes sure the well-known key is back (a guest that
    has the well-known key after all is found out and fixed at the next contact)."""
    state = vmkey.KeyState.read(vm_dir)
    if not state.keep_well_known and not state.own:
        vmkey.KeyState(own=True, keep_well_known=False).write(vm_dir)


async def _find(vms: VmManager, name: str, snapshot: str) -> Snapshot:
    for s in await list_snapshots(vms, name):
        if s.name == snapshot:
            return s
    raise NotFound(f"VM {name!r} has no snapshot named {snapshot!r}", hint=f"`miv snapshot ls {name}`.")


def _disk(vms: VmManager, name: str) -> Path:
    vm_dir = vms.path(name)
    if not vm_dir.is_dir():
        raise NotFound(f"no VM named {name!r}", hint="`miv ps -a` lists the VMs.")
    disk = vm_dir / layout.VM_DISK
    if not disk.is_file():
        raise NotFound(f"VM {name!r} has no disk to snapshot")
    return disk


async def _hmp(vm_dir: Path, command_line: str, what: str) -> None:
    """Run an HMP snapshot command; it reports failure as text (e.g. a device that cannot
    snapshot), which becomes an :class:`ExternalError`."""
    async with monitor.session(vm_dir / layout.VM_QMP) as client:
        out = (await monitor.hmp(client, command_line, timeout=SAVE_TIMEOUT)).strip()
    if out:
        raise ExternalError(f"QEMU could not {what}: {out.splitlines()[-1][:200]}")
