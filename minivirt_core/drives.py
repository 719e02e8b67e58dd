"""The drives a VM hands QEMU, checked first: its disk, its image's ISO, its attached files.

A VM's ``config.json`` lists attached files under ``resources`` (``{type: disk|cdrom,
filename}``, written by ``create`` and by recipe steps). Read from disk, they are untrusted
like the image they came from: a resource may only name a plain file of the VM's folder,
or the ISO its image declares (``../../images/<id>/<iso>``, as ``create`` writes it). A
disk must be a qcow2 naming no other file (the VM's own ``disk.qcow2`` may name only its
image's disk as backing file); a CD-ROM must be an ISO 9660 image. QEMU is told each
format (:data:`~minivirt_core.qemu.command.DRIVE_FORMATS`), so nothing in a file can make
it open another.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from . import imageconfig, layout, qcow2
from .errors import InvalidInput
from .imageconfig import ImageConfig
from .qemu.command import DRIVE_FORMATS, Drive
from .vmconfig import VmConfig

# Files of a VM folder that are no disk to attach (its own disk.qcow2 may be one).
_VM_FILES = frozenset({layout.VM_CONFIG, layout.VM_PID, layout.VM_QMP, layout.VM_SERIAL, layout.VM_SERIAL_LOG,
                       layout.VM_QEMU_LOG, layout.VM_RUN, layout.VM_SSH_CONFIG, layout.VM_SSH_KEY})


def image_iso_path(image_id: str, config: ImageConfig) -> str | None:
    """The ``filename`` of a VM resource that attaches its image's ISO (relative to the VM folder)."""
    return os.path.join("..", "..", layout.IMAGES, image_id, config.iso) if config.iso else None


def _read_head(path: Path, size: int) -> bytes | None:
    """The first bytes of a regular file (not followed through a symlink), or None if it is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(size)


def _file_problem(vm_dir: Path, filename: str, kind: str) -> str | None:
    """Why a plain file of the VM folder cannot be attached as ``kind``, or None."""
    if problem := imageconfig.plain_name_problem(filename):
        return f"it is not a file of the VM's folder: the name {problem}"
    if filename in _VM_FILES:
        return "it is one of minivirt's own files of the VM"
    head = _read_head(vm_dir / filename, imageconfig.ISO_HEAD_BYTES)
    if head is None:
        return "it is missing or not a regular file of the VM's folder"
    if kind == "cdrom":
        return imageconfig.iso_refusal(head)
    return imageconfig.disk_refusal(head)


def vm_drives(vm_dir: Path, config: VmConfig, image_config: ImageConfig | None) -> tuple[Drive, ...]:
    """The drives to start the VM with, each checked; :class:`InvalidInput` names what is wrong.

    ``image_config`` is the VM's image's config, checked by the caller
    (:func:`~minivirt_core.imageconfig.check_image`)."""
    drives = []
    if config.disk:
        disk = vm_dir / layout.VM_DISK
        head = _read_head(disk, qcow2.HEADER_BYTES)
        if head is None:
            raise InvalidInput("its disk.qcow2 is " + ("not a regular file" if disk.is_symlink() or disk.exists()
                                                       else "missing"))
        header = qcow2.parse_header(head)
        if header is None:
            raise InvalidInput("its disk.qcow2 is not a qcow2 disk")
        if header.has_external_data_file:
            raise InvalidInput("its disk.qcow2 uses an external data file")
        backing = qcow2.backing_file_name(disk)
        allowed = os.path.join("..", "..", layout.IMAGES, config.image or "", layout.IMAGE_DISK)
        if backing is not None and (not config.image or backing != allowed):
            raise InvalidInput(f"its disk.qcow2 names the backing file {backing[:100]!r}, not its image's disk")
        drives.append(Drive(layout.VM_DISK, "disk"))
    iso_path = image_iso_path(config.image, image_config) if config.image and image_config else None
    for res in config.resources:
        kind, filename = res.get("type", "disk"), res.get("filename")
        if kind not in DRIVE_FORMATS or not isinstance(filename, str):
            raise InvalidInput(f"its config has a resource that is not {{type: disk|cdrom, filename}}: {res!r:.100}")
        if (kind != "cdrom" or filename != iso_path) and (problem := _file_problem(vm_dir, filename, kind)):
            raise InvalidInput(f"its config attaches {filename[:100]!r} as a {kind}, which is refused: {problem}")
        drives.append(Drive(filename, kind))
    return tuple(drives)
