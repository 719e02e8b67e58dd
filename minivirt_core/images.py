"""Images: immutable VM disks named by their id, and the tags that name them."""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from . import layout
from .database import Database, Staging
from .errors import InvalidInput, MinivirtError, NotFound
from .fsutil import dir_size, remove_tree
from .names import is_image_id, validate_tag

if TYPE_CHECKING:
    from .archive import ProgressCallback
    from .imageconfig import ImageConfig

# asyncio and the archive code are imported where used: `miv images` needs neither.

SHORT_ID = 12
MIN_PREFIX = 4
HEX = frozenset("0123456789abcdef")


# NamedTuples rather than dataclasses here: `dataclasses` imports `inspect`, a cost every
# `miv images` would pay at start-up.


class TagChange(NamedTuple):
    """What tagging did to one tag (:meth:`ImageStore.tag`, and every operation that tags)."""

    tag: str
    image_id: str
    previous_id: str | None  # the image the tag named before, if it moved


class Image(NamedTuple):
    """One image of the database, as found on the last look."""

    id: str
    path: Path
    tags: tuple[str, ...] = ()
    size: int = 0
    created: float = 0.0
    # Set on the image an operation returns (tag, load, pull, commit, build): the tags it
    # moved here from another image, so that every front end can say where they moved from.
    moved: tuple[TagChange, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID]

    @property
    def config(self) -> ImageConfig:
        """The image's validated ``config.json``, after checking the image's files follow it
        (:func:`~minivirt_core.imageconfig.check_image`): a clear error for an unsafe image."""
        from .imageconfig import check_image

        return check_image(self.path, self.label)

    @property
    def arch(self) -> str:
        """The guest architecture the image records in its config, else the host's (images
        made before architectures were recorded). Reads only ``config.json``: no file checks."""
        from .hostinfo import host_arch
        from .imageconfig import ImageConfig

        try:
            recorded = ImageConfig.read(self.path).arch
        except MinivirtError:
            recorded = None
        return recorded or host_arch()

    @property
    def disk_path(self) -> Path | None:
        """The image's disk, or None for an image without one."""
        disk = self.path / layout.IMAGE_DISK
        return disk if disk.is_file() else None

    @property
    def label(self) -> str:
        """A name for messages: the first tag, else the short id."""
        return self.tags[0] if self.tags else self.short_id

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "short_id": self.short_id, "size": self.size, "tags": list(self.tags),
                "created": self.created, "arch": self.arch}


class PruneReport:
    """What :meth:`ImageStore.prune` removed (or would remove, on a dry run)."""

    def __init__(self, dry_run: bool = False) -> None:
        self.images: list[str] = []
        self.vms: list[str] = []  # orphan VMs (throw-away VMs whose owner is gone)
        self.leftovers: list[Path] = []
        self.sizes: dict[str | Path, int] = {}  # bytes of each image (by id) and leftover
        self.warm_states: list[Path] = []  # warm states of images that are gone (see warm.py)
        self.freed = 0
        self.dry_run = dry_run

    @property
    def empty(self) -> bool:
        return not (self.images or self.vms or self.leftovers or self.warm_states)

    def _add(self, into: builtins.list[Any], item: Any, size: int) -> None:
        into.append(item)
        self.sizes[item] = size
        self.freed += size


def _tree_size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        total = dir_size(path)
        for sub in path.iterdir():
            if sub.is_dir() and not sub.is_symlink():
                total += _tree_size(sub)
        return total
    try:
        return path.lstat().st_blocks * 512
    except FileNotFoundError:
        return 0


