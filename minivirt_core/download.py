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
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .archive import Progress, ProgressCallback
from .errors import ExternalError, InvalidInput, NotFound

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


class Cancelled(Exception):
    """The download was cancelled (the caller's task was)."""


def transient_sync(exc: BaseException) -> bool:
    """True for network errors worth retrying, in the blocking (urllib) path."""
    import http.client
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError) or _unknown_host(exc):
        return False
    return isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError, http.client.IncompleteRead,
                            http.client.RemoteDisconnected))


def _unknown_host(exc: BaseException) -> bool:
    """True when the host name does not resolve at all (a typo, or no DNS): not worth retrying."""
    import socket
    import urllib.error

    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, socket.gaierror) and reason.errno == socket.EAI_NONAME


def _give_up_or_wait(url: str, exc: BaseException, attempt: int, hint: str | None = None) -> None:
    """After failed attempt number ``attempt`` (from 0): raise what a person should see, or
    sleep with backoff before the next try. Call it from the ``except`` block."""
    import time

    if _unknown_host(exc):
        raise ExternalError(f"{url}: the host {urlparse(url).hostname} is unknown",
                            hint="Check the URL, and that this machine can resolve names (DNS).") from exc
    if not transient_sync(exc):
        raise exc
    if attempt >= RETRIES:
        raise ExternalError(f"{url}: {exc or type(exc).__name__} (after {attempt + 1} attempts)", hint=hint) from exc
    time.sleep(min(8.0, 0.5 * 2 ** (attempt + 1)))


def get_small(url: str, limit: int = 1 << 20) -> bytes:
    """GET a small resource (a tag file, a listing) with retries; blocking: use a thread."""
    import urllib.error
    import urllib.request

    attempt = 0
    while True:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=30) as response:
                return bytes(response.read(limit))
        except urllib.error.HTTPError as e:
            raise HttpStatusError(url, e.code) from e
        except Exception as e:
            _give_up_or_wait(url, e, attempt)
            attempt += 1


def stream_body(url: str, part: Path, sink: Callable[[bytes], None] | None, progress: ProgressCallback | None,
                cancel: threading.Event) -> None:
    """Download ``url`` into ``part`` (appending from its current size, with HTTP Range),
    passing each new piece to ``sink``; retries transient errors with backoff.

    Blocking: run it on a worker thread. HTTP goes through the standard library: it
    streamed 3x faster than httpx's async client here (0.13 s vs 0.4 s per 100 MB over
    loopback), and importing httpx and making its client cost 0.3 s per command.
    Raises :class:`Restart` when the server ignores Range (the caller must start over),
    :class:`HttpStatusError` on an error status."""
    import urllib.error
    import urllib.request

    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response, \
                    open(part, "ab") as f:
                if response.status == 206:
                    tail = response.headers.get("Content-Range", "").rsplit("/", 1)[-1]
                    total = int(tail) if tail.isdigit() else None
                elif offset:
                    raise Restart()
                else:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                position = offset
                while data := response.read(CHUNK):
                    if cancel.is_set():
                        raise Cancelled()
                    f.write(data)
                    if sink is not None:
                        sink(data)
                    position += len(data)
                    if progress:
                        progress(Progress(position, total))
                if total is not None and position != total:
                    raise ConnectionError(f"the server sent {position} of {total} bytes")
                return
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:
                return  # we have it all already
            raise HttpStatusError(url, e.code) from e
        except Exception as e:
            _give_up_or_wait(url, e, attempt, hint="Anything downloaded so far is kept; run again to resume.")
            attempt += 1


class Restart(Exception):
    """The server ignored our Range request: what was downloaded must be thrown away."""


async def in_thread(fn: Callable[[threading.Event], Any]) -> Any:
    """Run blocking ``fn(cancel)`` on a thread; cancelling the caller sets ``cancel`` and
    waits for the thread to stop (it checks the event between pieces)."""
    cancel = threading.Event()
    future = asyncio.ensure_future(asyncio.to_thread(fn, cancel))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        try:
            await future
        except (Cancelled, Exception):
            pass
        raise


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


async def _download_http(url: str, part: Path, progress: ProgressCallback | None) -> None:
    for _attempt in range(2):
        try:
            await in_thread(lambda cancel: stream_body(url, part, None, progress, cancel))
            return
        except Restart:
            part.unlink(missing_ok=True)  # the server ignored Range: start over once
        except HttpStatusError:
            part.unlink(missing_ok=True)
            raise
    raise ExternalError(f"{url}: the server keeps ignoring range requests")


async def _verify(path: Path, expected: str, url: str, remove: bool) -> None:
    from .imageid import file_sha256

    actual = await asyncio.to_thread(file_sha256, path)
    if actual != expected.lower():
        if remove:
            path.unlink(missing_ok=True)
        raise InvalidInput(f"{url}: sha256 is {actual}, the recipe expects {expected}",
                           hint="The file changed upstream, or the download was tampered with.")
