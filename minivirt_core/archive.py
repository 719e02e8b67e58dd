"""Images as tar archives: ``save`` writes one, ``load`` and ``pull`` read one.

The reader is a push parser (:class:`TarImporter`): feed it bytes as they arrive from a
pipe or a download and it writes the members into a staging folder while hashing them,
so the image id is known when the last byte is written, with no second read. Members
must be flat regular files; anything else (absolute paths, ``..``, folders, links,
devices, duplicates) and any qcow2 disk that points at another file is refused, and the
caller's staging folder is removed, so nothing is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import imageid, qcow2
from .errors import InvalidInput

BLOCK = 512
CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
_TYPE_NAMES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.DIRTYPE: "a folder",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_LONGNAME: "a GNU long name",
    tarfile.GNUTYPE_LONGLINK: "a GNU long link",
    tarfile.GNUTYPE_SPARSE: "a GNU sparse file",
}


@dataclass(frozen=True)
class Progress:
    """Bytes done so far of a transfer (``total`` is None when unknown)."""

    done: int
    total: int | None = None


ProgressCallback = Callable[[Progress], None]
"""Called as bytes move. Transfers call it from their worker threads, not the event loop:
keep it cheap and thread-safe, or hand the value to your loop (``loop.call_soon_threadsafe``)."""


def check_member_name(name: str) -> str:
    """The member name if it is a flat, safe file name; else raise :class:`InvalidInput`."""
    if name.startswith("./"):
        name = name[2:]
    if not name:
        raise InvalidInput("the archive has a member with an empty name")
    if name.startswith("/"):
        raise InvalidInput(f"the archive member {name!r} has an absolute path")
    if ".." in name.split("/"):
        raise InvalidInput(f"the archive member {name!r} has '..' in its path")
    if "/" in name:
        raise InvalidInput(f"the archive member {name!r} is inside a folder; image members are flat")
    if name.startswith(".") or "\0" in name or not name.isprintable():
        raise InvalidInput(f"the archive member {name!r} has a name an image may not use")
    return name


class _Member:
    """One file being written: fd, remaining bytes, hash running on a helper thread."""

    def __init__(self, name: str, path: Path, size: int, pool: ThreadPoolExecutor) -> None:
        self.name = name
        self.size = size
        self.remaining = size
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.hash = hashlib.sha256()
        self.head = b""
        self.checked = False
        self._pool = pool
        self._pending: Future[None] | None = None

    def write(self, data: memoryview) -> None:
        if not self.checked:
            self.head += bytes(data[: qcow2.HEADER_BYTES - len(self.head)])
            if len(self.head) >= qcow2.HEADER_BYTES or len(self.head) == self.size:
                self.check_head()
        if self._pending is not None:
            self._pending.result()
        # Hash on the helper thread while this one writes: hashlib drops the GIL.
        self._pending = self._pool.submit(self.hash.update, data)
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def check_head(self) -> None:
        self.checked = True
        if reason := qcow2.unsafe_reason(self.head):
            raise InvalidInput(f"the archive member {self.name!r} is refused: {reason}")

    def finish(self) -> str | None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        if not self.checked:
            self.check_head()
        os.close(self.fd)
        self.fd = -1
        return self.hash.hexdigest()

    def abort(self) -> None:
        if self._pending is not None:
            try:
                self._pending.result()
            except Exception:
                pass
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class TarImporter:
    """Parse a tar (or gzip'd tar) stream fed in pieces into a folder, hashing as it goes.

    Call :meth:`feed` with each piece, then :meth:`finish`, which returns the image id.
    On any error an :class:`InvalidInput` is raised; the caller removes the folder.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.digests: dict[str, str] = {}
        self.bytes_in = 0
        self._buf = bytearray()
        self._gunzip: zlib._Decompress | None = None
        self._gz_open = False  # the current gzip member has started and not ended
        self._sniffed = False
        self._member: _Member | None = None
        self._pad = 0
        self._pax: dict[str, str] = {}
        self._ended = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miv-hash")

    def feed(self, data: bytes) -> None:
        """Take the next piece of the archive (any size; not to be changed afterwards)."""
        if not data:
            return
        self.bytes_in += len(data)
        if not self._sniffed:
            self._sniffed = True
            if data[:2] == GZIP_MAGIC:
                self._gunzip = zlib.decompressobj(wbits=31)
        if self._gunzip is not None:
            data = self._gunzip_feed(data)
        self._consume(memoryview(data))

    def _gunzip_feed(self, data: bytes) -> bytes:
        assert self._gunzip is not None
        out = []
        while data:
            self._gz_open = True
            try:
                out.append(self._gunzip.decompress(data))
            except zlib.error as e:
                raise InvalidInput(f"the archive is not valid gzip: {e}") from e
            if self._gunzip.eof:
                self._gz_open = False
                data = self._gunzip.unused_data
                # Concatenated gzip members are one stream (as gzip(1) treats them).
                self._gunzip = zlib.decompressobj(wbits=31)
                if data and data[:2] != GZIP_MAGIC:
                    data = b""  # trailing garbage after the stream: ignored, like gzip
            else:
                data = b""
        return b"".join(out)

    def _consume(self, view: memoryview) -> None:
        while view:
            if self._ended:
                return  # bytes after the end-of-archive blocks are padding
            member = self._member
            if member is not None:
                n = min(member.remaining, len(view))
                member.write(view[:n])
                member.remaining -= n
                view = view[n:]
                if member.remaining == 0:
                    self._member = None
                    digest = member.finish()
                    if digest is not None:
                        self.digests[member.name] = digest
                        self._check_config(member.name)
                continue
            if self._pad:
                n = min(self._pad, len(view))
                self._pad -= n
                view = view[n:]
                continue
            need = BLOCK - len(self._buf)
            self._buf += view[:need]
            view = view[need:]
            if len(self._buf) == BLOCK:
                block = bytes(self._buf)
                self._buf.clear()
                self._header(block)

    def _header(self, block: bytes) -> None:
        if block == b"\0" * BLOCK:
            self._ended = True
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise InvalidInput(f"the input is not a valid tar archive ({e})") from e
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE):
            self._start_pax(info)
            return
        name = self._pax.pop("path", info.name)
        size = int(self._pax.pop("size", info.size))
        self._pax.clear()
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            kind = _TYPE_NAMES.get(info.type, f"of tar type {info.type!r}")
            raise InvalidInput(f"the archive member {name!r} is {kind}; only regular files are allowed")
        name = check_member_name(name)
        if name in self.digests:
            raise InvalidInput(f"the archive has the member {name!r} twice")
        self._pad = -size % BLOCK
        member = _Member(name, self.dest / name, size, self._pool)
        if size == 0:
            self.digests[name] = member.finish() or ""
            self._check_config(name)
        else:
            self._member = member

    def _start_pax(self, info: tarfile.TarInfo) -> None:
        # Collect the pax record into memory (it is small), then parse it.
        size = info.size
        if size > 1 << 20:
            raise InvalidInput("the archive has an oversized pax header")
        is_global = info.type == tarfile.XGLTYPE
        collector = _PaxCollector(size, self, is_global)
        self._pad = -size % BLOCK
        if size:
            self._member = collector  # type: ignore[assignment]
        else:
            collector.finish()

    def _check_config(self, name: str) -> None:
        if name != "config.json":
            return
        try:
            with open(self.dest / name, "rb") as f:
                value = json.load(f)
        except ValueError as e:
            raise InvalidInput(f"the archive's config.json is not valid JSON: {e}") from e
        if not isinstance(value, dict):
            raise InvalidInput("the archive's config.json is not a JSON object")

    def finish(self) -> str:
        """Check the archive was complete and return the image id of what was written."""
        try:
            if self._gz_open:
                raise InvalidInput("the archive is truncated (the gzip stream ends early)")
            if not self.bytes_in:
                raise InvalidInput("the input is empty; expected a tar archive")
            if self._member is not None or self._buf or self._pad or not self._ended:
                raise InvalidInput("the archive is truncated (it ends before the tar end marker)")
            if not self.digests:
                raise InvalidInput("the archive holds no files")
            return imageid.combine(self.digests)
        finally:
            self.close()

    def close(self) -> None:
        """Release files and the hashing thread (also after an error)."""
        if self._member is not None and isinstance(self._member, _Member):
            self._member.abort()
        self._pool.shutdown(wait=True)


