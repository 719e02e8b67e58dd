"""The configured remotes (``remotes.json``) and the operations on them."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from ..database import Database, read_json
from ..errors import InvalidInput, NotFound
from ..fsutil import atomic_write_json
from ..hostinfo import interpolate_arch
from ..images import Image, ImageStore
from ..names import validate_remote_name, validate_tag

if TYPE_CHECKING:
    from ..archive import ProgressCallback


@dataclass(frozen=True)
class Remote:
    """A named repository URL."""

    name: str
    url: str

    @property
    def kind(self) -> str:
        """``s3`` (an http(s) URL: anonymous pull, S3 push), or ``file``."""
        return "file" if self.url.startswith("file://") else "s3"

    @property
    def folder(self) -> Path:
        """The folder of a ``file://`` remote."""
        return Path(unquote(urlparse(self.url).path))

    @property
    def bucket(self) -> str:
        """The S3 bucket: the last path segment of the URL."""
        path = urlparse(self.url).path.rstrip("/")
        return path.rsplit("/", 1)[-1]

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "url": self.url, "kind": self.kind}


@dataclass(frozen=True)
class PullResult:
    image: Image
    downloaded: bool  # False when the image was already here
    bytes: int = 0


@dataclass(frozen=True)
class PushResult:
    image_id: str
    uploaded: bool  # False when the remote had the image already
    bytes: int = 0


def validate_url(url: str) -> str:
    """Accept ``http(s)://host/.../bucket`` and ``file:///path``; else a clear error."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc or not parsed.path.strip("/"):
            raise InvalidInput(
                f"invalid remote URL {url!r}: it must end in the bucket name",
                hint="e.g. https://s3.example.com/my-bucket",
            )
        return url.rstrip("/")
    if parsed.scheme == "file":
        if not parsed.path.startswith("/"):
            raise InvalidInput(f"invalid remote URL {url!r}: write file:///absolute/path")
        return url.rstrip("/") if parsed.path != "/" else url
    raise InvalidInput(f"invalid remote URL {url!r}: use http://, https:// or file://")


class RemoteStore:
    """The remotes of a database, and pulling from / pushing to them."""

    def __init__(self, db: Database, images: ImageStore) -> None:
        self.db = db
        self.images = images

    def list(self) -> list[Remote]:
        """Every configured remote, sorted by name."""
        raw = read_json(self.db.remotes_file)
        if not isinstance(raw, dict):
            return []
        return [Remote(n, u) for n, u in sorted(raw.items()) if isinstance(u, str)]

    def get(self, name: str) -> Remote:
        for remote in self.list():
            if remote.name == name:
                return remote
        raise NotFound(f"no remote named {name!r}", hint="`miv remote list` shows them; `miv remote add` adds one.")

    def add(self, name: str, url: str) -> Remote:
        """Add (or change) a remote."""
        validate_remote_name(name)
        url = validate_url(url)
        with self.db.lock():
            raw = read_json(self.db.remotes_file)
            raw = raw if isinstance(raw, dict) else {}
            raw[name] = url
            atomic_write_json(self.db.remotes_file, raw)
        return Remote(name, url)

    def remove(self, name: str) -> None:
        with self.db.lock():
            raw = read_json(self.db.remotes_file)
            if not isinstance(raw, dict) or name not in raw:
                raise NotFound(f"no remote named {name!r}")
            del raw[name]
            atomic_write_json(self.db.remotes_file, raw)

    async def pull(self, remote: str, remote_tag: str, tag: str | None = None,
                   progress: ProgressCallback | None = None) -> PullResult:
        """Fetch ``remote_tag`` (``{arch}`` filled in) from ``remote`` and tag it ``tag``.

        ``progress`` is called from the download thread (see :data:`ProgressCallback`)."""
        from .pull import pull

        remote_tag = interpolate_arch(remote_tag)
        local = validate_tag(interpolate_arch(tag) if tag else remote_tag)
        return await pull(self.db, self.images, self.get(remote), remote_tag, local, progress)

    async def push(self, remote: str, image_ref: str, remote_tag: str,
                   progress: ProgressCallback | None = None) -> PushResult:
        """Upload image ``image_ref`` to ``remote`` as ``remote_tag`` (``{arch}`` filled in).

        ``progress`` is called from the compression thread (see :data:`ProgressCallback`)."""
        from .push import push

        validate_tag(interpolate_arch(remote_tag))
        image = self.images.resolve(image_ref)
        return await push(self.get(remote), image, interpolate_arch(remote_tag), progress)

    async def tags(self, remote: str) -> builtins.list[str]:
        """The tags on ``remote``, when the store allows listing."""
        from .listing import list_tags

        return await list_tags(self.get(remote))
