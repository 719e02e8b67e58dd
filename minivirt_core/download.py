"""Downloads into the cache: resumable, verified, and never caching a failure.

A download goes to ``cache/<sha256 of url>.part`` and is renamed to
``cache/<sha256 of url>`` when complete (and its ``sha256``, if given, matches). An
interrupted download keeps its ``.part`` file; the next attempt asks for the rest
with an HTTP ``Range`` request (and starts over if the server ignores it).
Transient network errors are retried with backoff; an HTTP error status fails at
once and leaves nothing cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from .archive import Progress, ProgressCallback
from .errors import ExternalError, InvalidInput, NotFound

if TYPE_CHECKING:
    import httpx

CHUNK = 1 << 20
RETRIES = 4
USER_AGENT = "minivirt"


class HttpStatusError(ExternalError):
    """The server answered with an error status (not retried, not cached)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url}: HTTP {status}")
        self.status = status


def cache_key(url: str) -> str:
    """The cache file name of ``url`` (compatible with the original minivirt's cache)."""
    return hashlib.sha256(url.encode()).hexdigest()


def transient(exc: BaseException) -> bool:
    """True for network errors worth retrying."""
    import httpx

    return isinstance(exc, (httpx.TransportError, ConnectionError, asyncio.TimeoutError))


def http_client() -> httpx.AsyncClient:
    """An HTTP client with sensible time-outs for large downloads."""
    import httpx

    return httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=60.0), follow_redirects=True)


async def fetch(
    url: str,
    cache_dir: Path,
    sha256: str | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """The cached file of ``url``, downloading (or resuming) it first when needed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / cache_key(url)
    if final.exists():
        if sha256:
            await _verify(final, sha256, url, remove=False)
        return final
    parsed = urlparse(url)
    part = cache_dir / (final.name + ".part")
    if parsed.scheme == "file":
        source = Path(unquote(parsed.path))
        if not source.is_file():
            raise NotFound(f"{url}: no such file")
        await asyncio.to_thread(shutil.copyfile, source, part)
    elif parsed.scheme in ("http", "https"):
        await _download_http(url, part, progress)
    else:
        raise InvalidInput(f"cannot download {url!r}: only http, https and file URLs are supported")
    if sha256:
        await _verify(part, sha256, url, remove=True)
    os.replace(part, final)
    return final


async def get_range(
    client: httpx.AsyncClient, url: str, offset: int, on_data: Callable[[int, bytes], None]
) -> int | None:
    """GET ``url`` from byte ``offset`` (HTTP Range); ``on_data(position, piece)`` for each piece.

    A server that ignores Range sends everything again: positions then restart at 0.
    Returns the full size when the server tells it.
    """
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and offset:
            return offset  # nothing left to get
        if response.status_code >= 400:
            raise HttpStatusError(url, response.status_code)
        total: int | None = None
        if response.status_code == 206:
            position = offset
            tail = response.headers.get("content-range", "").rsplit("/", 1)[-1]
            total = int(tail) if tail.isdigit() else None
        else:
            position = 0
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
        async for chunk in response.aiter_raw(CHUNK):
            on_data(position, chunk)
            position += len(chunk)
        if total is not None and position != total:
            raise ExternalError(f"{url}: the server sent {position} of {total} bytes")
        return total


async def with_retries(what: str, attempt_once: Callable[[], Any]) -> Any:
    """Await ``attempt_once()`` again after transient network errors, with backoff."""
    attempt = 0
    while True:
        try:
            return await attempt_once()
        except Exception as e:
            if not transient(e):
                raise
            if attempt >= RETRIES:
                raise ExternalError(f"{what}: {e or type(e).__name__} (after {attempt + 1} attempts)",
                                    hint="Anything downloaded so far is kept; run again to resume.") from e
            attempt += 1
            await asyncio.sleep(min(8.0, 0.5 * 2**attempt))


async def _download_http(url: str, part: Path, progress: ProgressCallback | None) -> None:
    async with http_client() as client:

        async def once() -> None:
            offset = part.stat().st_size if part.exists() else 0
            with open(part, "r+b" if offset else "wb") as f:
                total: list[int | None] = [None]

                def on_data(position: int, data: bytes) -> None:
                    if f.tell() != position:
                        f.seek(position)
                        f.truncate()
                    f.write(data)
                    if progress:
                        progress(Progress(position + len(data), total[0]))

                f.seek(offset)
                total[0] = await get_range(client, url, offset, on_data)

        try:
            await with_retries(url, once)
        except HttpStatusError:
            part.unlink(missing_ok=True)
            raise


async def _verify(path: Path, expected: str, url: str, remove: bool) -> None:
    from .imageid import file_sha256

    actual = await asyncio.to_thread(file_sha256, path)
    if actual != expected.lower():
        if remove:
            path.unlink(missing_ok=True)
        raise InvalidInput(f"{url}: sha256 is {actual}, the recipe expects {expected}",
                           hint="The file changed upstream, or the download was tampered with.")
