"""Remote tags: what a tag file may hold, and which listed names are shown."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..errors import InvalidInput, InvalidName
from ..names import is_image_id, validate_tag
from .remote import Remote

TAG_LIMIT = 1024  # bytes: a tag file holds an image id (64 hex digits) and maybe a newline


def image_id_of(remote: Remote, tag: str, text: bytes) -> str:
    """The image id a tag file of ``remote`` holds, validated (never echoed when not one)."""
    image_id = text.decode("ascii", errors="replace").strip()
    if not is_image_id(image_id):
        raise InvalidInput(f"remote {remote.name}: tags/{tag} does not hold an image id",
                           hint="The remote is damaged; nothing was downloaded.")
    return image_id


def valid_tags(names: Iterable[str], check: Callable[[str], object] = validate_tag) -> list[str]:
    """The names ``check`` accepts (by default: valid tags), sorted; the rest could not be
    pulled, and are not printed."""

    def valid(name: str) -> bool:
        try:
            check(name)
        except InvalidName:
            return False
        return True

    return sorted(filter(valid, names))
