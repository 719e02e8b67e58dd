"""What an image may hold: its ``config.json`` as a validated type, and the files it declares.

An image (a folder of the database, or the archive ``save`` writes and ``load``/``pull``
read) holds exactly:

- ``config.json``: a JSON object of at most 64 KiB. ``"disk": true`` declares a disk;
  ``"iso": "<file>"`` declares a CD-ROM. Other keys are allowed and ignored (a newer
  minivirt may add some; the file is kept byte for byte, as it is part of the id).
- ``disk.qcow2`` when the config declares a disk: a qcow2 (by its magic) that names no
  backing file and no external data file.
- the file ``iso`` names: a plain member name (ASCII letters, digits, ``._+-``), an ISO 9660
  image (``CD001`` at offset 0x8001) that is no disk format able to reference other files.

This is what the original minivirt made (``{"disk": true}`` plus ``disk.qcow2``, optionally
an installer ISO). Nothing in an image can name a host path: QEMU gets the disk as
``format=qcow2`` and the ISO as ``format=raw``, both inside the image folder.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import layout, qcow2
from .errors import InvalidInput

CONFIG_MAX_BYTES = 64 * 1024
ARCHES = ("x86_64", "aarch64")
"""Guest architectures an image may declare, named as QEMU and remote tags name them."""
ISO_SIGNATURE = b"CD001"
ISO_SIGNATURE_OFFSET = 0x8001
ISO_HEAD_BYTES = ISO_SIGNATURE_OFFSET + len(ISO_SIGNATURE)
"""Bytes of a file's start that :func:`iso_refusal` needs."""

MAX_MEMBER_NAME = 200
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*\Z")
_RESERVED = frozenset({layout.IMAGE_CONFIG, layout.IMAGE_DISK})

# Disk formats whose headers can name other files (backing, parent or extent files), by magic.
_REFERENCING_FORMATS = (
    (qcow2.MAGIC, "a qcow2 disk"),
    (b"QED\x00", "a QED disk"),
    (b"KDMV", "a VMDK disk"),
    (b"# Disk DescriptorFile", "a VMDK descriptor"),
    (b"vhdxfile", "a VHDX disk"),
    (b"conectix", "a VHD disk"),
    (b"<<< ", "a VDI disk"),
)


@dataclass(frozen=True)
class ImageConfig:
    """An image's ``config.json``, validated: whether it has a disk, and its ISO's file name."""

    disk: bool = False
    iso: str | None = None
    arch: str | None = None  # None: not recorded (an image made before architectures were)
    ignored_keys: tuple[str, ...] = ()  # keys of a newer minivirt, kept in the file, not used

    @property
    def members(self) -> frozenset[str]:
        """The file names an image with this config holds: no more, no fewer."""
        names = {layout.IMAGE_CONFIG}
        if self.disk:
            names.add(layout.IMAGE_DISK)
        if self.iso:
            names.add(self.iso)
        return frozenset(names)

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        """Validate the bytes of a ``config.json``; raise :class:`InvalidInput` saying what is wrong."""
        if len(data) > CONFIG_MAX_BYTES:
            raise InvalidInput(f"config.json is larger than {CONFIG_MAX_BYTES // 1024} KiB")
        try:
            value = json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
        except RecursionError as e:
            raise InvalidInput("config.json is nested too deeply") from e
        except ValueError as e:  # also UnicodeDecodeError
            raise InvalidInput(f"config.json is not valid JSON: {e}") from e
        if not isinstance(value, dict):
            raise InvalidInput("config.json is not a JSON object")
        disk = value.get("disk", False)
        if not isinstance(disk, bool):
            raise InvalidInput(f"config.json: \"disk\" must be true or false, not {_show(disk)}")
        iso = value.get("iso")
        if iso is not None:
            if not isinstance(iso, str):
                raise InvalidInput(f"config.json: \"iso\" must be a file name, not {_show(iso)}")
            if problem := iso_name_problem(iso):
                raise InvalidInput(f"config.json: \"iso\" {problem}")
        arch = value.get("arch")
        if arch is not None and arch not in ARCHES:
            raise InvalidInput(f"config.json: \"arch\" must be one of {', '.join(ARCHES)}, not {_show(arch)}")
        ignored = tuple(sorted(k for k in value if k not in ("disk", "iso", "arch")))
        return cls(disk=disk, iso=iso or None, arch=arch, ignored_keys=ignored)

    def to_json(self) -> bytes:
        """The ``config.json`` bytes minivirt writes for this config (keys sorted; no ignored keys)."""
        value: dict[str, Any] = {"disk": self.disk}
        if self.iso:
            value["iso"] = self.iso
        if self.arch:
            value["arch"] = self.arch
        return json.dumps(value, sort_keys=True).encode()

    @classmethod
    def read(cls, image_path: Path) -> ImageConfig:
        """The validated config of an image folder (``config.json`` a regular file, no symlink)."""
        path = image_path / layout.IMAGE_CONFIG
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError as e:
            raise InvalidInput("config.json is missing") from e
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise InvalidInput("config.json is a symbolic link, not a regular file") from e
            raise InvalidInput(f"config.json cannot be read: {e.strerror}") from e
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidInput("config.json is not a regular file")
            return cls.parse(f.read(CONFIG_MAX_BYTES + 1))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"the key {twice[0]!r} appears twice")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def member_name_problem(name: str) -> str | None:
    """Why ``name`` can never be a file of an image (too long, odd characters), or None."""
    if len(name.encode("utf-8", "surrogateescape")) > MAX_MEMBER_NAME:
        return f"is longer than {MAX_MEMBER_NAME} bytes"
    if not name.isprintable() or "/" in name or name in (".", ".."):
        return "is not a plain file name"
    return None


