"""Gzip for pushes: the tar of an image (or of a layer) as gzip members made in parallel.

The tar is read 8 MiB at a time; each piece becomes gzip members on a worker thread
(zlib releases the GIL, so all cores help): deflated where samples show the data
shrinks, stored as is where it would not, one shared member for zeroed space. Gzip
readers treat the members as one stream (gzip(1), ``tar xz``, Go's gzip, our own pull).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..archive import Progress, ProgressCallback, archive_size, iter_archive

PIECE = 8 << 20  # tar bytes per gzip member
COMPRESSORS = max(2, min(4, os.cpu_count() or 2))
GZIP_LEVEL = 1


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
    """The image's tar as gzip members, compressed in parallel, in order."""
    return compress_pieces(iter_archive(image_path, PIECE), archive_size(image_path), progress)


def compress_pieces(pieces: Iterable[bytes], total: int | None,
                    progress: ProgressCallback | None = None) -> Iterator[bytes]:
    """``pieces`` (up to :data:`PIECE` bytes each) as gzip members, compressed in parallel
    on :data:`COMPRESSORS` threads, in order; progress counts the input bytes."""
    done = 0
    with ThreadPoolExecutor(COMPRESSORS, thread_name_prefix="miv-gzip") as pool:
        pending: deque[tuple[Future[bytes], int]] = deque()
        for piece in pieces:
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
