"""The QEMU command line of a VM, built from its settings in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import layout
from ..hostinfo import host_arch, qemu_system_name
from ..ports import LOOPBACK, PortForward


@dataclass(frozen=True)
class Drive:
    """A disk or CD-ROM file, relative to the VM folder (or absolute)."""

    filename: str
    kind: str = "disk"  # "disk" or "cdrom"
    fmt: str | None = None


@dataclass(frozen=True)
class LaunchSpec:
    """Everything QEMU needs to run one VM; paths are relative to the VM folder."""

    name: str
    memory_mb: int
    cpus: int
    accel_args: Sequence[str]
    ssh_port: int
    forwards: Sequence[PortForward] = ()
    drives: Sequence[Drive] = ()
    snapshot: bool = False
    arch: str = field(default_factory=host_arch)
    isolated: bool = False  # restrict=on: the guest reaches neither the host nor the network


def opt_value(value: object) -> str:
    """``value`` made safe as a value inside a QEMU option string (``key=value,...``).

    QEMU splits such strings at commas and reads a doubled comma as a literal one, so a
    name or path holding ``,process=x`` or ``,file=/etc/shadow`` stays one value instead
    of adding options. Every value minivirt puts into an option string goes through here.
    """
    return str(value).replace(",", ",,")


def qemu_argv(spec: LaunchSpec, qemu: str | None = None) -> list[str]:
    """The argv that runs ``spec``: serial on a socket with a log, QMP, user networking."""
    forwards = [(spec.ssh_port, 22)] + [(f.host_port, f.guest_port) for f in spec.forwards]
    hostfwd = [f"hostfwd={opt_value(f'tcp:{LOOPBACK}:{host}-:{guest}')}" for host, guest in forwards]
    argv = [
        qemu or qemu_system_name(spec.arch),
        "-name", opt_value(f"miv-{spec.name}"),
        *spec.accel_args,
        "-m", str(spec.memory_mb),
        "-smp", str(spec.cpus),
        "-nodefaults",
        "-display", "none",
        "-monitor", "none",
        "-pidfile", layout.VM_PID,
        "-qmp", f"unix:{opt_value(layout.VM_QMP)},server=on,wait=off",
        "-chardev",
        f"socket,id=serial0,path={opt_value(layout.VM_SERIAL)},server=on,wait=off,"
        f"logfile={opt_value(layout.VM_SERIAL_LOG)},logappend=on",
        "-serial", "chardev:serial0",
        "-netdev", "user,id=net0," + ("restrict=on," if spec.isolated else "") + ",".join(hostfwd),
        "-device", "virtio-net-pci,netdev=net0,romfile=",
        "-device", "virtio-rng-pci",
    ]
    if spec.arch == "aarch64":
        argv[1:1] = ["-machine", "virt", "-bios", "edk2-aarch64-code.fd"]
    for drive in spec.drives:
        name = opt_value(drive.filename)
        if drive.kind == "cdrom":
            argv += ["-drive", f"file={name},media=cdrom,readonly=on"]
        else:
            fmt = f",format={opt_value(drive.fmt)}" if drive.fmt else ""
            argv += ["-drive", f"if=virtio,file={name}{fmt}"]
    if spec.snapshot:
        argv.append("-snapshot")
    return argv