def plain_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain file name (ASCII letters, digits and ``._+-``, not starting
    with ``.`` or ``-``): the names an image's ISO and a VM's attached files may have, or None.
    ASCII only, so no lookalike letters or NFC/NFD twins, and no ``:`` that QEMU would read
    as a protocol."""
    if problem := member_name_problem(name):
        return problem
    if not _PLAIN_NAME.match(name):
        return f"must be a plain file name (ASCII letters, digits and ._+-), not {_show(name)}"
    return None


def iso_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the ISO member of an image, or None: a plain file name
    (:func:`plain_name_problem`) other than ``config.json`` and ``disk.qcow2``."""
    if name in _RESERVED:
        return f"may not name {name}"
    return plain_name_problem(name)


def iso_refusal(head: bytes) -> str | None:
    """Why a file starting with ``head`` (:data:`ISO_HEAD_BYTES` of it) is not an acceptable ISO."""
    for magic, what in _REFERENCING_FORMATS:
        if head.startswith(magic):
            return f"it is {what}, not an ISO 9660 image"
    if head[ISO_SIGNATURE_OFFSET:ISO_HEAD_BYTES] != ISO_SIGNATURE:
        return "it is not an ISO 9660 image (no CD001 signature at offset 0x8001)"
    return None


def disk_refusal(head: bytes) -> str | None:
    """Why a file starting with ``head`` cannot be an image's ``disk.qcow2``, or None."""
    if qcow2.parse_header(head) is None:
        return "it is not a qcow2 disk"
    return qcow2.unsafe_reason(head)


def content_refusal(name: str, head: bytes) -> str | None:
    """Why the image member ``name``, starting with ``head``, is refused (its format), or None."""
    if name == layout.IMAGE_CONFIG:
        return None
    if name == layout.IMAGE_DISK:
        return disk_refusal(head)
    return iso_refusal(head)


def head_bytes(name: str) -> int:
    """How much of member ``name``'s start :func:`content_refusal` needs."""
    if name == layout.IMAGE_CONFIG:
        return 0
    return qcow2.HEADER_BYTES if name == layout.IMAGE_DISK else ISO_HEAD_BYTES


def inspect_image(image_path: Path) -> tuple[ImageConfig | None, list[str]]:
    """An image folder's config (None if unusable) and everything wrong with its files, without
    hashing them (fast): its config, missing or extra files, files that are not regular, a disk
    or an ISO of the wrong format."""
    try:
        config = ImageConfig.read(image_path)
    except InvalidInput as e:
        return None, [e.message]
    problems = []
    expected = config.members
    try:
        entries = {e.name: e for e in os.scandir(image_path)}
    except OSError as e:
        return config, [f"the folder cannot be read: {e.strerror}"]
    for name in sorted(entries.keys() - expected):
        problems.append(f"{name} is not part of the image (its config.json declares {', '.join(sorted(expected))})")
    for name in sorted(expected - entries.keys()):
        problems.append(f"{name} is missing")
    for name in sorted(expected & entries.keys() - {layout.IMAGE_CONFIG}):
        if not entries[name].is_file(follow_symlinks=False):
            problems.append(f"{name} is not a regular file")
            continue
        try:
            with open(entries[name].path, "rb") as f:
                head = f.read(head_bytes(name))
        except OSError as e:
            problems.append(f"{name} cannot be read: {e.strerror}")
            continue
        if reason := content_refusal(name, head):
            problems.append(f"{name} is refused: {reason}")
    return config, problems


def check_image(image_path: Path, label: str) -> ImageConfig:
    """The config of an image folder that :func:`inspect_image` finds sound; else a clear error."""
    config, problems = inspect_image(image_path)
    if config is None or problems:
        raise InvalidInput(f"image {label} is unsafe or damaged: {'; '.join(problems)}",
                           hint="`miv fsck` lists the damage; `miv untag` and `miv prune` remove the image.")
    return config
