"""Listing the tags of a remote (S3 ListObjectsV2 anonymously, or the folder)."""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

from ..download import HttpStatusError, get_small
from ..errors import ExternalError, InvalidName
from ..names import validate_tag
from .store import Remote

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _valid(name: str) -> bool:
    try:
        validate_tag(name)
    except InvalidName:
        return False
    return True


async def list_tags(remote: Remote) -> list[str]:
    """Sorted tag names (only names that are valid tags: the rest could not be pulled, and
    are not printed); :class:`ExternalError` when the store refuses to list."""
    if remote.kind == "file":
        folder = remote.folder / "tags"
        try:
            names = await asyncio.to_thread(os.listdir, folder)
        except FileNotFoundError:
            return []
        return sorted(filter(_valid, names))
    tags: list[str] = []
    token: str | None = None
    while True:
        params = {"list-type": "2", "prefix": "tags/"}
        if token:
            params["continuation-token"] = token
        try:
            body = await asyncio.to_thread(get_small, f"{remote.url}?{urlencode(params)}", 16 << 20)
        except HttpStatusError as e:
            raise ExternalError(f"remote {remote.name} does not allow listing its tags (HTTP {e.status})",
                                hint="Ask its owner for the tag names; `miv pull` works without listing.") from e
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            raise ExternalError(f"remote {remote.name} answered the listing with something not S3 XML") from e
        for key in root.iter(f"{S3_NS}Key"):
            if key.text and key.text.startswith("tags/") and len(key.text) > 5:
                tags.append(key.text[5:])
        truncated = root.findtext(f"{S3_NS}IsTruncated") == "true"
        token = root.findtext(f"{S3_NS}NextContinuationToken")
        if not truncated or not token:
            return sorted(filter(_valid, tags))
