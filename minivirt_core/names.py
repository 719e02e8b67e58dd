"""Validation of the names people choose: tags, VM names, remote names."""

from __future__ import annotations

import re

from .errors import InvalidName

IMAGE_ID_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME_BYTES = 200


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

    Tags share the images folder with ids, so a tag may not be empty, contain
    ``/``, start with ``.`` or be 64 hex digits.
    """
    return _check("tag", name)


def validate_vm_name(name: str) -> str:
    """Return ``name`` if it can name a VM (the tag rules, and no ``:``, used by ``cp``)."""
    return _check("VM name", name, extra_forbidden=":")


def validate_remote_name(name: str) -> str:
    """Return ``name`` if it can name a remote."""
    return _check("remote name", name, extra_forbidden=":")
