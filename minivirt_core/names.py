"""Validation of the names people choose: tags, VM names, remote names.

Names are checked when something new is named; names already in a database (written
by an older minivirt) are listed and used as they are, never refused on sight.
"""

from __future__ import annotations

import re

from .errors import InvalidName

IMAGE_ID_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME_BYTES = 200
# A tag made only of hex digits could be read as an image id or a short form of one
# (image references accept any unique prefix of 4+ hex digits): such tags are refused.
HEX_REF_RE = re.compile(r"[0-9a-fA-F]{4,64}")
# What every consumer of a VM name accepts: ssh-config Host lines, QEMU's -name, file
# names, the dashboard. ASCII only (not \w: that matches any script's letters and digits).
VM_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_VM_NAME = 64


def is_image_id(text: str) -> bool:
    """True for a full image id: 64 lowercase hex digits."""
    return bool(IMAGE_ID_RE.match(text))


def _check(kind: str, name: str, extra_forbidden: str = "") -> str:
    what = f"invalid {kind} {name!r}"
    if not name:
        raise InvalidName(f"invalid {kind}: the name is empty")
    if "/" in name:
        raise InvalidName(f"{what}: it may not contain '/'")
    if name.startswith("."):
        raise InvalidName(f"{what}: it may not start with '.'")
    if name.startswith("-"):
        raise InvalidName(f"{what}: it may not start with '-' (it would read as an option)")
    if is_image_id(name):
        raise InvalidName(f"{what}: 64 hex digits are reserved for image ids")
    if not name.isprintable() or any(c.isspace() for c in name):
        raise InvalidName(f"{what}: use printable characters without spaces")
    for c in extra_forbidden:
        if c in name:
            raise InvalidName(f"{what}: it may not contain {c!r}")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidName(f"{what}: it is longer than {MAX_NAME_BYTES} bytes")
    return name


def validate_tag(name: str) -> str:
    """Return ``name`` if it can be a tag, else raise :class:`InvalidName`.

    Tags share the images folder with ids, so a tag may not be empty, contain ``/``,
    start with ``.`` or ``-``, or be all hex digits (4 to 64 of them: it would shadow
    an image id or the short form of one).
    """
    _check("tag", name)
    if HEX_REF_RE.fullmatch(name):
        raise InvalidName(
            f"invalid tag {name!r}: a tag of 4 to 64 hex digits could be taken for an image id",
            hint=f"Add a letter beyond a-f or another character, e.g. v{name} or {name}-1.",
        )
    return name


def validate_vm_name(name: str) -> str:
    """Return ``name`` if it can name a new VM, else raise :class:`InvalidName`.

    ASCII letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit, at
    most 64 characters: what ssh-config, QEMU, file names and the dashboard all accept.
    """
    _check("VM name", name, extra_forbidden=":")
    if len(name) > MAX_VM_NAME:
        raise InvalidName(f"invalid VM name {name!r}: it is longer than {MAX_VM_NAME} characters")
    if not VM_NAME_RE.fullmatch(name):
        bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c in "_.-"))), name[0])
        raise InvalidName(
            f"invalid VM name {name!r}: it may not contain {bad!r}",
            hint="Use ASCII letters, digits, '_', '.' and '-', starting with a letter or digit.",
        )
    return name


def validate_remote_name(name: str) -> str:
    """Return ``name`` if it can name a remote."""
    return _check("remote name", name, extra_forbidden=":")
