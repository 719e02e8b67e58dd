"""Everything known about one VM or one image, as plain JSON-ready data (``miv inspect``,
the dashboard's inspect view).

Both functions only look: they read configs, sizes, runtime files and ``/proc``, and
change nothing (a dead QEMU's stale runtime files are cleaned, as every status look does).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import shlex
from pathlib import Path
from typing import Any

from . import layout
from .database import Database, read_json
from .errors import MinivirtError
from .images import Image, ImageStore


def _iso(timestamp: float | None) -> str | None:
    """A timestamp as ISO 8601 in UTC (``2026-11-27T02:11:39Z``), or None."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _allocated(path: Path) -> int | None:
    """Bytes a file takes on disk (sparse files count what is written), or None when missing."""
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return None


def _virtual_size(disk: Path) -> int | None:
    """The size the guest sees of a qcow2 disk (from its header), or None."""
    from .qcow2 import read_header

    try:
        header = read_header(disk)
    except OSError:
        return None
    return header.size if header is not None else None


def _command_line(pid: int) -> list[str] | None:
    """A process's argv from ``/proc`` (Linux), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1]] or None


def _image_json(image: Image, vms: list[str]) -> dict[str, Any]:
    config: dict[str, Any] | None
    problem = None
    try:
        c = image.config
        config = {"disk": c.disk, "iso": c.iso, "arch": c.arch}
        if c.ignored_keys:
            config["ignored_keys"] = list(c.ignored_keys)
    except MinivirtError as e:
        config, problem = None, e.message
    return {
        "id": image.id,
        "short_id": image.short_id,
        "tags": list(image.tags),
        "size": image.size,
        "arch": image.arch,
        "created": image.created,
        "created_iso": _iso(image.created),
        "path": str(image.path),
        "config": config,
        "problem": problem,
        "vms": vms,
    }


def _inspect_image(db: Database, ref: str) -> dict[str, Any]:
    image = ImageStore(db).resolve(ref)
    users = sorted(name for name, image_id in db.vm_image_ids().items() if image_id == image.id)
    result = _image_json(image, users)
    result["kind"] = "image"
    return result


def _inspect_vm(db: Database, name: str) -> dict[str, Any]:
    from .vms import VmManager

    images = ImageStore(db)
    tags = images.tags()
    st = VmManager(db, images).status(name, tags)
    config = st.config
    vm_dir = st.path
    image: dict[str, Any] | None = None
    if config is not None and config.image is not None:
        tag_now = tags.get(config.image_ref) if config.image_ref else None
        image = {
            "id": config.image,
            "reference": config.image_ref,
            "label": st.image_label,
            # The tag the VM was created from names another image now (or is gone).
            "moved": config.image_ref_moved(tags),
            "reference_now": tag_now,  # the image that tag names now
            "tags": sorted(t for t, i in tags.items() if i == config.image),
            "present": (db.images_dir / config.image).is_dir(),
        }
    disk_path = vm_dir / layout.VM_DISK
    run = read_json(vm_dir / layout.VM_RUN) if st.running else None
    run = run if isinstance(run, dict) else {}
    ssh_config = vm_dir / layout.VM_SSH_CONFIG
    if ssh_config.is_file():
        ssh_command = f"ssh -F {shlex.quote(str(ssh_config))} {shlex.quote(name)}"
    else:  # written at first contact; until then miv knows which key the guest takes
        ssh_command = f"miv ssh {shlex.quote(name)}"
    return {
        "kind": "vm",
        "name": st.name,
        "path": str(vm_dir),
        "state": st.state,
        "reason": st.reason,
        "problems": list(st.problems),
        "config": config.as_json() if config is not None else None,
        "image": image,
        "memory": config.memory_mb if config else None,
        "cpus": config.cpus if config else None,
        "isolated": config.isolated if config else None,
        "ports": [p.as_json() for p in config.ports] if config else [],
        "ssh_port": st.ssh_port,
        "ssh_command": ssh_command,
        "disk": {
            "path": str(disk_path),
            "virtual_size": _virtual_size(disk_path),
            "overlay_size": _allocated(disk_path),  # what the VM wrote over its image
        } if disk_path.is_file() else None,
        "logs": {
            "serial": str(vm_dir / layout.VM_SERIAL_LOG),
            "qemu": str(vm_dir / layout.VM_QEMU_LOG),
        },
        "pid": st.pid,
        "command_line": _command_line(st.pid) if st.pid else None,
        "accel": st.accel,
        "snapshot": run.get("snapshot") is True if st.running else None,
        "started": st.started,
        "started_iso": _iso(st.started),
        "uptime": st.uptime,
    }


async def inspect_vm(db: Database, name: str) -> dict[str, Any]:
    """Everything about VM ``name`` as JSON-ready data: its config, its image (the
    reference it was created from, the id, and whether that tag has moved since), ports,
    disk (virtual size, overlay size), SSH command, log paths, and while it runs the
    QEMU pid and command line, and its named snapshots (None when they cannot be read).
    :class:`~.errors.NotFound` when there is no such VM."""
    result = await asyncio.to_thread(_inspect_vm, db, name)
    result["snapshots"] = await _snapshots(db, name) if result["disk"] else []
    return result


async def _snapshots(db: Database, name: str) -> list[dict[str, Any]] | None:
    """The VM's snapshots, oldest first, with their time as ISO 8601 too."""
    from .snapshots import list_snapshots
    from .vms import VmManager

    try:
        found = await list_snapshots(VmManager(db, ImageStore(db)), name)
    except MinivirtError:
        return None
    return [{**s.as_json(), "created_iso": _iso(s.created)} for s in found]


async def inspect_image(db: Database, ref: str) -> dict[str, Any]:
    """Everything about the image ``ref`` (a tag, id or id prefix) as JSON-ready data:
    id, tags, size, config (arch included), creation time, and the VMs that use it.
    :class:`~.errors.NotFound` when nothing is named so."""
    return await asyncio.to_thread(_inspect_image, db, ref)


def vm_exists(db: Database, name: str) -> bool:
    """True when a VM folder of that name exists (``miv inspect`` decides what NAME names)."""
    return "/" not in name and not name.startswith(".") and os.path.isdir(db.vms_dir / name)