class _PaxCollector:
    """Stands in for a member while a pax header's records are read."""

    def __init__(self, size: int, importer: TarImporter, is_global: bool) -> None:
        self.name = "<pax header>"
        self.remaining = size
        self._data = bytearray()
        self._importer = importer
        self._global = is_global

    def write(self, data: memoryview) -> None:
        self._data += data

    def finish(self) -> None:
        if not self._global:
            self._importer._pax = _parse_pax(bytes(self._data))
        return None

    def abort(self) -> None:
        pass


def _parse_pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise InvalidInput("the archive has a malformed pax header")
        try:
            length = int(data[pos:space])
        except ValueError as e:
            raise InvalidInput("the archive has a malformed pax header") from e
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        if length <= 0:
            raise InvalidInput("the archive has a malformed pax header")
        pos += length
    return {k: v for k, v in records.items() if k in ("path", "size")}


def import_stream(
    read: Callable[[int], bytes],
    dest: Path,
    progress: ProgressCallback | None = None,
    total: int | None = None,
) -> str:
    """Read an archive with ``read(n)`` until it returns ``b""``; return the image id."""
    importer = TarImporter(dest)
    try:
        while chunk := read(CHUNK):
            importer.feed(chunk)
            if progress:
                progress(Progress(importer.bytes_in, total))
        return importer.finish()
    finally:
        importer.close()


