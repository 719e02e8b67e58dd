"""KubeVirt containerDisks: the layer minivirt writes, and what it accepts on pull.

A containerDisk is an OCI image with one layer holding ``disk/<file>``: a qcow2 or a
raw disk (raw is converted to qcow2 on pull). minivirt writes ``disk/disk.qcow2`` owned
by 107:107 (the qemu user of KubeVirt's launcher). An ORAS-style artifact whose layer
is the qcow2 file itself is accepted too. The same rules as ``load`` apply (one regular
file, no ``..``, no links or devices, a qcow2 naming no backing or data file): the tar
parsing and the disk checks are :mod:`~minivirt_core.archive`'s.
"""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

from .. import heap, imageid, layout, qcow2
from ..archive import BLOCK, TarImporter, _Member, _shown, check_member_name, not_a_regular_file, read_pieces
from ..errors import ExternalError, InvalidInput
from ..imageconfig import ImageConfig
from ..remotes.layout import OCI_DISK, OCI_DISK_DIR, OCI_DISK_OWNER

RAW_DISK = "disk.raw"  # in staging, before conversion


def layer_header(name: str, size: int, kind: bytes) -> bytes:
    """A tar header of the layer: owned by 107:107, no date (the layer's digest depends
    only on the disk)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uid = info.gid = OCI_DISK_OWNER
    info.mtime = 0
    return info.tobuf(format=tarfile.GNU_FORMAT)


def layer_size(disk: Path) -> int:
    """Exact byte count of the tar :func:`layer_tar` produces."""
    size = disk.stat().st_size
    total = 2 * BLOCK + size + (-size % BLOCK) + 2 * BLOCK
    return total + (-total % tarfile.RECORDSIZE)


def layer_tar(disk: Path, piece: int) -> Iterator[bytes]:
    """The layer's tar (``disk/``, then ``disk/disk.qcow2``), in pieces of about ``piece`` bytes."""
    size = disk.stat().st_size
    head = layer_header(OCI_DISK_DIR + "/", 0, tarfile.DIRTYPE) + layer_header(OCI_DISK, size, tarfile.REGTYPE)
    written = len(head)
    yield head
    for data in read_pieces(disk, size, piece, disk):
        written += len(data)
        yield data
    end = (-size % BLOCK) + 2 * BLOCK
    end += -(written + end) % tarfile.RECORDSIZE
    yield b"\0" * end


class _DiskMember(_Member):
    """The layer's disk: a qcow2 that names no other file, or a raw disk (converted later)."""

    def check_head(self) -> None:
        self.checked = True
        if reason := qcow2.unsafe_reason(self.head):
            raise InvalidInput(f"the containerDisk's disk is refused: {reason}")


def _finish_image(dest: Path, digests: dict[str, str], config_json: bytes) -> str:
    """Convert a raw disk to qcow2, write ``config.json``; the image id."""
    disk = dest / layout.IMAGE_DISK
    head = qcow2.read_header(disk)
    if head is None:  # a raw disk
        raw = dest / RAW_DISK
        disk.rename(raw)
        proc = subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)],
                              capture_output=True, text=True)
        raw.unlink()
        if proc.returncode:
            raise ExternalError(f"qemu-img could not convert the raw disk: {proc.stderr.strip()[-300:]}")
        digests[layout.IMAGE_DISK] = imageid.file_sha256(disk)
    config = ImageConfig.parse(config_json)
    if config.members != {layout.IMAGE_CONFIG, layout.IMAGE_DISK}:
        raise InvalidInput("the registry's minivirt config declares files a containerDisk cannot hold")
    (dest / layout.IMAGE_CONFIG).write_bytes(config_json)
    digests[layout.IMAGE_CONFIG] = _sha256(config_json)
    return imageid.combine(digests)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LayerImporter(TarImporter):
    """A containerDisk layer (tar, maybe gzip'd) into an image folder: the one file under
    ``disk/`` becomes ``disk.qcow2``; ``config_json`` becomes ``config.json``."""

    def __init__(self, dest: Path, config_json: bytes) -> None:
        super().__init__(dest)
        self.config_json = config_json

    def _open_member(self, kind: bytes, name: str, size: int) -> _Member | None:
        path = name[2:] if name.startswith("./") else name
        if kind == tarfile.DIRTYPE:
            if path.rstrip("/") not in ("", ".", OCI_DISK_DIR) or size:
                raise InvalidInput(f"the containerDisk layer has the folder {_shown(name)}: only disk/ may be there")
            return None
        if kind not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise not_a_regular_file(kind, name)
        folder, _, base = path.partition("/")
        if folder != OCI_DISK_DIR or not base:
            if path.startswith("/") or ".." in path.split("/"):
                check_member_name(path)  # '..', absolute paths: named as such
            raise InvalidInput(f"the containerDisk layer has {_shown(name)}: only one file under disk/ may be there")
        check_member_name(base)
        if layout.IMAGE_DISK in self.digests or self._member is not None:
            raise InvalidInput("the containerDisk layer has more than one file under disk/")
        return _DiskMember(layout.IMAGE_DISK, self.dest / layout.IMAGE_DISK, size, self._pool)

    def _result(self) -> str:
        if layout.IMAGE_DISK not in self.digests:
            raise InvalidInput("the containerDisk layer has no file under disk/")
        return _finish_image(self.dest, self.digests, self.config_json)


class BlobImporter:
    """An ORAS-style layer: the blob is the qcow2 itself."""

    def __init__(self, dest: Path, config_json: bytes, size: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        heap.tune_for_streaming()
        self.dest = dest
        self.config_json = config_json
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miv-hash")
        self._member = _Member(layout.IMAGE_DISK, dest / layout.IMAGE_DISK, size, self._pool)

    @property
    def ended(self) -> bool:
        return self._member.remaining == 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        if len(view) > self._member.remaining:
            raise InvalidInput("the registry sends more than the layer's declared size")
        self._member.write(view)
        self._member.remaining -= len(view)

    def finish(self) -> str:
        try:
            if self._member.remaining:
                raise InvalidInput("the layer is truncated")
            digests = {layout.IMAGE_DISK: self._member.finish()}
            return _finish_image(self.dest, digests, self.config_json)
        finally:
            self.close()

    def close(self) -> None:
        self._member.abort()
        self._pool.shutdown(wait=True)


class SniffingImporter:
    """Either importer, chosen by the layer's first bytes: a qcow2 is an ORAS-style
    artifact (``oras push`` labels it ``…layer.v1.tar`` all the same), anything else is a
    containerDisk layer (tar or gzip'd tar, checked as such)."""

    def __init__(self, dest: Path, config_json: bytes, size: int) -> None:
        self.dest = dest
        self.config_json = config_json
        self.size = size
        self._head = b""
        self._inner: LayerImporter | BlobImporter | None = None

    @property
    def ended(self) -> bool:
        return self._inner is not None and self._inner.ended

    def feed(self, data: bytes) -> None:
        if self._inner is None:
            self._head += data
            if len(self._head) < len(qcow2.MAGIC) and len(self._head) < self.size:
                return
            data, self._head = self._head, b""
            if data.startswith(qcow2.MAGIC):
                self._inner = BlobImporter(self.dest, self.config_json, self.size)
            else:
                self._inner = LayerImporter(self.dest, self.config_json)
        self._inner.feed(data)

    def finish(self) -> str:
        if self._inner is None:
            raise InvalidInput("the layer is empty")
        return self._inner.finish()

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
