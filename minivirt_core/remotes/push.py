"""Push: the image as ``images/<id>.tgz`` (unless already there), then ``tags/<tag>``.

To S3 the tar is compressed and uploaded as it is produced, as a multipart upload: no
temporary copy on disk. The tar is read 8 MiB at a time; each piece becomes gzip members
on a worker thread (zlib releases the GIL, so all cores help): deflated where samples
show the data shrinks, stored as is where it would not, one shared member for zeroed
space. Gzip readers treat the members as one stream (gzip(1), ``tar xz``, and our own
pull). A few parts are in flight at once, so memory stays bounded (about 100 MiB at most).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..archive import Progress, ProgressCallback, archive_size, iter_archive
from ..errors import ExternalError, NotFound
from ..fsutil import atomic_write_text, claim_abandoned, create_temp, remove_abandoned_temps
from ..images import Image
from .store import PushResult, Remote

PIECE = 8 << 20  # tar bytes per gzip member
PART = 8 << 20  # compressed bytes per S3 part (S3 wants >= 5 MiB but for the last)
COMPRESSORS = max(2, min(4, os.cpu_count() or 2))
UPLOADS_IN_FLIGHT = 3
GZIP_LEVEL = 1
STALE_UPLOAD = 3600.0  # s: an image upload with no new part for this long was abandoned
IMAGE_KEY = re.compile(r"^images/[0-9a-f]{64}\.tgz$")
UPLOAD_NOTE = "push-upload"  # in the cache folder, as create_temp names it: one per upload in flight


BLOCK = 256 << 10  # the unit of the deflate-or-store decision
SAMPLE = 4 << 10  # random data does not shrink at any size; a small sample is cheap
INCOMPRESSIBLE = 0.9  # a sample that does not shrink below this ratio is not worth deflating
STORED_MAX = 0xFFFF  # bytes in one stored deflate block

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS
_ZERO_BLOCK = bytes(BLOCK)
_ZERO_MEMBER: list[bytes] = []


def _zero_member() -> bytes:
    if not _ZERO_MEMBER:
        z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        _ZERO_MEMBER.append(z.compress(_ZERO_BLOCK) + z.flush())
    return _ZERO_MEMBER[0]


def _stored_member(data: memoryview, out: list[bytes | memoryview]) -> None:
    """Append ``data`` as a gzip member of stored deflate blocks, built by hand: zlib at
    level 0 copies and checks the data several times (25 ms per 8 MiB here against 3 ms
    for the CRC alone)."""
    out.append(_GZIP_HEADER)
    size = len(data)
    for start in range(0, size or 1, STORED_MAX):
        block = data[start : start + STORED_MAX]
        final = start + STORED_MAX >= size
        n = len(block)
        out.append(struct.pack("<BHH", final, n, n ^ 0xFFFF))
        out.append(block)
    out.append(struct.pack("<II", zlib.crc32(data), size & 0xFFFFFFFF))


def _deflated_member(data: memoryview) -> bytes:
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


def _worth_deflating(block: memoryview) -> bool:
    sample = block[:SAMPLE]
    return len(zlib.compress(sample, GZIP_LEVEL)) < INCOMPRESSIBLE * len(sample)


def gzip_member(data: bytes) -> bytes:
    """``data`` as gzip members, decided per 256 KiB of input: deflated, or stored as is
    when a sample shows it would not shrink (random or already-compressed data barely
    does, and deflating it runs at ~30 MB/s per core here against GB/s for storing), or
    one shared member for an all-zero block. Consecutive stored blocks make one member.
    Concatenated members are one gzip stream to every reader."""
    view = memoryview(data)
    out: list[bytes | memoryview] = []
    stored_from = None  # start of the run of incompressible blocks not yet written
    for start in range(0, len(view), BLOCK):
        block = view[start : start + BLOCK]
        zero = data.startswith(_ZERO_BLOCK, start)  # memcmp, where comparing memoryviews is slow
        if not zero and not _worth_deflating(block):
            if stored_from is None:
                stored_from = start
            continue
        if stored_from is not None:
            _stored_member(view[stored_from:start], out)
            stored_from = None
        out.append(_zero_member() if zero else _deflated_member(block))
    if stored_from is not None or not view:
        _stored_member(view[stored_from or 0 :], out)
    return b"".join(out)


def compressed_stream(image_path: Path, progress: ProgressCallback | None = None) -> Iterator[bytes]:
    """The image's tar as gzip members, compressed in parallel, in order. The tar is
    read in pieces of up to 8 MiB, each compressed on its own (no re-chunking copies)."""
    total = archive_size(image_path)
    done = 0
    with ThreadPoolExecutor(COMPRESSORS, thread_name_prefix="miv-gzip") as pool:
        pending: deque[tuple[Future[bytes], int]] = deque()
        for piece in iter_archive(image_path, PIECE):
            pending.append((pool.submit(gzip_member, piece), len(piece)))
            if len(pending) > COMPRESSORS:
                future, n = pending.popleft()
                yield future.result()
                done += n
                if progress:
                    progress(Progress(done, total))
        while pending:
            future, n = pending.popleft()
            yield future.result()
            done += n
            if progress:
                progress(Progress(done, total))


async def push(remote: Remote, image: Image, tag: str, notes: Path, progress: ProgressCallback | None) -> PushResult:
    """Push ``image`` to ``remote`` as ``tag``; first clear what killed pushes left there
    (temp files; multipart uploads, known by their notes in the folder ``notes``)."""
    if remote.kind == "file":
        return await asyncio.to_thread(_push_file, remote, image, tag, progress)
    return await asyncio.to_thread(_push_s3, remote, image, tag, notes, progress)


def _push_file(remote: Remote, image: Image, tag: str, progress: ProgressCallback | None) -> PushResult:
    folder = remote.folder
    if not folder.is_dir():
        raise NotFound(f"the folder of remote {remote.name} does not exist: {folder}",
                       hint=f"Create it: mkdir -p {folder}")
    for sub in ("images", "tags"):
        (folder / sub).mkdir(exist_ok=True)
        remove_abandoned_temps(folder / sub)  # a killed push's (live ones are locked)
    target = folder / "images" / f"{image.id}.tgz"
    uploaded = False
    written = 0
    if not target.exists():
        tmp, fd = create_temp(target, 0o644)
        try:
            with open(fd, "wb") as f:
                for member in compressed_stream(image.path, progress):
                    f.write(member)
                    written += len(member)
                f.flush()
                os.fsync(f.fileno())
                os.replace(tmp, target)  # (before the close drops the lock)
        finally:
            tmp.unlink(missing_ok=True)
        uploaded = True
    atomic_write_text(folder / "tags" / tag, image.id)
    return PushResult(image.id, uploaded, written)


# S3 ---------------------------------------------------------------------------


def _client(remote: Remote) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise ExternalError(
            f"no credentials to push to remote {remote.name}",
            hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and AWS_ENDPOINT_URL "
                 "if the store is not AWS.",
        )
    region = session.region_name or "us-east-1"
    return session.client(
        "s3", region_name=region, endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=120,
                      s3={"addressing_style": "path"}),
    )


def _explain(e: Exception, remote: Remote) -> ExternalError:
    """A message a person can act on, for boto3's many errors."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    if isinstance(e, NoCredentialsError):
        return ExternalError(f"no credentials to push to remote {remote.name}",
                             hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")
    if isinstance(e, EndpointConnectionError):
        return ExternalError(f"cannot reach the object store at {endpoint}",
                             hint="Check AWS_ENDPOINT_URL (it must point at the S3 endpoint of the store).")
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
            return ExternalError(f"{endpoint} rejected the credentials ({code})",
                                 hint="Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")
        if code in ("NoSuchBucket",):
            return ExternalError(f"the bucket {remote.bucket!r} does not exist at {endpoint}",
                                 hint="The bucket is the last part of the remote's URL; create it, or fix the URL.")
        if code in ("AccessDenied", "403", "Forbidden"):
            return ExternalError(f"{endpoint} denied access to bucket {remote.bucket!r} ({code})",
                                 hint="These credentials may not write to that bucket.")
        return ExternalError(f"the object store refused: {code}: {e}")
    return ExternalError(f"push to remote {remote.name} failed: {e}")


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def _push_s3(remote: Remote, image: Image, tag: str, notes: Path, progress: ProgressCallback | None) -> PushResult:
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = _client(remote)
    bucket = remote.bucket
    key = f"images/{image.id}.tgz"
    try:
        # Fail early and clearly on a missing bucket or bad credentials.
        _check_bucket(s3, bucket)
        _abort_stale_uploads(s3, bucket, notes)
        uploaded = False
        written = 0
        if not _exists(s3, bucket, key):
            written = _multipart(s3, bucket, key, compressed_stream(image.path, progress), notes)
            uploaded = True
        s3.put_object(Bucket=bucket, Key=f"tags/{tag}", Body=image.id.encode(), ContentType="text/plain")
    except (ClientError, BotoCoreError) as e:
        if isinstance(e, ClientError) and str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket"):
            raise _explain(_no_such_bucket(e), remote) from e
        raise _explain(e, remote) from e
    return PushResult(image.id, uploaded, written)


def _check_bucket(s3: Any, bucket: str) -> None:
    """HEAD the bucket; when refused, ask again with a GET, whose error body names the
    real cause (HEAD answers carry none: a wrong secret would read as a bare 403)."""
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code")) not in ("403", "400", "Forbidden", "BadRequest"):
            raise
        s3.list_objects_v2(Bucket=bucket, MaxKeys=1)  # raises the explained error, if any
        raise  # listing works, so HEAD was refused for want of permission


def _no_such_bucket(e: Exception) -> Exception:
    from botocore.exceptions import ClientError

    assert isinstance(e, ClientError)
    return ClientError({"Error": {"Code": "NoSuchBucket", "Message": "no such bucket"}}, e.operation_name)


def _multipart(s3: Any, bucket: str, key: str, members: Iterable[bytes], notes: Path) -> int:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/gzip")["UploadId"]
    forget = _note_upload(notes, s3, bucket, key, upload_id)
    written = 0
    try:
        with ThreadPoolExecutor(UPLOADS_IN_FLIGHT, thread_name_prefix="miv-upload") as pool:
            in_flight: deque[Future[dict[str, Any]]] = deque()
            done_parts: list[dict[str, Any]] = []

            def send(number: int, body: bytes) -> dict[str, Any]:
                response = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
                return {"PartNumber": number, "ETag": response["ETag"]}

            buf: list[bytes] = []  # members of the next part, joined once (one copy)
            buffered = 0
            number = 1
            for member in members:
                buf.append(member)
                buffered += len(member)
                if buffered >= PART:
                    in_flight.append(pool.submit(send, number, b"".join(buf)))
                    written += buffered
                    number += 1
                    buf.clear()
                    buffered = 0
                    if len(in_flight) >= UPLOADS_IN_FLIGHT:
                        done_parts.append(in_flight.popleft().result())
            if buf or number == 1:
                in_flight.append(pool.submit(send, number, b"".join(buf)))
                written += buffered
            while in_flight:
                done_parts.append(in_flight.popleft().result())
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": sorted(done_parts, key=lambda p: p["PartNumber"])})
        return written
    except BaseException:
        _abort(s3, bucket, key, upload_id)
        raise
    finally:
        forget()


def _abort(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload; best effort (one already gone, or a refusal, is let be)."""
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception:
        pass


def _note_upload(notes: Path, s3: Any, bucket: str, key: str, upload_id: str) -> Any:
    """Note a multipart upload in flight in the cache folder, locked while this process
    lives: a killed push leaves its note unlocked, and the next push aborts the upload.
    Returns the function that drops the note."""
    notes.mkdir(parents=True, exist_ok=True)
    path, fd = create_temp(notes / UPLOAD_NOTE)
    os.write(fd, json.dumps({"endpoint": s3.meta.endpoint_url, "bucket": bucket, "key": key,
                             "upload_id": upload_id}).encode())

    def forget() -> None:
        path.unlink(missing_ok=True)
        os.close(fd)

    return forget


def _abort_stale_uploads(s3: Any, bucket: str, notes: Path) -> None:
    """Abort the image uploads killed pushes left in ``bucket``: at once those this
    database's pushes noted and whose process is gone; others (another machine's) once
    no part came for :data:`STALE_UPLOAD` seconds, by the store's clock. A live push
    elsewhere uploads a part every few seconds, so it is never touched. Best effort: a
    store that does not let us list uploads is left as it is."""
    from botocore.exceptions import BotoCoreError, ClientError

    for path in sorted(notes.glob(f".{UPLOAD_NOTE}.*")):
        with claim_abandoned(path) as abandoned:
            if not abandoned:
                continue
            try:
                note = json.loads(path.read_bytes())
            except ValueError:
                note = None
            if not isinstance(note, dict):
                path.unlink(missing_ok=True)
            elif note.get("endpoint") == s3.meta.endpoint_url and note.get("bucket") == bucket:
                _abort(s3, bucket, str(note.get("key")), str(note.get("upload_id")))
                path.unlink(missing_ok=True)
    try:
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix="images/"):
            now = _store_time(page)
            for upload in page.get("Uploads", []):
                key, upload_id = upload["Key"], upload["UploadId"]
                if not IMAGE_KEY.match(key) or (now - upload["Initiated"]).total_seconds() < STALE_UPLOAD:
                    continue
                parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", [])
                last = max([p["LastModified"] for p in parts], default=upload["Initiated"])
                if (now - last).total_seconds() >= STALE_UPLOAD:
                    _abort(s3, bucket, key, upload_id)
    except (ClientError, BotoCoreError):
        pass


def _store_time(response: dict[str, Any]) -> Any:
    """The store's clock, from the Date of its answer (ours may be off); else ours."""
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(date) if date else datetime.now(UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)