class ImageStore:
    """The images and tags of a :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # Reading ---------------------------------------------------------------

    def _scan(self) -> tuple[list[str], dict[str, str], list[Path]]:
        """(image ids, {tag: target name}, other entries) of the images folder."""
        ids: list[str] = []
        tags: dict[str, str] = {}
        other: list[Path] = []
        try:
            entries = list(os.scandir(self.db.images_dir))
        except FileNotFoundError:
            return ids, tags, other
        for entry in entries:
            if entry.name.startswith("."):
                other.append(Path(entry.path))
            elif entry.is_symlink():
                tags[entry.name] = os.path.basename(os.readlink(entry.path).rstrip("/"))
            elif is_image_id(entry.name) and entry.is_dir():
                ids.append(entry.name)
            else:
                other.append(Path(entry.path))
        return ids, tags, other

    def list(self) -> list[Image]:
        """Every image, with its tags and size, sorted by first tag then id."""
        ids, tags, _ = self._scan()
        by_id: dict[str, list[str]] = {i: [] for i in ids}
        for tag, target in tags.items():
            if target in by_id:
                by_id[target].append(tag)
        images = []
        for image_id, image_tags in by_id.items():
            path = self.db.images_dir / image_id
            try:
                created = path.stat().st_mtime
            except FileNotFoundError:
                continue  # removed while we looked
            images.append(Image(image_id, path, tuple(sorted(image_tags)), dir_size(path), created))
        images.sort(key=lambda i: (not i.tags, i.tags[0] if i.tags else "", i.id))
        return images

    def tags(self) -> dict[str, str]:
        """``{tag: image id it names}`` (dangling tags included)."""
        return self._scan()[1]

    def get(self, image_id: str) -> Image:
        """The image with this full id."""
        path = self.db.images_dir / image_id
        if not is_image_id(image_id) or not path.is_dir() or path.is_symlink():
            raise NotFound(f"no image with id {image_id}")
        tags = tuple(sorted(t for t, target in self.tags().items() if target == image_id))
        return Image(image_id, path, tags, dir_size(path), path.stat().st_mtime)

    def resolve(self, ref: str) -> Image:
        """The image named by a tag, a full id, or a unique id prefix of 4+ hex digits."""
        if not ref:
            raise NotFound("no image named ''", hint="Name an image by tag or id: see `miv images`.")
        images_dir = self.db.images_dir
        if "/" not in ref and not ref.startswith("."):
            path = images_dir / ref
            if path.is_symlink():
                target = os.path.basename(os.readlink(path).rstrip("/"))
                if not (images_dir / target).is_dir():
                    raise NotFound(
                        f"tag {ref!r} names image {target[:SHORT_ID]}, which is missing",
                        hint="Run `miv fsck` to see the damage; `miv untag` removes the tag.",
                    )
                return self.get(target)
            if is_image_id(ref) and path.is_dir():
                return self.get(ref)
        lowered = ref.lower()
        if len(lowered) >= MIN_PREFIX and set(lowered) <= HEX:
            ids, _, _ = self._scan()
            matches = sorted(i for i in ids if i.startswith(lowered))
            if len(matches) == 1:
                return self.get(matches[0])
            if len(matches) > 1:
                listed = ", ".join(m[:SHORT_ID] for m in matches[:10])
                raise NotFound(
                    f"{ref!r} is ambiguous: it starts {len(matches)} image ids ({listed})",
                    hint="Give more digits of the id, or a tag.",
                )
        raise NotFound(
            f"no image named {ref!r}",
            hint="`miv images` lists tags and ids; `miv pull` or `miv build` make new ones.",
        )

    # Tags ------------------------------------------------------------------

    def _set_tag(self, tag: str, image_id: str) -> None:
        tmp = self.db.images_dir / f".tag-{os.urandom(6).hex()}"
        os.symlink(image_id, tmp)
        os.replace(tmp, self.db.images_dir / tag)

    def tag(self, ref: str, tags: Iterable[str]) -> builtins.list[TagChange]:
        """Point each tag at the image ``ref``; a tag naming another image moves."""
        tags = [validate_tag(t) for t in tags]
        with self.db.lock():
            return self._point(tags, self.resolve(ref).id)

    def _point(self, tags: Iterable[str], image_id: str) -> builtins.list[TagChange]:
        """Point valid tags at ``image_id`` (the caller holds the lock); what each did."""
        current = self.tags()
        changes = []
        for tag in tags:
            entry = self.db.images_dir / tag
            if entry.exists() and not entry.is_symlink():
                raise InvalidInput(f"cannot tag {tag!r}: an entry of that name is not a tag")
            previous = current.get(tag)
            self._set_tag(tag, image_id)
            changes.append(TagChange(tag, image_id, previous if previous != image_id else None))
        return changes

    def untag(self, tags: Iterable[str]) -> builtins.list[str]:
        """Remove tags (not the images: ``prune`` does that). Returns the ids they named."""
        tags = list(tags)
        ids = []
        with self.db.lock():
            current = self.tags()
            missing = [t for t in tags if t not in current]
            if missing:
                raise NotFound(
                    f"no tag named {', '.join(repr(t) for t in missing)}",
                    hint="`miv images` lists the tags.",
                )
            for tag in tags:
                os.unlink(self.db.images_dir / tag)
                ids.append(current[tag])
        return ids

    # Adding ----------------------------------------------------------------

    def commit_staging(self, staging: Staging, image_id: str, tags: Iterable[str] = (),
                       hold: Staging | None = None) -> Image:
        """Move a complete staging folder into place as image ``image_id`` and tag it.

        If the image is already present the staging copy is dropped. Done under the
        lock, so ``prune`` can never remove the new image before it is tagged; an
        untagged image stays safe from ``prune`` while ``hold`` (a live staging) lives.
        """
        tags = [validate_tag(t) for t in tags]
        with self.db.lock():
            if hold is not None:
                (hold.path / layout.HOLD).write_text(image_id)
            dest = self.db.images_dir / image_id
            if not dest.is_dir():
                os.chmod(staging.path, 0o755)
                os.rename(staging.path, dest)
            changes = self._point(tags, image_id)
            return self.get(image_id)._replace(moved=tuple(c for c in changes if c.previous_id))

    # Removing --------------------------------------------------------------

    def prune(self, dry_run: bool = False, listed: PruneReport | None = None) -> PruneReport:
        """Remove orphan VMs (their QEMU killed), then images no tag and no VM uses, and
        leftovers of interrupted work. With ``listed`` (a dry run's report, shown to
        someone who agreed), only what it lists goes: what became used meanwhile stays,
        and what became unused meanwhile waits for the next prune."""
        from .orphans import remove_orphans  # here: it needs the VM runtime, `miv images` does not

        def agreed(items: builtins.list[Any], item: Any) -> bool:
            return listed is None or item in items

        report = PruneReport(dry_run=dry_run)
        with self.db.lock():
            report.vms = [o.name for o in remove_orphans(self.db, dry_run, listed.vms if listed else None)]
            ids, tags, other = self._scan()
            vm_images = {i for name, i in self.db.vm_image_ids().items() if i and name not in report.vms}
            used = set(tags.values()) | vm_images
            used |= self.db.held_image_ids()
            for image_id in sorted(ids):
                if image_id in used or not agreed(listed.images if listed else [], image_id):
                    continue
                path = self.db.images_dir / image_id
                report._add(report.images, image_id, _tree_size(path))
                if not dry_run:
                    remove_tree(path)
            # In images/: temporary names of ours (".tag-*") and the original
            # minivirt's unfinished image folders (mkdtemp names). Writers hold the
            # lock while these exist, so any seen now is stale.
            from .warm import remove_states_of  # states of removed (or vanished) images go too

            kept = set(ids) - set(report.images)
            for path, size in remove_states_of(self.db, kept, dry_run):
                report._add(report.warm_states, path, size)
            for path in self._stale_layer_records(kept):
                if agreed(listed.leftovers if listed else [], path):
                    report._add(report.leftovers, path, _tree_size(path))
                    if not dry_run:
                        path.unlink(missing_ok=True)
            leftovers = list(other) + self.db.stale_staging()
            for path in leftovers:
                if not agreed(listed.leftovers if listed else [], path):
                    continue
                report._add(report.leftovers, path, _tree_size(path))
                if not dry_run:
                    if path.is_dir() and not path.is_symlink():
                        remove_tree(path)
                    else:
                        path.unlink(missing_ok=True)
        from .parts import remove_abandoned_parts  # partial downloads no live transfer holds

        for path, size in remove_abandoned_parts(self.db.cache_dir, dry_run, listed.leftovers if listed else None):
            report._add(report.leftovers, path, size)
        return report

    def _stale_layer_records(self, kept: set[str]) -> builtins.list[Path]:
        """The OCI layer records (``cache/oci-layer-<id>.json``) of images not in ``kept``."""
        try:
            entries = list(os.scandir(self.db.cache_dir))
        except FileNotFoundError:
            return []
        return sorted(Path(e.path) for e in entries
                      if (m := layout.OCI_LAYER_RECORD.fullmatch(e.name)) and m[1] not in kept)

    def remove_if_unused(self, image_id: str) -> bool:
        """Remove one image if no tag, VM or hold uses it (a failed build's image)."""
        with self.db.lock():
            ids, tags, _ = self._scan()
            used = set(tags.values()) | set(self.db.vm_image_ids().values()) | self.db.held_image_ids()
            path = self.db.images_dir / image_id
            if image_id in used or not is_image_id(image_id) or not path.is_dir():
                return False
            remove_tree(path)
            from .warm import remove_states_of

            remove_states_of(self.db, {i for i in ids if i != image_id})
            return True

    # Archives --------------------------------------------------------------

    async def load(
        self,
        read: Callable[[int], bytes],
        tags: Iterable[str] = (),
        progress: ProgressCallback | None = None,
        total: int | None = None,
    ) -> Image:
        """Import a tar (or gzip'd tar) read with ``read(n)``, tag it, and return it.

        The files go to a staging folder and the id is computed while they are
        written; the image appears only when complete. On any error nothing is left.
        """
        import asyncio

        tags = [validate_tag(t) for t in tags]
        return await asyncio.to_thread(self._load, read, tags, progress, total)

    def _load(
        self,
        read: Callable[[int], bytes],
        tags: builtins.list[str],
        progress: ProgressCallback | None,
        total: int | None,
    ) -> Image:
        from . import archive

        with self.db.staging("load") as staging:
            image_id = archive.import_stream(read, staging.path, progress, total)
            return self.commit_staging(staging, image_id, tags)

    async def save_to_file(self, ref: str, path: Path, progress: ProgressCallback | None = None) -> int:
        """Write image ``ref`` as a tar to ``path``; returns bytes written.

        A regular file (or a new one) is written as ``.<name>.<random>.part`` beside it and
        renamed into place when complete. A character device or a FIFO (``/dev/null``, a
        named pipe) is written into. Anything else, a symbolic link above all, is refused:
        ``save`` never replaces what is not a regular file."""
        import asyncio

        from . import archive
        from .fsutil import write_output

        image = self.resolve(ref)
        return await asyncio.to_thread(write_output, path,
                                       lambda out: archive.write_archive(image.path, out, progress))

    async def save(self, ref: str, out: BinaryIO, progress: ProgressCallback | None = None) -> int:
        """Write image ``ref`` as a tar with flat members to ``out``; returns bytes written."""
        import asyncio

        from . import archive

        image = self.resolve(ref)
        return await asyncio.to_thread(archive.write_archive, image.path, out, progress)
