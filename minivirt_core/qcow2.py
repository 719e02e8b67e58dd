"""Just enough of the qcow2 header to know whether a disk points at other files.

An image from elsewhere (``load``, ``pull``) must never make QEMU open a host file, so
a qcow2 that names a backing file or an external data file is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"QFI\xfb"
HEADER_BYTES = 104  # enough for every field we read (v2 and v3)
INCOMPAT_EXTERNAL_DATA = 1 << 2


@dataclass(frozen=True)
class Qcow2Header:
    """The fields of a qcow2 header that matter for safety and display."""

    version: int
    backing_file_offset: int
    backing_file_size: int
    size: int
    incompatible_features: int

    @property
    def has_backing_file(self) -> bool:
        return self.backing_file_offset != 0

    @property
    def has_external_data_file(self) -> bool:
        return bool(self.incompatible_features & INCOMPAT_EXTERNAL_DATA)


def parse_header(head: bytes) -> Qcow2Header | None:
    """Parse the first bytes of a file; ``None`` when it is not qcow2."""
    if len(head) < 72 or head[:4] != MAGIC:
        return None
    version, backing_off, backing_size = struct.unpack(">IQI", head[4:20])
    if version not in (2, 3):
        return None
    (size,) = struct.unpack(">Q", head[24:32])
    incompat = 0
    if version >= 3 and len(head) >= 80:
        (incompat,) = struct.unpack(">Q", head[72:80])
    return Qcow2Header(version, backing_off, backing_size, size, incompat)


def unsafe_reason(head: bytes) -> str | None:
    """Why a file starting with ``head`` is unsafe to accept, or ``None`` if it is fine."""
    header = parse_header(head)
    if header is None:
        return None
    if header.has_backing_file:
        return "it is a qcow2 disk that names a backing file"
    if header.has_external_data_file:
        return "it is a qcow2 disk that uses an external data file"
    return None


def read_header(path: Path) -> Qcow2Header | None:
    """The qcow2 header of a file on disk, or ``None`` when it is not qcow2."""
    with open(path, "rb") as f:
        return parse_header(f.read(HEADER_BYTES))



def backing_file_name(path: Path) -> str | None:
    """The backing file a qcow2 on disk names (as written in it), or ``None`` for none."""
    with open(path, "rb") as f:
        header = parse_header(f.read(HEADER_BYTES))
        if header is None or not header.has_backing_file:
            return None
        f.seek(header.backing_file_offset)
        return f.read(min(header.backing_file_size, 1023)).decode("utf-8", "replace")
