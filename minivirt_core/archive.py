"""Images as tar archives: ``save`` writes one, ``load`` and ``pull`` read one.

The reader is a push parser (:class:`TarImporter`): feed it bytes as they arrive from a
pipe or a download and it writes the members into a staging folder while hashing them,
so the image id is known when the last byte is written, with no second read. It takes
exactly what ``fsck`` accepts (:mod:`~minivirt_core.imageconfig`): flat regular files named
``config.json``, ``disk.qcow2`` (a qcow2 naming no other file) and the ISO the config
declares. Anything else (absolute paths, ``..``, folders, links, devices, duplicates, other
members, lookalike names, data after the end) is refused, the caller's staging folder is
removed, and nothing is left behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from zlib_ng import zlib_ng as zlib  # inflates a layer 3x faster than the system's zlib (0.04 s vs 0.125 s per 105 MB)

from . import heap, imageconfig, imageid, layout, qcow2
from .errors import InvalidInput, MinivirtError
from .fsutil import widen_pipe, write_error, write_sparse
from .imageconfig import ImageConfig

BLOCK = 512
CHUNK = 1 << 20
MAX_PADDING = 1 << 20  # zero bytes allowed after the tar's end marker (record padding)
GZIP_MAGIC = b"\x1f\x8b"
KNOWN_TIMES_FROM = 365 * 86400  # member times before 1971 are not times (reproducible tars write 0)
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


def _shown(name: str) -> str:
    return repr(name if len(name) <= 60 else name[:57] + "...")


def check_member_name(name: str) -> str:
    """The member name if it is a flat, safe file name; else raise :class:`InvalidInput`."""
    if name.startswith("./"):
        name = name[2:]
    if not name:
        raise InvalidInput("the archive has a member with an empty name")
    shown = _shown(name)
    if name.startswith("/"):
        raise InvalidInput(f"the archive member {shown} has an absolute path")
    if ".." in name.split("/"):
        raise InvalidInput(f"the archive member {shown} has '..' in its path")
    if "/" in name:
        raise InvalidInput(f"the archive member {shown} is inside a folder; image members are flat")
    if name.startswith("."):
        raise InvalidInput(f"the archive member {shown} has a name an image may not use")
    if problem := imageconfig.member_name_problem(name):
        raise InvalidInput(f"the archive member {shown} has a name an image may not use: it {problem}")
    return name


def not_a_regular_file(kind: bytes, name: str) -> InvalidInput:
    """The error for a member of tar type ``kind`` (a link, a device...) where only files may be."""
    what = _TYPE_NAMES.get(kind, f"of tar type {kind!r}")
    return InvalidInput(f"the archive member {_shown(name)} is {what}; only regular files are allowed")


def _not_a_member(name: str, config: ImageConfig | None) -> InvalidInput:
    if config is None:
        holds = "config.json, disk.qcow2 (when its config declares a disk) and the ISO its config.json names"
        return InvalidInput(f"the archive member {_shown(name)} is not part of an image: an image holds only {holds}")
    declared = ", ".join(sorted(config.members))
    return InvalidInput(f"the archive member {_shown(name)} is not part of the image: "
                        f"its config.json declares {declared}")


def _write_error(e: OSError, path: Path) -> MinivirtError:
    hint = "Free some space (`miv prune` removes unused images) and try again; nothing was imported."
    return write_error(e, f"the image's {path.name} (in {path.parent.parent})", hint=hint)


class _Member:
    """One file being written: fd, remaining bytes, hash running on a helper thread.

    Its first bytes (``need`` of them: the whole config, a disk's header, an ISO's
    signature) are kept and checked before the rest is written."""

    def __init__(self, name: str, path: Path, size: int, pool: ThreadPoolExecutor, declared: bool = True) -> None:
        self.name = name
        self.declared = declared  # False: read before config.json, so it can only be the ISO
        self.path = path
        self.size = size
        self.remaining = size
        self.need = size if name == layout.IMAGE_CONFIG else imageconfig.head_bytes(name)
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise _write_error(e, path) from e
        self.hash = hashlib.sha256()
        self.head = b""
        self.checked = False
        self.holes = False  # zeros were left as holes: the file's size is set at the end
        self._pool = pool
        self._pending: Future[None] | None = None

    def write(self, data: memoryview) -> None:
        if not self.checked:
            self.head += bytes(data[: self.need - len(self.head)])
            if len(self.head) >= self.need:
                self.check_head()
        if self._pending is not None:
            self._pending.result()
        # Hash on the helper thread while this one writes: hashlib drops the GIL.
        self._pending = self._pool.submit(self.hash.update, data)
        try:
            self.holes |= write_sparse(self.fd, data, self.size - self.remaining)
        except OSError as e:
            raise _write_error(e, self.path) from e

    def check_head(self) -> None:
        self.checked = True
        reason = qcow2.unsafe_reason(self.head) or imageconfig.content_refusal(self.name, self.head)
        if reason and not self.declared:
            raise InvalidInput(f"the archive member {_shown(self.name)} is not part of an image: it is neither "
                               f"config.json nor disk.qcow2, and as the image's ISO it is refused: {reason}")
        if reason:
            raise InvalidInput(f"the archive member {_shown(self.name)} is refused: {reason}")

    def finish(self) -> str:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        if not self.checked:
            self.check_head()
        if self.holes:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError as e:
                raise _write_error(e, self.path) from e
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
    Only what ``fsck`` accepts gets in (see :mod:`~minivirt_core.imageconfig`): ``config.json``,
    ``disk.qcow2`` and the declared ISO, each checked as soon as its first bytes arrive.
    On any error a :class:`MinivirtError` is raised; the caller removes the folder.
    """

    def __init__(self, dest: Path) -> None:
        heap.tune_for_streaming()
        self.dest = dest
        self.digests: dict[str, str] = {}
        self.made: float | None = None  # when the image was made: its newest member's mtime
        self.config: ImageConfig | None = None
        self.bytes_in = 0
        self._buf = bytearray()
        self._gunzip: zlib._Decompress | None = None
        self._gz_open = False  # the current gzip member has started and not ended
        self._gz_next = b""  # bytes after a gzip member's end: the next member's magic, or garbage
        self._sniffed = False
        self._member: _Member | _PaxCollector | None = None
        self._iso_candidate: str | None = None  # a member seen before config.json said what the ISO is
        self._pad = 0
        self._pax: dict[str, str] = {}
        self._ended = False
        self._padding_after_end = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miv-hash")

    @property
    def ended(self) -> bool:
        """True once the tar's end marker has been read, and from then on: only padding
        (and the gzip stream's end) may follow, so a transfer bounds what it reads after.
        (Whether a gzip member is open is no such signal: a stream of empty members
        opens and closes them for ever.)"""
        return self._ended

    def feed(self, data: bytes) -> None:
        """Take the next piece of the archive (any size; not to be changed afterwards)."""
        if not data:
            return
        self.bytes_in += len(data)
        if not self._sniffed:
            self._sniffed = True
            if data[:2] == GZIP_MAGIC:
                self._gunzip = zlib.decompressobj(wbits=31)
        if self._gunzip is None:
            self._consume(memoryview(data))
            return
        for piece in self._gunzip_pieces(data):
            self._consume(memoryview(piece))

    def _gunzip_pieces(self, data: bytes) -> Iterator[bytes]:
        """Gunzip ``data`` in pieces of at most :data:`CHUNK` bytes, each consumed before the
        next is made (``max_length`` / ``unconsumed_tail``): memory stays flat whatever the
        ratio, a gzip bomb's too."""
        assert self._gunzip is not None
        pending = False  # zlib holds output back: the last call filled its CHUNK
        while data or pending:
            if not self._gz_open:
                # Between gzip members: what follows must be another member (gzip(1) reads
                # concatenated members as one stream); anything else is trailing garbage.
                data = self._gz_next + data
                self._gz_next = b""
                if not GZIP_MAGIC.startswith(data[:2]):
                    raise InvalidInput("the archive has data after the end of its gzip stream",
                                       hint="The file is damaged or was appended to; nothing was imported.")
                if len(data) < len(GZIP_MAGIC):
                    self._gz_next = data
                    break
                self._gz_open = True
            try:
                out = self._gunzip.decompress(data, CHUNK)
            except zlib.error as e:  # type: ignore[misc]  # zlib-ng's stub declares an instance, not a class
                raise InvalidInput(f"the archive is not valid gzip: {e}") from e
            if out:
                yield out
            if self._gunzip.eof:
                self._gz_open = False
                data = self._gunzip.unused_data
                self._gunzip = zlib.decompressobj(wbits=31)
                pending = False
            else:
                data = self._gunzip.unconsumed_tail
                pending = len(out) == CHUNK

    def _consume(self, view: memoryview) -> None:
        while view:
            if self._ended:
                self._after_end(view)
                return
            member = self._member
            if member is not None:
                n = min(member.remaining, len(view))
                member.write(view[:n])
                member.remaining -= n
                view = view[n:]
                if member.remaining == 0:
                    self._member = None
                    self._finish_member(member)
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

    def _after_end(self, view: memoryview) -> None:
        # After the end marker only zero padding (up to a tar record of any usual size) may follow.
        self._padding_after_end += len(view)
        if self._padding_after_end > MAX_PADDING or bytes(view).strip(b"\0"):
            raise InvalidInput("the archive has data after the end of the tar archive",
                               hint="The file is damaged or was appended to; nothing was imported.")

    def _header(self, block: bytes) -> None:
        if block == b"\0" * BLOCK:
            self._ended = True
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise InvalidInput(f"the input is not a valid tar archive ({e})") from e
        if info.size < 0:
            raise InvalidInput("the archive has a member with a negative size")
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE):
            self._start_pax(info)
            return
        pax, self._pax = self._pax, {}
        name = pax.get("path", info.name)
        size = _pax_size(pax["size"]) if "size" in pax else info.size
        if any(key.startswith("GNU.sparse.") for key in pax):
            raise InvalidInput(f"the archive member {_shown(name)} is a sparse file; only plain files are allowed")
        self._pad = -size % BLOCK
        member = self._open_member(info.type, name, size)
        if member is not None:
            self._note_time(pax.get("mtime"), info.mtime)
        if member is None or size == 0:
            if member is not None:
                self._finish_member(member)
        else:
            self._member = member

    def _open_member(self, kind: bytes, name: str, size: int) -> _Member | None:
        """The member a header announces, open for writing, once its type and name are
        admitted (None: nothing to write). Subclasses read other layouts."""
        if kind not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise not_a_regular_file(kind, name)
        name = check_member_name(name)
        self._admit(name, size)
        declared = self.config is not None or name in (layout.IMAGE_CONFIG, layout.IMAGE_DISK)
        return _Member(name, self.dest / name, size, self._pool, declared)

    def _note_time(self, pax_mtime: str | None, mtime: float) -> None:
        """Keep the newest member time as the image's: how the time it was made travels
        with it (``save``, ``push``, ``pull``, ``load``), without touching its id. A time
        before 1971 (reproducible archives write 0) or in the future says nothing."""
        try:
            when = float(pax_mtime) if pax_mtime is not None else float(mtime)
        except (ValueError, OverflowError):
            return
        if KNOWN_TIMES_FROM <= when <= time.time() + 60 and (self.made is None or when > self.made):
            self.made = when

    def _admit(self, name: str, size: int) -> None:
        """Refuse a member an image cannot hold, as far as what was read so far tells."""
        if name in self.digests:
            raise InvalidInput(f"the archive has the member {_shown(name)} twice")
        if name == layout.IMAGE_CONFIG:
            if size > imageconfig.CONFIG_MAX_BYTES:
                raise InvalidInput(f"the archive's config.json is larger than "
                                   f"{imageconfig.CONFIG_MAX_BYTES // 1024} KiB")
        elif self.config is not None:
            if name not in self.config.members:
                raise _not_a_member(name, self.config)
        elif name != layout.IMAGE_DISK:
            # Before config.json arrives, one more member may come: the ISO it will name.
            if imageconfig.iso_name_problem(name) or self._iso_candidate not in (None, name):
                raise _not_a_member(name, None)
            self._iso_candidate = name

    def _finish_member(self, member: _Member | _PaxCollector) -> None:
        if isinstance(member, _PaxCollector):
            member.finish()
            return
        self.digests[member.name] = member.finish()
        if member.name == layout.IMAGE_CONFIG:
            try:
                self.config = ImageConfig.parse(member.head)
            except InvalidInput as e:
                raise InvalidInput(f"the archive's {e.message}", hint=e.hint) from e
            for name in sorted(self.digests):
                if name not in self.config.members:
                    raise _not_a_member(name, self.config)
            if self._iso_candidate is not None and self._iso_candidate not in self.config.members:
                raise _not_a_member(self._iso_candidate, self.config)

    def _start_pax(self, info: tarfile.TarInfo) -> None:
        # Collect the pax record into memory (it is small), then parse it.
        size = info.size
        if size > 1 << 20:
            raise InvalidInput("the archive has an oversized pax header")
        is_global = info.type == tarfile.XGLTYPE
        collector = _PaxCollector(size, self, is_global)
        self._pad = -size % BLOCK
        if size:
            self._member = collector
        else:
            collector.finish()

    def finish(self) -> str:
        """Check the archive was complete and return the image id of what was written."""
        try:
            if self._gz_open:
                raise InvalidInput("the archive is truncated (the gzip stream ends early)")
            if self._gz_next:
                raise InvalidInput("the archive has data after the end of its gzip stream")
            if not self.bytes_in:
                raise InvalidInput("the input is empty; expected a tar archive")
            if self._member is not None or self._buf or self._pad or not self._ended:
                raise InvalidInput("the archive is truncated (it ends before the tar end marker)")
            image_id = self._result()
            if self.made is not None:  # the image keeps the time it was made, not the time it came
                for name in (*self.digests, ""):
                    os.utime(self.dest / name, (self.made, self.made))
            return image_id
        finally:
            self.close()

    def _result(self) -> str:
        """The image id of the complete archive's members (subclasses: of what they made)."""
        if self.config is None:
            raise InvalidInput("the archive has no config.json: it is not a minivirt image",
                               hint="An image archive holds config.json and disk.qcow2 (see `miv save`).")
        for name in sorted(self.config.members - self.digests.keys()):
            raise InvalidInput(f"the archive lacks {name}, which its config.json declares")
        return imageid.combine(self.digests)

    def close(self) -> None:
        """Release files and the hashing thread (also after an error)."""
        if isinstance(self._member, _Member):
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

    def abort(self) -> None:
        pass