# Writing -------------------------------------------------------------------


def _header(path: Path, name: str) -> tuple[bytes, int]:
    st = path.stat()
    info = tarfile.TarInfo(name)
    info.size = st.st_size
    info.mtime = int(st.st_mtime)
    info.mode = 0o644
    info.uname = info.gname = "root"
    return info.tobuf(format=tarfile.GNU_FORMAT), st.st_size


def image_files(image_path: Path) -> list[str]:
    """The member names of an image's archive: its files, sorted."""
    return sorted(e.name for e in os.scandir(image_path) if e.is_file(follow_symlinks=False))


def archive_size(image_path: Path) -> int:
    """Exact byte count of the tar :func:`iter_archive` produces."""
    total = 0
    for name in image_files(image_path):
        header, size = _header(image_path / name, name)
        total += len(header) + size + (-size % BLOCK)
    total += 2 * BLOCK
    return total + (-total % tarfile.RECORDSIZE)


def iter_archive(image_path: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    """The image folder as a tar with flat members, in pieces of about ``chunk`` bytes."""
    written = 0
    for name in image_files(image_path):
        header, size = _header(image_path / name, name)
        yield header
        written += len(header)
        with open(image_path / name, "rb", buffering=0) as f:
            left = size
            while left:
                data = f.read(min(chunk, left))
                if not data:
                    raise InvalidInput(f"{name} of {image_path} shrank while it was being read")
                left -= len(data)
                written += len(data)
                yield data
        if pad := -size % BLOCK:
            yield b"\0" * pad
            written += pad
    end = 2 * BLOCK
    end += -(written + end) % tarfile.RECORDSIZE
    yield b"\0" * end


def write_archive(image_path: Path, out: BinaryIO, progress: ProgressCallback | None = None) -> int:
    """Write the image's tar to ``out``; uses ``sendfile`` where the kernel allows it."""
    fd = out.fileno()
    total = archive_size(image_path)
    done = 0

    def emit(data: bytes) -> None:
        nonlocal done
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        done += len(data)

    out.flush()
    for name in image_files(image_path):
        header, size = _header(image_path / name, name)
        emit(header)
        with open(image_path / name, "rb", buffering=0) as f:
            offset = 0
            use_sendfile = True
            while offset < size:
                if use_sendfile:
                    try:
                        n = os.sendfile(fd, f.fileno(), offset, min(CHUNK * 8, size - offset))
                    except OSError:
                        use_sendfile = False
                        continue
                    if n == 0:
                        raise InvalidInput(f"{name} of {image_path} shrank while it was being read")
                    offset += n
                    done += n
                else:
                    f.seek(offset)
                    data = f.read(min(CHUNK, size - offset))
                    if not data:
                        raise InvalidInput(f"{name} of {image_path} shrank while it was being read")
                    emit(data)
                    offset += len(data)
                if progress:
                    progress(Progress(done, total))
        if pad := -size % BLOCK:
            emit(b"\0" * pad)
    emit(b"\0" * (total - done))
    if progress:
        progress(Progress(done, total))
    return done
