"""Port forwards of a VM changed while it runs (``miv port add/rm/ls``).

A forward is applied at once to a running VM through its QEMU monitor (``hostfwd_add`` /
``hostfwd_remove`` on the user network ``net0``, always on 127.0.0.1) and kept in the VM's
``config.json`` (written atomically), so the next start has it too. A stopped VM only has
its config changed. Changes hold the VM's lock, so they never race a start or a stop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import layout
from .errors import Conflict, ExternalError, InvalidInput, NotFound
from .ports import LOOPBACK, PortForward, check_port_free, parse_forward, port_number
from .qemu import monitor, process
from .vmconfig import VmConfig, read_config

if TYPE_CHECKING:
    from .vms import VmManager

# A line of HMP `info usernet` for a forward: "TCP[HOST_FORWARD]  13  127.0.0.1 8080  10.0.2.15  80 ..."
_USERNET_FORWARD = re.compile(r"^\s*TCP\[HOST_FORWARD\]\s+-?\d+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class ForwardState:
    """A configured forward and whether the running QEMU has it now (None: VM stopped)."""

    forward: PortForward
    active: bool | None

    def as_json(self) -> dict[str, object]:
        return {**self.forward.as_json(), "active": self.active}


def parse_host_port(text: str) -> int:
    """The host port of ``miv port rm VM HOST`` (``8080``, or ``8080:80`` as it was added)."""
    host = text.partition(":")[0]
    port = port_number(host)
    if port is None:
        raise InvalidInput(f"invalid host port {text!r}: a number from 1 to 65535, e.g. 8080")
    return port


async def active_forwards(qmp_socket: Path) -> set[tuple[int, int]]:
    """(host port, guest port) of every forward the running QEMU has (``info usernet``)."""
    async with monitor.session(qmp_socket) as client:
        text = await monitor.hmp(client, "info usernet")
    return {(int(m[2]), int(m[4])) for m in _USERNET_FORWARD.finditer(text)}


async def add(vms: VmManager, name: str, spec: str | PortForward) -> PortForward:
    """Forward ``127.0.0.1:HOST`` to the guest's ``GUEST`` port: at once if the VM runs,
    and from its next start on. A host port in use (here or by anything else) is a
    :class:`Conflict`; nothing is changed then."""
    forward = spec if isinstance(spec, PortForward) else parse_forward(spec)
    async with vms.locked(name) as vm_dir:
        config = _config(name, vm_dir)
        if any(f.host_port == forward.host_port for f in config.ports):
            raise Conflict(f"VM {name!r} already forwards host port {forward.host_port}",
                           hint=f"`miv port rm {name} {forward.host_port}` first, or choose another host port.")
        if process.running_pid(vm_dir) is not None:
            check_port_free(forward.host_port)
            async with monitor.session(vm_dir / layout.VM_QMP) as client:
                rule = f"tcp:{LOOPBACK}:{forward.host_port}-:{forward.guest_port}"
                out = await monitor.hmp(client, f"hostfwd_add net0 {rule}")
                if out.strip():  # HMP answers errors as text, success with nothing
                    raise Conflict(f"cannot forward host port {forward.host_port}: {out.strip().splitlines()[0]}",
                                   hint="The port may be in use; choose another host port.")
        _keep(vms, name, (*config.ports, forward))
    return forward


async def remove(vms: VmManager, name: str, host_port: int) -> PortForward:
    """Stop forwarding ``127.0.0.1:host_port`` into VM ``name``: at once if it runs, and for good."""
    async with vms.locked(name) as vm_dir:
        config = _config(name, vm_dir)
        found = [f for f in config.ports if f.host_port == host_port]
        if not found:
            raise NotFound(f"VM {name!r} has no forward from host port {host_port}", hint=f"`miv port ls {name}`.")
        if process.running_pid(vm_dir) is not None:
            async with monitor.session(vm_dir / layout.VM_QMP) as client:
                out = await monitor.hmp(client, f"hostfwd_remove net0 tcp:{LOOPBACK}:{host_port}")
            if "removed" not in out:
                raise ExternalError(f"QEMU did not remove the forward of port {host_port}: {out.strip()[:200]}")
        _keep(vms, name, tuple(f for f in config.ports if f.host_port != host_port))
    return found[0]


async def list_forwards(vms: VmManager, name: str) -> list[ForwardState]:
    """The VM's configured forwards, each with whether the running QEMU has it now."""
    vm_dir = vms.path(name)
    config = _config(name, vm_dir)
    if process.running_pid(vm_dir) is None:
        return [ForwardState(f, None) for f in config.ports]
    active = await active_forwards(vm_dir / layout.VM_QMP)
    return [ForwardState(f, (f.host_port, f.guest_port) in active) for f in config.ports]


def _config(name: str, vm_dir: Path) -> VmConfig:
    if not vm_dir.is_dir():
        raise NotFound(f"no VM named {name!r}", hint="`miv ps -a` lists the VMs.")
    try:
        return read_config(vm_dir)
    except InvalidInput as e:
        raise InvalidInput(f"VM {name!r}: {e.message}", hint="`miv fsck` lists the problems.") from e


def _keep(vms: VmManager, name: str, forwards: tuple[PortForward, ...]) -> None:
    """Write ``forwards`` as the VM's ``ports`` (atomically; its other keys stay as they are)."""
    vms.update_config(name, lambda raw: raw.__setitem__("ports", [f.as_json() for f in forwards]))
