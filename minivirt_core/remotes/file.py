"""Remotes in a local folder (``file://``): the minivirt layout, read in place, written
with staged files renamed into place (locked while written, so a killed push's leftovers
are told from a live one's)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

from ..archive import CHUNK, Progress, ProgressCallback, TarImporter
from ..download import Cancelled
from ..errors import InvalidInput, NotFound
from ..fsutil import atomic_write_text, create_temp, open_regular, remove_abandoned_temps
from ..images import Image
from . import layout
from .compress import compressed_stream
from .remote import PushResult
from .tags import TAG_LIMIT, image_id_of, valid_tags
from .transport import RemoteImage, Sink, Transport


class FileTransport(Transport):
    """A folder with the minivirt layout."""

    resumable = False  # a local file is read in place: nothing to resume

    def _open(self, relative: str, missing: str) -> BinaryIO:
        """A regular file of the remote, open; ``missing`` is the error if it is not there."""
        try:
            return open_regular(self.remote.folder / relative)  # type: ignore[no-any-return]
        except FileNotFoundError as e:
            raise NotFound(missing) from e
        except InvalidInput as e:
            raise InvalidInput(f"remote {self.remote.name}: {relative} is not a regular file",
                               hint="The remote is damaged; nothing was read from it.") from e

    def _read_tag(self, tag: str) -> bytes:
        with self._open(layout.tag_key(tag), f"tag {tag!r} not found on remote {self.remote.name}") as f:
            text = f.read(TAG_LIMIT + 1)
        if len(text) > TAG_LIMIT:
            raise InvalidInput(f"remote {self.remote.name}: tags/{tag} is larger than {TAG_LIMIT} bytes, "
                               "not an image id", hint="The remote is damaged; nothing was downloaded.")
        return text

    async def resolve(self, tag: str) -> RemoteImage:
        image_id = image_id_of(self.remote, tag, await asyncio.to_thread(self._read_tag, tag))
        return RemoteImage(image_id, key=image_id)

    def download(self, image: RemoteImage, part: Path | None, sink: Sink, progress: ProgressCallback | None,
                 cancel: threading.Event, done: Callable[[], bool]) -> None:
        assert image.image_id
        key = layout.image_key(image.image_id)
        with self._open(key, f"remote {self.remote.name} has the tag but not the image "
                             f"{image.image_id}{layout.IMAGE_SUFFIX}") as f:
            size = os.fstat(f.fileno()).st_size
            position = 0
            while data := f.read(CHUNK):
                if cancel.is_set():
                    raise Cancelled()
                sink(data)
                position += len(data)
                if progress:
                    progress(Progress(position, size))

    def importer(self, image: RemoteImage, dest: Path) -> TarImporter:
        return TarImporter(dest)

    async def write(self, image: Image, tag: str, progress: ProgressCallback | None) -> PushResult:
        return await asyncio.to_thread(self._push, image, tag, progress)

    def _push(self, image: Image, tag: str, progress: ProgressCallback | None) -> PushResult:
        folder = self.remote.folder
        if not folder.is_dir():
            raise NotFound(f"the folder of remote {self.remote.name} does not exist: {folder}",
                           hint=f"Create it: mkdir -p {folder}")
        for sub in (layout.IMAGES, layout.TAGS):
            (folder / sub).mkdir(exist_ok=True)
            remove_abandoned_temps(folder / sub)  # a killed push's (live ones are locked)
        target = folder / layout.image_key(image.id)
        uploaded = False
        written = 0
        if not target.exists():
            tmp, fd = create_temp(target, 0o644)
            try:
                with open(fd, "wb") as f, closing(compressed_stream(image.path, progress)) as members:
                    for member in members:
                        f.write(member)
                        written += len(member)
                    f.flush()
                    os.fsync(f.fileno())
                    os.replace(tmp, target)  # (before the close drops the lock)
            finally:
                tmp.unlink(missing_ok=True)
            uploaded = True
        atomic_write_text(folder / layout.tag_key(tag), image.id)
        return PushResult(image.id, uploaded, written)

    async def tags(self) -> list[str]:
        try:
            names = await asyncio.to_thread(os.listdir, self.remote.folder / layout.TAGS)
        except FileNotFoundError:
            return []
        return valid_tags(names)
