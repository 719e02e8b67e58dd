"""Remotes on plain HTTP(S) and S3: pull over anonymous HTTP (resumable with Range), push
with boto3 (the bucket is the URL's last path segment), list with S3 ListObjectsV2.

The push compresses and uploads the tar as it is produced, as a multipart upload: no
temporary copy on disk; a few parts are in flight at once, so memory stays bounded
(about 100 MiB at most). Killed pushes' multipart uploads are aborted by the next push.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from ..archive import ProgressCallback, TarImporter
from ..download import HttpStatusError, get_small, stream_body
from ..errors import ExternalError, NotFound
from ..fsutil import claim_abandoned, create_temp
from ..images import Image
from . import layout
from .compress import compressed_stream
from .remote import PushResult, Remote
from .tags import TAG_LIMIT, image_id_of, valid_tags
from .transport import RemoteImage, Sink, Transport

PART = 8 << 20  # compressed bytes per S3 part (S3 wants >= 5 MiB but for the last)
UPLOADS_IN_FLIGHT = 3
STALE_UPLOAD = 3600.0  # s: an image upload with no new part for this long was abandoned
UPLOAD_NOTE = "push-upload"  # in the cache folder, as create_temp names it: one per upload in flight
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
LISTING_LIMIT = 16 << 20


class S3Transport(Transport):
    """An http(s) URL: anonymous reads of the minivirt layout, S3 writes."""

    async def resolve(self, tag: str) -> RemoteImage:
        url = f"{self.remote.url}/{layout.TAGS}/{quote(tag, safe='')}"
        try:
            text = await asyncio.to_thread(get_small, url, TAG_LIMIT)
        except HttpStatusError as e:
            if e.status == 404:
                raise NotFound(f"tag {tag!r} not found on remote {self.remote.name}",
                               hint=f"`miv remote ls {self.remote.name}` lists its tags, where the store allows "
                                    "it.") from e
            raise
        image_id = image_id_of(self.remote, tag, text)
        return RemoteImage(image_id, key=f"{image_id}{layout.IMAGE_SUFFIX}")

    def download(self, image: RemoteImage, part: Path | None, sink: Sink, progress: ProgressCallback | None,
                 cancel: threading.Event, done: Callable[[], bool]) -> None:
        assert part is not None and image.image_id
        url = f"{self.remote.url}/{layout.image_key(image.image_id)}"
        try:
            stream_body(url, part, sink, progress, cancel, done=done)
        except HttpStatusError as e:
            if e.status == 404:
                raise NotFound(f"remote {self.remote.name} has the tag but not the image "
                               f"{image.image_id}{layout.IMAGE_SUFFIX}") from e
            raise

    def importer(self, image: RemoteImage, dest: Path) -> TarImporter:
        return TarImporter(dest)

    async def write(self, image: Image, tag: str, progress: ProgressCallback | None) -> PushResult:
        return await asyncio.to_thread(_push_s3, self.remote, image, tag, self.cache_dir, progress)

    async def tags(self) -> list[str]:
        """S3 ListObjectsV2, anonymously; :class:`ExternalError` when the store refuses."""
        remote = self.remote
        tags: list[str] = []
        token: str | None = None
        prefix = f"{layout.TAGS}/"
        while True:
            params = {"list-type": "2", "prefix": prefix}
            if token:
                params["continuation-token"] = token
            try:
                body = await asyncio.to_thread(get_small, f"{remote.url}?{urlencode(params)}", LISTING_LIMIT)
            except HttpStatusError as e:
                raise ExternalError(f"remote {remote.name} does not allow listing its tags (HTTP {e.status})",
                                    hint="Ask its owner for the tag names; `miv pull` works without "
                                         "listing.") from e
            try:
                root = ET.fromstring(body)
            except ET.ParseError as e:
                raise ExternalError(f"remote {remote.name} answered the listing with something not S3 XML") from e
            for key in root.iter(f"{S3_NS}Key"):
                if key.text and key.text.startswith(prefix) and len(key.text) > len(prefix):
                    tags.append(key.text[len(prefix):])
            truncated = root.findtext(f"{S3_NS}IsTruncated") == "true"
            token = root.findtext(f"{S3_NS}NextContinuationToken")
            if not truncated or not token:
                return valid_tags(tags)


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
    """Upload the archive (unless there) as a multipart upload, then the tag."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = _client(remote)
    bucket = remote.bucket
    key = layout.image_key(image.id)
    try:
        # Fail early and clearly on a missing bucket or bad credentials.
        _check_bucket(s3, bucket)
        _abort_stale_uploads(s3, bucket, notes)
        uploaded = False
        written = 0
        if not _exists(s3, bucket, key):
            with closing(compressed_stream(image.path, progress)) as members:  # stops its threads on errors
                written = _multipart(s3, bucket, key, members, notes)
            uploaded = True
        s3.put_object(Bucket=bucket, Key=layout.tag_key(tag), Body=image.id.encode(), ContentType="text/plain")
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
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=f"{layout.IMAGES}/"):
            now = _store_time(page)
            for upload in page.get("Uploads", []):
                key, upload_id = upload["Key"], upload["UploadId"]
                if not layout.IMAGE_KEY.match(key) or (now - upload["Initiated"]).total_seconds() < STALE_UPLOAD:
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