_PAX_LENGTH = re.compile(rb"[0-9]{1,8}")
_DECIMAL = re.compile(r"[0-9]{1,20}")


def _parse_pax(data: bytes) -> dict[str, str]:
    """The records of a pax extended header: ``<length> <key>=<value>\\n`` each."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0 or not _PAX_LENGTH.fullmatch(data[pos:space]):
            raise InvalidInput("the archive has a malformed pax header")
        length = int(data[pos:space])
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise InvalidInput("the archive has a malformed pax header")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise InvalidInput("the archive has a malformed pax header")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


def _pax_size(text: str) -> int:
    """A pax ``size`` record's value: decimal digits only (GNU tar refuses the rest too)."""
    if text.strip().startswith("-"):
        raise InvalidInput(f"the archive has a negative member size ({text[:30]!r}) in a pax header")
    if not _DECIMAL.fullmatch(text):
        raise InvalidInput(f"the archive has an invalid member size ({text[:30]!r}) in a pax header")
    return int(text)


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


def read_pieces(path: Path, size: int, chunk: int, label: object) -> Iterator[bytes]:
    """The ``size`` first bytes of the file at ``path``, in pieces of up to ``chunk``; a
    file that shrank meanwhile is an error naming ``label``."""
    with open(path, "rb", buffering=0) as f:
        left = size
        while left:
            data = f.read(min(chunk, left))
            if not data:
                raise InvalidInput(f"{label} shrank while it was being read")
            left -= len(data)
            yield data


def iter_archive(image_path: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    """The image folder as a tar with flat members, in pieces of about ``chunk`` bytes."""
    written = 0
    for name in image_files(image_path):
        header, size = _header(image_path / name, name)
        yield header
        written += len(header)
        for data in read_pieces(image_path / name, size, chunk, f"{name} of {image_path}"):
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
    widen_pipe(fd)
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
