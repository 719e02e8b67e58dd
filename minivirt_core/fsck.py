"""The database check: every id recomputed, every image's files held to its config, every tag and
VM resolved, every disk checked."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import drives, imageconfig, imageid, layout
from .database import Database
from .errors import InvalidInput
from .hostinfo import which
from .imageconfig import ImageConfig
from .images import ImageStore
from .names import is_image_id
from .orphans import find_orphans
from .vmconfig import VmConfig
from .vms import VmManager


@dataclass(frozen=True)
class Problem:
    """One inconsistency: what it is about and what is wrong."""

    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass
class FsckReport:
    """Problems found (``ok`` when none) and notes that need no repair."""

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


async def _qemu_img_check(path: Path) -> str | None:
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "check", "-q", "-f", "qcow2", "-U", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode == 0:
        return None
    text = out.decode(errors="replace").strip().splitlines()
    return text[-1] if text else f"qemu-img check exited with {proc.returncode}"


async def _check_image(image_id: str, path: Path, have_qemu_img: bool) -> tuple[ImageConfig | None, list[Problem]]:
    """The image's config (None if it is unusable) and its problems: its id, its config and
    files (:func:`~minivirt_core.imageconfig.inspect_image`), its disk by ``qemu-img check``."""
    subject = f"image {image_id[:12]}"
    problems = []
    try:
        actual = await asyncio.to_thread(imageid.compute_id, path)
    except InvalidInput as e:
        problems.append(Problem(subject, f"its id cannot be checked: {e.message}"))
    else:
        if actual != image_id:
            problems.append(Problem(subject, f"its files hash to {actual[:12]}, not to its id: the image is corrupt"))
    config, found = await asyncio.to_thread(imageconfig.inspect_image, path)
    problems += [Problem(subject, message) for message in found]
    disk = path / layout.IMAGE_DISK
    if config and config.disk and have_qemu_img and not any(m.startswith(layout.IMAGE_DISK) for m in found) \
            and (err := await _qemu_img_check(disk)):
        problems.append(Problem(subject, f"{layout.IMAGE_DISK} fails qemu-img check: {err}"))
    return (config if not problems else None), problems


def _drives_problem(vm_dir: Path, config: VmConfig, image_config: ImageConfig | None) -> str | None:
    """What would keep the VM from starting among its drives (disk, image ISO, resources)."""
    try:
        drives.vm_drives(vm_dir, config, image_config)
    except InvalidInput as e:
        return e.message
    return None


async def fsck(db: Database, progress: Callable[[str], None] | None = None) -> FsckReport:
    """Check the whole database; never changes anything."""
    report = FsckReport()
    store = ImageStore(db)
    ids, tags, other = store._scan()
    have_qemu_img = which("qemu-img") is not None
    if not have_qemu_img:
        report.notes.append("qemu-img is not installed: qcow2 disks were not checked")

    sem = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))

    async def one(image_id: str) -> tuple[ImageConfig | None, list[Problem]]:
        async with sem:
            if progress:
                progress(f"checking image {image_id[:12]}")
            return await _check_image(image_id, db.images_dir / image_id, have_qemu_img)

    image_configs = {}
    for checked_id, (config, problems) in zip(sorted(ids), await asyncio.gather(*(one(i) for i in sorted(ids))),
                                            strict=True):
        image_configs[checked_id] = config
        report.problems.extend(problems)
    report.images_checked = len(ids)

    for tag, target in sorted(tags.items()):
        if not is_image_id(target):
            report.problems.append(Problem(f"tag {tag}", f"points at {target!r}, which is not an image id"))
        elif target not in ids:
            report.problems.append(Problem(f"tag {tag}", f"points at missing image {target[:12]}"))

    for path in other:
        report.problems.append(
            Problem(f"images/{path.name}", "is neither an image nor a tag (a leftover: `miv prune` removes it)")
        )

    vms = VmManager(db, store)
    for name in vms.names():
        vm_config, vm_problems = vms.check(name)
        if vm_config is not None and not vm_problems:
            image_config = image_configs.get(vm_config.image) if vm_config.image else None
            if problem := _drives_problem(vms.path(name), vm_config, image_config):
                vm_problems.append(problem)
        report.problems.extend(Problem(f"vm {name}", p) for p in vm_problems)
    for orphan in find_orphans(db):
        report.problems.append(Problem(f"vm {orphan.name}", orphan.describe()))

    stale = db.stale_staging()
    if stale:
        report.notes.append(
            f"{len(stale)} folder(s) of interrupted work in staging/ ({', '.join(p.name for p in stale)}); "
            "`miv prune` removes them"
        )
    return report
