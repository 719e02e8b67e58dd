"""Pull: tag -> id -> (already here? just tag) -> stream the .tgz into a verified import.

The download is appended to ``cache/pull-<id>.tgz.part`` by one thread while it is
fed, through a bounded queue, to a :class:`~minivirt_core.archive.TarImporter` on
another (gunzip, member checks, hashing, writing to staging), so the network and the
import overlap and memory stays flat. Reading stops where the archive ends. An
interrupted pull keeps the ``.part`` file; the next pull replays it into a fresh import
and asks the server only for the rest (HTTP Range). The ``.part`` is locked by the pull
writing it: a parallel pull of the same image waits, then finds the image here and only
tags it. If the id computed from the files differs from the remote's tag, nothing is
imported. A ``file://`` remote is read in place (regular files only).
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from ..archive import CHUNK, ProgressCallback, TarImporter
from ..database import Database
from ..download import (
    Cancelled,
    HttpStatusError,
    Restart,
    get_small,
    in_thread,
    keeps_part,
    locked_part,
    stream_body,
)
from ..errors import ExternalError, InvalidInput, NotFound
from ..fsutil import disk_full_is_an_error, open_regular
from ..images import ImageStore
from ..names import is_image_id
from .store import PullResult, Remote

QUEUE_DEPTH = 8  # pieces of up to 1 MiB waiting for the importer
TAG_LIMIT = 1024  # bytes: a tag file holds an image id (64 hex digits) and maybe a newline


def _download_and_import(url: str, part: Path, importer: TarImporter, progress: ProgressCallback | None,
                         cancel: threading.Event) -> int:  # (cancel comes last: see in_thread)
    """On this thread: replay ``part`` then download the rest (appending to ``part``),
    up to the end of the archive; on a second thread: gunzip, check, hash and write each
    piece as it comes."""
    pieces: queue.Queue[bytes | None] = queue.Queue(QUEUE_DEPTH)
    failure: list[BaseException] = []

    def consume() -> None:
        try:
            while (data := pieces.get()) is not None:
                importer.feed(data)
        except BaseException as e:
            failure.append(e)
            while pieces.get() is not None:  # keep draining so the producer never blocks
                pass

    def sink(data: bytes) -> None:
        if failure:
            raise failure[0]
        pieces.put(data)

    worker = threading.Thread(target=consume, name="miv-import", daemon=True)
    worker.start()
    try:
        if part.stat().st_size:
            with open(part, "rb") as f:
                while data := f.read(CHUNK):
                    if cancel.is_set():
                        raise Cancelled()
                    sink(data)
        stream_body(url, part, sink, progress, cancel, done=lambda: importer.ended)
    finally:
        pieces.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return part.stat().st_size


async def read_tag(remote: Remote, tag: str) -> str:
    """The image id ``tags/<tag>`` holds on ``remote``, validated (``tag`` must be valid)."""
    if remote.kind == "file":
        text = await asyncio.to_thread(_read_file_tag, remote, tag)
    else:
        url = f"{remote.url}/tags/{quote(tag, safe='')}"
        try:
            text = await asyncio.to_thread(get_small, url, TAG_LIMIT)
        except HttpStatusError as e:
            if e.status == 404:
                raise NotFound(f"tag {tag!r} not found on remote {remote.name}",
                               hint=f"`miv remote ls {remote.name}` lists its tags, where the store allows it.") from e
            raise
    image_id = text.decode("ascii", errors="replace").strip()
    if not is_image_id(image_id):
        # (Not echoed: whatever the file holds is the remote's, not something to print.)
        raise InvalidInput(f"remote {remote.name}: tags/{tag} does not hold an image id",
                           hint="The remote is damaged; nothing was downloaded.")
    return image_id


def _open_on(remote: Remote, relative: str, missing: str) -> BinaryIO:
    """A regular file of a ``file://`` remote, open; ``missing`` is the error if it is not there."""
    try:
        return open_regular(remote.folder / relative)  # type: ignore[no-any-return]
    except FileNotFoundError as e:
        raise NotFound(missing) from e
    except InvalidInput as e:
        raise InvalidInput(f"remote {remote.name}: {relative} is not a regular file",
                           hint="The remote is damaged; nothing was read from it.") from e


