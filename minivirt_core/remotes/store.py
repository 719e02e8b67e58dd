"""The configured remotes (``remotes.json``) and the operations on them."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from ..database import Database, read_json
from ..download import shown_url
from ..errors import InvalidInput, NotFound
from ..fsutil import atomic_write_json, disk_full_is_an_error
from ..hostinfo import interpolate_arch
from ..images import Image, ImageStore
from ..names import validate_remote_name, validate_tag

if TYPE_CHECKING:
    from ..archive import ProgressCallback


@dataclass(frozen=True)
class Remote:
    """A named repository URL (validated; else ``url`` is shown redacted and ``problem``
    says what is wrong with the one in ``remotes.json``)."""

    name: str
    url: str
    problem: str | None = None

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


CREDENTIALS_HINT = ("Credentials are never stored in remotes.json: pulls are anonymous, and push takes "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL) from the environment.")


def validate_url(url: str) -> str:
    """Accept ``http(s)://host/.../bucket`` and ``file:///path``; else a clear error (that
    never shows credentials)."""
    shown = shown_url(url)
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidInput(f"invalid remote URL {shown!r}: it contains a space or a control character",
                           hint="Write a space in a URL as %20.")
    parsed = urlparse(url)
    if "@" in parsed.netloc:
        raise InvalidInput(f"invalid remote URL {shown!r}: it holds credentials", hint=CREDENTIALS_HINT)
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise InvalidInput(f"invalid remote URL {shown!r}: a remote URL has no query or fragment ('?', '#')")
    if parsed.scheme in ("http", "https"):
        try:
            parsed.port  # noqa: B018 - raises on a bad port
        except ValueError as e:
            raise InvalidInput(f"invalid remote URL {shown!r}: {e}") from e
        if not parsed.hostname or not parsed.path.strip("/"):
            raise InvalidInput(
                f"invalid remote URL {shown!r}: it must end in the bucket name",
                hint="e.g. https://s3.example.com/my-bucket",
            )
        return url.rstrip("/")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise InvalidInput(f"invalid remote URL {shown!r}: write file:///absolute/path",
                               hint="file://NAME/... would name a host; a remote folder is an absolute path.")
        return url.rstrip("/") if parsed.path != "/" else url
    raise InvalidInput(f"invalid remote URL {shown!r}: use http://, https:// or file://")


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
        return [_parse(n, u) for n, u in sorted(raw.items()) if isinstance(u, str)]

    def get(self, name: str) -> Remote:
        """The remote ``name``, whose URL is valid (else a clear error)."""
        for remote in self.list():
            if remote.name == name:
                if remote.problem:
                    raise InvalidInput(f"remote {name}: {remote.problem}",
                                       hint=f"Remove it (`miv remote remove {name}`) and add it again with a valid "
                                            "URL, without credentials.")
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
            self._write(raw)
        return Remote(name, url)

    def remove(self, name: str) -> None:
        with self.db.lock():
            raw = read_json(self.db.remotes_file)
            if not isinstance(raw, dict) or name not in raw:
                raise NotFound(f"no remote named {name!r}")
            del raw[name]
            self._write(raw)

    def _write(self, raw: dict[str, str]) -> None:
        with disk_full_is_an_error(self.db.remotes_file):
            atomic_write_json(self.db.remotes_file, raw)

    async def pull(self, remote: str, remote_tag: str, tag: str | None = None,
                   progress: ProgressCallback | None = None) -> PullResult:
        """Fetch ``remote_tag`` (``{arch}`` filled in) from ``remote`` and tag it ``tag``.

        ``progress`` is called from the download thread (see :data:`ProgressCallback`)."""
        from .pull import pull

        remote_tag = _remote_tag(remote_tag)
        local = validate_tag(interpolate_arch(tag) if tag else remote_tag)
        return await pull(self.db, self.images, self.get(remote), remote_tag, local, progress)

    async def push(self, remote: str, image_ref: str, remote_tag: str,
                   progress: ProgressCallback | None = None) -> PushResult:
        """Upload image ``image_ref`` to ``remote`` as ``remote_tag`` (``{arch}`` filled in).

        ``progress`` is called from the compression thread (see :data:`ProgressCallback`)."""
        from .push import push

        remote_tag = _remote_tag(remote_tag)
        image = self.images.resolve(image_ref)
        return await push(self.get(remote), image, remote_tag, self.db.cache_dir, progress)

    async def tags(self, remote: str) -> builtins.list[str]:
        """The tags on ``remote``, when the store allows listing."""
        from .listing import list_tags

        return await list_tags(self.get(remote))


def _parse(name: str, url: str) -> Remote:
    """A remote as ``remotes.json`` has it: validated, or redacted with its problem."""
    try:
        return Remote(name, validate_url(url))
    except InvalidInput as e:
        return Remote(name, shown_url(url), problem=e.message)


def _remote_tag(tag: str) -> str:
    """A remote tag (``{arch}`` filled in), held to the rules of a local tag: it names a
    file of the remote, so ``../`` and friends must never reach a path or a URL."""
    return validate_tag(interpolate_arch(tag))
