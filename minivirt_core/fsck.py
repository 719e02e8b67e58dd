"""The database check: every id recomputed, every tag and VM resolved, every disk checked."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import imageid, layout, qcow2
from .database import Database, read_json
from .hostinfo import which
from .images import ImageStore
from .names import is_image_id
from .orphans import find_orphans
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


async def _check_image(image_id: str, path: Path, have_qemu_img: bool) -> list[Problem]:
    subject = f"image {image_id[:12]}"
    problems = []
    actual = await asyncio.to_thread(imageid.compute_id, path)
    if actual != image_id:
        problems.append(Problem(subject, f"its files hash to {actual[:12]}, not to its id: the image is corrupt"))
    config_path = path / layout.IMAGE_CONFIG
    if config_path.exists() and not isinstance(read_json(config_path), dict):
        problems.append(Problem(subject, "config.json is not a JSON object"))
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
            problems.append(Problem(subject, f"{entry.name} is not a regular file"))
            continue
        header = qcow2.read_header(Path(entry.path))
        if header is None:
            continue
        if header.has_backing_file or header.has_external_data_file:
            problems.append(Problem(subject, f"{entry.name} points at another file"))
        elif have_qemu_img and (err := await _qemu_img_check(Path(entry.path))):
            problems.append(Problem(subject, f"{entry.name} fails qemu-img check: {err}"))
    return problems


async def fsck(db: Database, progress: Callable[[str], None] | None = None) -> FsckReport:
    """Check the whole database; never changes anything."""
    report = FsckReport()
    store = ImageStore(db)
    ids, tags, other = store._scan()
    have_qemu_img = which("qemu-img") is not None
    if not have_qemu_img:
        report.notes.append("qemu-img is not installed: qcow2 disks were not checked")

    sem = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))

    async def one(image_id: str) -> list[Problem]:
        async with sem:
            if progress:
                progress(f"checking image {image_id[:12]}")
            return await _check_image(image_id, db.images_dir / image_id, have_qemu_img)

    for problems in await asyncio.gather(*(one(i) for i in sorted(ids))):
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
        _, vm_problems = vms.check(name)
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
