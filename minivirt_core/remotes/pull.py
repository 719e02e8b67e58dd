"""Pull: tag -> id -> (already here? just tag) -> stream the .tgz into a verified import.

The download is appended to ``cache/pull-<id>.tgz.part`` by one thread while it is
fed, through a bounded queue, to a :class:`~minivirt_core.archive.TarImporter` on
another (gunzip, member checks, hashing, writing to staging), so the network and the
import overlap and memory stays flat. An interrupted pull keeps the ``.part`` file; the next
pull replays it into a fresh import and asks the server only for the rest (HTTP Range).
If the id computed from the files differs from the remote's tag, nothing is imported.
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import threading
from pathlib import Path

from ..archive import CHUNK, ProgressCallback, TarImporter
from ..database import Database
from ..download import Cancelled, HttpStatusError, Restart, get_small, in_thread, stream_body
from ..errors import ExternalError, InvalidInput, NotFound
from ..images import ImageStore
from ..names import is_image_id
from .store import PullResult, Remote

QUEUE_DEPTH = 8  # pieces of up to 1 MiB waiting for the importer


def _download_and_import(url: str, part: Path, importer: TarImporter, progress: ProgressCallback | None,
                         cancel: threading.Event) -> int:  # (cancel comes last: see in_thread)
    """On this thread: replay ``part`` then download the rest (appending to ``part``);
    on a second thread: gunzip, check, hash and write each piece as it comes."""
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
        if part.exists():
            with open(part, "rb") as f:
                while data := f.read(CHUNK):
                    if cancel.is_set():
                        raise Cancelled()
                    sink(data)
        stream_body(url, part, sink, progress, cancel)
    finally:
        pieces.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return part.stat().st_size


async def read_tag(remote: Remote, tag: str) -> str:
    """The image id ``tags/<tag>`` holds on ``remote``, validated."""
    if remote.kind == "file":
        try:
            text = (remote.folder / "tags" / tag).read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"tag {tag!r} not found on remote {remote.name}") from e
    else:
        url = f"{remote.url}/tags/{tag}"
        try:
            text = await asyncio.to_thread(get_small, url, 1024)
        except HttpStatusError as e:
            if e.status == 404:
                raise NotFound(f"tag {tag!r} not found on remote {remote.name}",
                               hint=f"`miv remote ls {remote.name}` lists its tags, where the store allows it.") from e
            raise
    image_id = text.decode(errors="replace").strip()
    if not is_image_id(image_id):
        raise InvalidInput(f"remote {remote.name}: tags/{tag} holds {image_id[:80]!r}, not an image id",
                           hint="The remote is damaged; nothing was downloaded.")
    return image_id


async def pull(db: Database, images: ImageStore, remote: Remote, remote_tag: str, tag: str,
               progress: ProgressCallback | None) -> PullResult:
    db.ensure()
    image_id = await read_tag(remote, remote_tag)
    if (db.images_dir / image_id).is_dir():
        await asyncio.to_thread(images.tag, image_id, [tag])  # the lock may wait for another miv
        return PullResult(images.get(image_id), downloaded=False)
    with db.staging("pull") as staging:
        if remote.kind == "file":
            got, size = await _pull_file(remote, image_id, staging.path, progress)
        else:
            got, size = await _pull_http(db, remote, image_id, staging, progress)
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

    path = remote.folder / "images" / f"{image_id}.tgz"
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after the thread is done
    except FileNotFoundError as e:
        raise NotFound(f"remote {remote.name} has the tag but not the image {image_id}.tgz") from e
    with f:
        size = os.fstat(f.fileno()).st_size
        return await asyncio.to_thread(import_stream, f.read, dest, progress, size), size


async def _pull_http(db: Database, remote: Remote, image_id: str, staging: object,
                     progress: ProgressCallback | None) -> tuple[str, int]:
    from ..database import Staging

    assert isinstance(staging, Staging)
    url = f"{remote.url}/images/{image_id}.tgz"
    db.cache_dir.mkdir(parents=True, exist_ok=True)
    part = db.cache_dir / f"pull-{image_id}.tgz.part"
    for _attempt in range(2):
        for leftover in staging.path.iterdir():
            leftover.unlink()
        importer = TarImporter(staging.path)
        try:
            size = await in_thread(functools.partial(_download_and_import, url, part, importer, progress))
            image = await asyncio.to_thread(importer.finish)
        except Restart:
            part.unlink(missing_ok=True)  # the server ignored Range: start over once
            continue
        except HttpStatusError as e:
            part.unlink(missing_ok=True)
            if e.status == 404:
                raise NotFound(f"remote {remote.name} has the tag but not the image {image_id}.tgz") from e
            raise
        except InvalidInput:
            part.unlink(missing_ok=True)  # bad data: never resume from it
            raise
        finally:
            importer.close()  # interrupted: the .part file stays, to resume from
        part.unlink(missing_ok=True)
        return image, size
    raise ExternalError(f"{url}: the server keeps ignoring range requests")