def _read_file_tag(remote: Remote, tag: str) -> bytes:
    with _open_on(remote, f"tags/{tag}", f"tag {tag!r} not found on remote {remote.name}") as f:
        text = f.read(TAG_LIMIT + 1)
    if len(text) > TAG_LIMIT:
        raise InvalidInput(f"remote {remote.name}: tags/{tag} is larger than {TAG_LIMIT} bytes, not an image id",
                           hint="The remote is damaged; nothing was downloaded.")
    return text


async def pull(db: Database, images: ImageStore, remote: Remote, remote_tag: str, tag: str,
               progress: ProgressCallback | None) -> PullResult:
    """Pull ``remote_tag`` (a valid tag) from ``remote`` into the database as ``tag``."""
    db.ensure()
    image_id = await read_tag(remote, remote_tag)

    def have() -> bool:
        return (db.images_dir / image_id).is_dir()

    async def tag_only() -> PullResult:
        await asyncio.to_thread(images.tag, image_id, [tag])  # the lock may wait for another miv
        return PullResult(images.get(image_id), downloaded=False)

    if have():
        return await tag_only()
    with disk_full_is_an_error(f"{remote_tag} pulled from remote {remote.name} (into {db.root})"):
        if remote.kind == "file":
            return await _import(db, images, remote, remote_tag, image_id, tag,
                                 functools.partial(_pull_file, remote, image_id, progress=progress))
        db.cache_dir.mkdir(exist_ok=True)
        async with locked_part(db.cache_dir / f"pull-{image_id}.tgz.part", have) as part:
            if part is None:  # a parallel pull brought it while we waited
                return await tag_only()
            return await _import(db, images, remote, remote_tag, image_id, tag,
                                 functools.partial(_pull_http, remote, image_id, part, progress=progress))


async def _import(db: Database, images: ImageStore, remote: Remote, remote_tag: str, image_id: str, tag: str,
                  into: Callable[[Path], Awaitable[tuple[str, int]]]) -> PullResult:
    """Import with ``into(staging folder)``, check the id against the tag's, commit."""
    with db.staging("pull") as staging:
        got, size = await into(staging.path)
        if got != image_id:
            raise InvalidInput(
                f"the image downloaded from remote {remote.name} has id {got[:12]}, but its tag "
                f"{remote_tag!r} says {image_id[:12]}: nothing was imported",
                hint="The object on the remote was changed or damaged in transit.",
            )
        image = await asyncio.to_thread(images.commit_staging, staging, image_id, [tag])
    return PullResult(image, downloaded=True, bytes=size)


async def _pull_file(remote: Remote, image_id: str, dest: Path, progress: ProgressCallback | None) -> tuple[str, int]:
    from ..archive import import_stream

    with _open_on(remote, f"images/{image_id}.tgz",
                  f"remote {remote.name} has the tag but not the image {image_id}.tgz") as f:
        size = os.fstat(f.fileno()).st_size
        return await asyncio.to_thread(import_stream, f.read, dest, progress, size), size


async def _pull_http(remote: Remote, image_id: str, part: Path, dest: Path,
                     progress: ProgressCallback | None) -> tuple[str, int]:
    """Download (or resume) into ``part``, whose lock the caller holds, importing into ``dest``."""
    url = f"{remote.url}/images/{image_id}.tgz"
    for _attempt in range(2):
        for leftover in dest.iterdir():
            leftover.unlink()
        importer = TarImporter(dest)
        try:
            size = await in_thread(functools.partial(_download_and_import, url, part, importer, progress))
            image = await asyncio.to_thread(importer.finish)
        except Restart:
            os.truncate(part, 0)  # the server ignored Range: start over once
            continue
        except BaseException as e:
            if not keeps_part(e, part):
                part.unlink(missing_ok=True)  # bad data, an error status, a full disk: never resume from it
            if isinstance(e, HttpStatusError) and e.status == 404:
                raise NotFound(f"remote {remote.name} has the tag but not the image {image_id}.tgz") from e
            raise
        finally:
            importer.close()  # interrupted: the .part file stays, to resume from
        part.unlink(missing_ok=True)
        return image, size
    raise ExternalError(f"{url}: the server keeps ignoring range requests")
