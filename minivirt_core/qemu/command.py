"""The QEMU command line of a VM, built from its settings in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import layout
from ..hostinfo import host_arch, qemu_system_name
from ..ports import LOOPBACK, NET_PROBE_GUEST_PORT, PortForward

DRIVE_FORMATS = {"disk": "qcow2", "cdrom": "raw"}
"""The format QEMU is told for each kind of drive: never left to QEMU's probing, which would
let a file's content choose a format that opens other files (a VMDK descriptor, a QED)."""


@dataclass(frozen=True)
class Drive:
    """A disk (qcow2) or CD-ROM (raw ISO) file, relative to the VM folder.

    ``fmt`` is always the one of :data:`DRIVE_FORMATS` for ``kind`` (filled in when omitted)."""

    filename: str
    kind: str = "disk"  # "disk" or "cdrom"
    fmt: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in DRIVE_FORMATS:
            raise ValueError(f"unknown drive kind {self.kind!r}")
        if self.fmt not in (None, DRIVE_FORMATS[self.kind]):
            raise ValueError(f"a {self.kind} is always opened as {DRIVE_FORMATS[self.kind]}, not {self.fmt}")
        object.__setattr__(self, "fmt", DRIVE_FORMATS[self.kind])


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
    firmware: Sequence[str] = ()  # QEMU arguments loading the firmware (firmware.Firmware.qemu_args)
    extra_args: Sequence[str] = ()  # e.g. a pinned -machine and -incoming for a warm start (warm.py)
    net_probe_port: int | None = None  # forwarded to a guest port nothing listens on (sshwait.wait_for_banner)


TCG_AARCH64_CPU = "neoverse-n1"
"""The CPU model of emulated aarch64 guests (see :func:`machine_args`)."""


def machine_args(arch: str, accel: str) -> list[str]:
    """Machine, accelerator and CPU for a guest of ``arch`` under ``accel``.

    Under TCG an x86_64 guest's CPU is ``max`` (every feature QEMU emulates); an aarch64
    guest's is a Neoverse N1 (Armv8.2: what arm64 distributions build for, and more), as
    ``max`` makes every emulated instruction dearer: it adds pointer authentication (the
    architected algorithm cost seconds of every boot, the implementation-defined one still
    runs a helper in every kernel function's prologue and epilogue) and 2048-bit SVE; its
    boots needed about a third more of QEMU's CPU time (measured under TCG: bench/README.md).
    Hardware accelerators (KVM, HVF) run the host's CPU; an aarch64 guest there takes the
    best interrupt controller the host has (``gic-version=max``)."""
    emulated = accel == "tcg"
    if arch == "aarch64":
        machine = "virt" if emulated else "virt,gic-version=max"
        cpu = TCG_AARCH64_CPU if emulated else "host"
        return ["-machine", machine, "-accel", accel, "-cpu", cpu]
    return ["-accel", accel, "-cpu", "max" if emulated else "host"]


def opt_value(value: object) -> str:
    """``value`` made safe as a value inside a QEMU option string (``key=value,...``).

    QEMU splits such strings at commas and reads a doubled comma as a literal one, so a
    name or path holding ``,process=x`` or ``,file=/etc/shadow`` stays one value instead
    of adding options. Every value minivirt puts into an option string goes through here.
    """
    return str(value).replace(",", ",,")


def drive_args(drive: Drive, index: int, uefi: bool) -> list[str]:
    """The QEMU arguments attaching ``drive``, the ``index``-th of its VM.

    Under UEFI a disk is a ``virtio-blk-pci`` device with a ``bootindex``: when QEMU gives it
    a boot order, edk2 connects only the devices listed there instead of every device, so it
    no longer binds its network stack to the NIC (1-2 s of every emulated aarch64 boot here).
    SeaBIOS gains nothing from it: x86_64 disks keep the short ``if=virtio`` form."""
    name = opt_value(drive.filename)
    if drive.kind == "cdrom":
        return ["-drive", f"file={name},format={drive.fmt},media=cdrom,readonly=on"]
    if uefi:
        return ["-drive", f"if=none,id=disk{index},file={name},format={drive.fmt}",
                "-device", f"virtio-blk-pci,drive=disk{index},bootindex={index}"]
    return ["-drive", f"if=virtio,file={name},format={drive.fmt}"]


def qemu_argv(spec: LaunchSpec, qemu: str | None = None) -> list[str]:
    """The argv that runs ``spec``: serial on a socket with a log, QMP, user networking."""
    forwards = [(spec.ssh_port, 22)] + [(f.host_port, f.guest_port) for f in spec.forwards]
    if spec.net_probe_port is not None:
        forwards.append((spec.net_probe_port, NET_PROBE_GUEST_PORT))
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
    if spec.firmware:
        # UEFI waits 5 s on its boot screen unless told the menu is wanted with no splash.
        argv += [*spec.firmware, "-boot", "menu=on,splash-time=0"]
    for index, drive in enumerate(spec.drives):
        argv += drive_args(drive, index, uefi=bool(spec.firmware))
    if spec.snapshot:
        argv.append("-snapshot")
    return argv + list(spec.extra_args)
