"""Pull: tag -> id -> (already here? just tag) -> stream the .tgz into a verified import.

The download is appended to ``cache/pull-<id>.tgz.part`` while it is fed, through a
bounded queue, to a :class:`~minivirt_core.archive.TarImporter` on a worker thread
(gunzip, member checks, hashing, writing to staging), so the network and the import
overlap and memory stays flat. An interrupted pull keeps the ``.part`` file; the next
pull replays it into a fresh import and asks the server only for the rest (HTTP Range).
If the id computed from the files differs from the remote's tag, nothing is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from ..archive import CHUNK, Progress, ProgressCallback, TarImporter
from ..database import Database
from ..download import USER_AGENT, HttpStatusError, http_client, with_retries
from ..errors import ExternalError, InvalidInput, NotFound
from ..images import ImageStore
from ..names import is_image_id
from .store import PullResult, Remote

QUEUE_DEPTH = 8  # pieces of up to 1 MiB waiting for the importer


class _Restart(Exception):
    """The server ignored our Range request: start the import over."""


class _ImportPipe:
    """Feeds an importer on a worker thread from a bounded queue."""

    def __init__(self, dest: Path) -> None:
        self.importer = TarImporter(dest)
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_DEPTH)
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while (data := await self.queue.get()) is not None:
            await asyncio.to_thread(self.importer.feed, data)

    async def feed(self, data: bytes) -> None:
        if self.task.done():
            self.task.result()  # raise the importer's error now
        await self.queue.put(data)

    async def finish(self) -> str:
        await self.queue.put(None)
        await self.task
        return await asyncio.to_thread(self.importer.finish)

    async def abort(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        self.importer.close()


async def read_tag(remote: Remote, tag: str) -> str:
    """The image id ``tags/<tag>`` holds on ``remote``, validated."""
    if remote.kind == "file":
        try:
            text = (remote.folder / "tags" / tag).read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"tag {tag!r} not found on remote {remote.name}") from e
    else:
        url = f"{remote.url}/tags/{tag}"
        async with http_client() as client:

            async def once() -> bytes:
                response = await client.get(url)
                if response.status_code == 404:
                    raise NotFound(f"tag {tag!r} not found on remote {remote.name}",
                                   hint=f"`miv remote ls {remote.name}` lists its tags, where the store allows it.")
                if response.status_code >= 400:
                    raise HttpStatusError(url, response.status_code)
                return response.content[:1024]

            text = await with_retries(url, once)
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
        images.tag(image_id, [tag])
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
        image = images.commit_staging(staging, image_id, [tag])
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
        pipe = _ImportPipe(staging.path)
        try:
            size = await _download_into(url, part, pipe, progress)
            image = await pipe.finish()
        except _Restart:
            await pipe.abort()
            part.unlink(missing_ok=True)
            continue
        except HttpStatusError as e:
            await pipe.abort()
            part.unlink(missing_ok=True)
            if e.status == 404:
                raise NotFound(f"remote {remote.name} has the tag but not the image {image_id}.tgz") from e
            raise
        except InvalidInput:
            await pipe.abort()
            part.unlink(missing_ok=True)  # bad data: never resume from it
            raise
        except BaseException:
            await pipe.abort()  # interrupted: keep the .part file to resume from
            raise
        part.unlink(missing_ok=True)
        return image, size
    raise ExternalError(f"{url}: the server keeps ignoring range requests")


async def _download_into(url: str, part: Path, pipe: _ImportPipe, progress: ProgressCallback | None) -> int:
    """Replay ``part`` into the pipe, then download the rest, appending to ``part`` too."""
    if part.exists():
        with open(part, "rb") as f:
            while data := await asyncio.to_thread(f.read, CHUNK):
                await pipe.feed(data)
    async with http_client() as client:

        async def once() -> None:
            offset = part.stat().st_size if part.exists() else 0
            headers = {"User-Agent": USER_AGENT}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code == 416 and offset:
                    return  # we have it all already
                if response.status_code >= 400:
                    raise HttpStatusError(url, response.status_code)
                if response.status_code == 206:
                    tail = response.headers.get("content-range", "").rsplit("/", 1)[-1]
                    total = int(tail) if tail.isdigit() else None
                elif offset:
                    raise _Restart()  # the server ignored Range and sends it all again
                else:
                    length = response.headers.get("content-length")
                    total = int(length) if length and length.isdigit() else None
                position = offset
                with open(part, "ab") as f:
                    async for chunk in response.aiter_raw(CHUNK):
                        f.write(chunk)
                        await pipe.feed(chunk)
                        position += len(chunk)
                        if progress:
                            progress(Progress(position, total))
                if total is not None and position != total:
                    raise ExternalError(f"{url}: the server sent {position} of {total} bytes")

        await with_retries(url, once)
    return part.stat().st_size
