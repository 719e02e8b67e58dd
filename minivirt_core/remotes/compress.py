"""Gzip for pushes: the tar of an image (or of a layer) as gzip members made in parallel.

The tar is read 8 MiB at a time; each piece becomes gzip members on a worker thread
(zlib releases the GIL, so all cores help): zeroed space (found per 64 KiB, a disk's
cluster) from one precomputed deflate segment, data deflated where samples show it
shrinks, stored as is where it would not. Gzip readers treat the members as one stream
(gzip(1), ``tar xz``, Go's gzip, our own pull).
"""

from __future__ import annotations

import functools
import os
import queue
import struct
import threading
import zlib
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from zlib_ng.zlib_ng import crc32  # 6x the speed of the system zlib's (no carry-less multiply there)

from .. import heap
from ..archive import Progress, ProgressCallback, archive_size, iter_archive

PIECE = 8 << 20  # tar bytes per gzip piece (the tar's own reads)
COMPRESSORS = max(2, min(4, os.cpu_count() or 2))
GZIP_LEVEL = 1

UNIT = 64 << 10  # zeros are found per unit: where zeros and data meet in a disk (qcow2's cluster)
BLOCK = 256 << 10  # the data of a block is deflated or stored on one sample's say
SAMPLE = 4 << 10  # random data does not shrink at any size; a small sample is cheap
INCOMPRESSIBLE = 0.9  # a sample that does not shrink below this ratio is not worth deflating
STORED_MAX = 0xFFFF  # bytes in one stored deflate block

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # a final, empty fixed-Huffman block
_ZERO_UNIT = bytes(UNIT)
_ZERO, _DEFLATE, _STORE = range(3)
_zero_crcs = [0]  # CRC-32 of n units of zeros, at [n]
_zero_crcs_lock = threading.Lock()


@functools.cache
def _zero_segment() -> bytes:
    """Deflate data for one unit of zeros, ending on a full flush (byte-aligned, no
    reference to what came before): any number of them in a row is a valid stream. At
    level 1 (305 bytes), not 9 (83 bytes): level 9 refers each match to the byte before,
    which inflates byte by byte, 4x slower on pull than level 1's 258-byte distances."""
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    return z.compress(_ZERO_UNIT) + z.flush(zlib.Z_FULL_FLUSH)


def _zero_member(units: int, out: list[bytes | memoryview]) -> None:
    """Append ``units`` units of zeros as one gzip member made of the precomputed segment:
    no deflating, and the CRC known from the count."""
    with _zero_crcs_lock:  # compressors share the table (crc32 drops the GIL midway)
        while len(_zero_crcs) <= units:
            _zero_crcs.append(crc32(_ZERO_UNIT, _zero_crcs[-1]))
    out += (_GZIP_HEADER, _zero_segment() * units, _FINAL_EMPTY_BLOCK,
            struct.pack("<II", _zero_crcs[units], units * UNIT & 0xFFFFFFFF))


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
    out.append(struct.pack("<II", crc32(data), size & 0xFFFFFFFF))


def _deflated_member(data: memoryview) -> bytes:
    z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


def _worth_deflating(data: memoryview) -> bool:
    sample = data[:SAMPLE]
    return len(zlib.compress(sample, GZIP_LEVEL)) < INCOMPRESSIBLE * len(sample)


def _runs(data: bytes) -> Iterator[tuple[int, int, int]]:
    """``(kind, start, end)`` runs of ``data``: whole units of zeros (a memcmp each), and
    between them data to deflate or to store, as one sample from each block's first
    non-zero unit says (a disk's clusters of random data next to zeroed ones cost
    neither a deflate of the random part nor zeros stored as they are)."""
    kind, start = None, 0
    size = len(data)
    for block in range(0, size, BLOCK):
        decided = None  # what the data of this block is, once sampled
        for unit in range(block, min(block + BLOCK, size), UNIT):
            if unit + UNIT <= size and data.startswith(_ZERO_UNIT, unit):  # memcmp
                here = _ZERO
            else:
                if decided is None:
                    sample = memoryview(data)[unit : unit + SAMPLE]
                    decided = _DEFLATE if _worth_deflating(sample) else _STORE
                here = decided
            if here != kind:
                if kind is not None:
                    yield kind, start, unit
                kind, start = here, unit
    if kind is not None:
        yield kind, start, size


def gzip_member(data: bytes) -> bytes:
    """``data`` as gzip members: runs of zeros from a precomputed segment, data deflated,
    or stored as is where a sample shows it would not shrink (random or already
    compressed data barely does, and deflating it runs at ~30 MB/s per core here against
    GB/s for storing). Concatenated members are one gzip stream to every reader."""
    view = memoryview(data)
    out: list[bytes | memoryview] = []
    for kind, start, end in _runs(data):
        if kind == _ZERO:
            _zero_member((end - start) // UNIT, out)
        elif kind == _DEFLATE:
            out.append(_deflated_member(view[start:end]))
        else:
            _stored_member(view[start:end], out)
    if not out:
        _stored_member(view, out)
    return b"".join(out)


def compressed_stream(image_path: Path, progress: ProgressCallback | None = None) -> Generator[bytes]:
    """The image's tar as gzip members, compressed in parallel, in order."""
    return compress_pieces(iter_archive(image_path, PIECE), archive_size(image_path), progress)


def compress_pieces(pieces: Iterable[bytes], total: int | None,
                    progress: ProgressCallback | None = None) -> Generator[bytes]:
    """``pieces`` (up to :data:`PIECE` bytes each) as gzip members, compressed in parallel
    on :data:`COMPRESSORS` threads, in order; progress counts the input bytes.

    ``pieces`` is iterated on a thread of its own, a few pieces ahead: reading the image
    (and whatever the iterator does on the way, such as hashing a layer's tar) overlaps
    the compressing and the caller's sending, which would otherwise wait for it."""
    heap.tune_for_streaming()
    done = 0
    ahead: queue.Queue[tuple[Future[bytes], int] | BaseException | None] = queue.Queue(COMPRESSORS + 1)
    stop = threading.Event()

    def put(item: tuple[Future[bytes], int] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for piece in pieces:
                if not put((pool.submit(gzip_member, piece), len(piece))):
                    return
            put(None)
        except BaseException as e:  # handed to the consumer, raised there
            put(e)

    with ThreadPoolExecutor(COMPRESSORS, thread_name_prefix="miv-gzip") as pool:
        reader = threading.Thread(target=produce, name="miv-read", daemon=True)
        reader.start()
        try:
            while (item := ahead.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                future, n = item
                yield future.result()
                done += n
                if progress:
                    progress(Progress(done, total))
        finally:
            stop.set()
            reader.join()
            pool.shutdown(cancel_futures=True)
