"""Pull, for every kind of remote: resolve the tag -> (already here? just tag) -> stream
into a verified import -> commit.

The stream is appended to ``cache/pull-<key>.part`` by one thread while it is fed,
through a bounded queue, to the transport's importer on another (gunzip, member checks,
hashing, writing to staging), so the network and the import overlap and memory stays
flat. When the remote declares the stream's digest and size, both are checked as the
bytes arrive: more bytes than declared stop the download at once, and a digest that does
not match imports nothing. An interrupted pull keeps the ``.part`` file; the next pull
replays it into a fresh import and asks only for the rest (HTTP Range). The ``.part`` is
locked by the pull writing it: a parallel pull of the same image waits, then finds the
image here and only tags it. When the remote records the image id, the id computed from
the files must match it. Remotes read in place (``file://``) need no ``.part``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import queue
import shutil
import threading
from pathlib import Path

from ..archive import CHUNK, ProgressCallback
from ..database import Database
from ..download import Cancelled, Restart, in_thread, keeps_part
from ..errors import ExternalError, InvalidInput
from ..fsutil import disk_full_is_an_error
from ..images import ImageStore
from ..parts import locked_part
from .remote import PullResult
from .transport import Importer, RemoteImage, Transport

QUEUE_DEPTH = 8  # pieces of up to 1 MiB waiting for the importer


class StreamCheck:
    """Counts and hashes a stream as it arrives, against the size and digest the remote
    declared (when it did)."""

    def __init__(self, target: RemoteImage, where: str) -> None:
        self.target = target
        self.where = where
        self.seen = 0
        self._hash = hashlib.sha256() if target.digest else None

    @property
    def complete(self) -> bool:
        """All the declared bytes arrived."""
        return self.target.size is not None and self.seen >= self.target.size

    def update(self, data: bytes) -> None:
        self.seen += len(data)
        if self.target.size is not None and self.seen > self.target.size:
            raise InvalidInput(f"{self.where} sends more than the {self.target.size} bytes it declared",
                               hint="The registry or remote misbehaves; nothing was imported.")
        if self._hash is not None:
            self._hash.update(data)

    def finish(self) -> None:
        """Raise unless the stream was exactly what was declared."""
        size = self.target.size
        if size is not None and self.seen != size:
            raise ExternalError(f"{self.where} sent {self.seen} of the {size} bytes it declared",
                                hint="What was downloaded is kept; run the pull again to resume.")
        if self._hash is not None:
            digest = f"sha256:{self._hash.hexdigest()}"
            if digest != self.target.digest:
                raise InvalidInput(f"{self.where}: the data has digest {digest[:19]}..., not the declared "
                                   f"{str(self.target.digest)[:19]}...: nothing was imported",
                                   hint="The content on the remote was changed or damaged in transit.")


def _download_and_import(transport: Transport, target: RemoteImage, part: Path | None, importer: Importer,
                         check: StreamCheck, progress: ProgressCallback | None, cancel: threading.Event) -> int:
    """On this thread: replay ``part`` then download the rest (appending to ``part``),
    checking size and digest; on a second thread: import each piece as it comes."""
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
        check.update(data)
        pieces.put(data)

    worker = threading.Thread(target=consume, name="miv-import", daemon=True)
    worker.start()
    try:
        if part is not None and part.stat().st_size:
            with open(part, "rb") as f:
                while data := f.read(CHUNK):
                    if cancel.is_set():
                        raise Cancelled()
                    sink(data)
        transport.download(target, part, sink, progress, cancel, done=lambda: importer.ended or check.complete)
    finally:
        pieces.put(None)
        worker.join()
    if failure:
        raise failure[0]
    check.finish()
    return check.seen


async def pull(db: Database, images: ImageStore, transport: Transport, remote_tag: str, tag: str,
               progress: ProgressCallback | None) -> PullResult:
    """Pull ``remote_tag`` (a valid tag) through ``transport`` into the database as ``tag``."""
    db.ensure()
    remote = transport.remote
    target = await transport.resolve(remote_tag)

    def have() -> bool:
        return target.image_id is not None and (db.images_dir / target.image_id).is_dir()

    if have():
        return await _tag_only(images, str(target.image_id), tag)
    with disk_full_is_an_error(f"{remote_tag} pulled from remote {remote.name} (into {db.root})"):
        _check_space(db, target, f"{remote_tag} on remote {remote.name}")
        if not transport.resumable:
            return await _import(db, images, transport, target, remote_tag, tag, None, progress)
        db.cache_dir.mkdir(exist_ok=True)
        async with locked_part(db.cache_dir / f"pull-{target.key}.part", have) as part:
            if part is None:  # a parallel pull brought it while we waited
                return await _tag_only(images, str(target.image_id), tag)
            return await _import(db, images, transport, target, remote_tag, tag, part, progress)


async def _tag_only(images: ImageStore, image_id: str, tag: str) -> PullResult:
    changes = await asyncio.to_thread(images.tag, image_id, [tag])  # the lock may wait for another miv
    return PullResult(images.get(image_id)._replace(moved=tuple(c for c in changes if c.previous_id)),
                      downloaded=False)


def _check_space(db: Database, target: RemoteImage, what: str) -> None:
    """A declared size larger than the free space is refused before anything is downloaded."""
    if target.size is None:
        return
    free = shutil.disk_usage(db.root).free
    if target.size > free:
        raise InvalidInput(f"{what} declares {target.size} bytes, more than the {free} bytes free here: "
                           "nothing was downloaded",
                           hint="Free some space (`miv prune`), or the remote misbehaves.")


async def _import(db: Database, images: ImageStore, transport: Transport, target: RemoteImage, remote_tag: str,
                  tag: str, part: Path | None, progress: ProgressCallback | None) -> PullResult:
    """Download (or resume) into ``part`` (whose lock the caller holds), importing into
    staging; check the id against the remote's, commit."""
    remote = transport.remote
    where = f"remote {remote.name} ({remote_tag})"
    with db.staging("pull") as staging:
        for _attempt in range(2):
            for leftover in staging.path.iterdir():
                leftover.unlink()
            importer = transport.importer(target, staging.path)
            check = StreamCheck(target, where)
            try:
                size = await in_thread(functools.partial(_download_and_import, transport, target, part, importer,
                                                         check, progress))
                got = await asyncio.to_thread(importer.finish)
            except Restart:
                assert part is not None
                os.truncate(part, 0)  # the server ignored Range: start over once
                continue
            except BaseException as e:
                if part is not None and not keeps_part(e, part):
                    part.unlink(missing_ok=True)  # bad data, an error status, a full disk: never resume from it
                raise
            finally:
                importer.close()  # interrupted: the .part file stays, to resume from
            if part is not None:
                part.unlink(missing_ok=True)
            break
        else:
            raise ExternalError(f"{where}: the server keeps ignoring range requests")
        if target.image_id is not None and got != target.image_id:
            raise InvalidInput(
                f"the image downloaded from remote {remote.name} has id {got[:12]}, but its tag "
                f"{remote_tag!r} says {target.image_id[:12]}: nothing was imported",
                hint="The object on the remote was changed or damaged in transit.",
            )
        if (db.images_dir / got).is_dir():
            return await _tag_only(images, got, tag)
        image = await asyncio.to_thread(images.commit_staging, staging, got, [tag])
    return PullResult(image, downloaded=True, bytes=size)
