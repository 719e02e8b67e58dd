"""The one interface every kind of remote implements (``store.transport_for`` picks one).

A transport knows how its kind of remote names and moves things; what a transfer means
(locking, resuming from a ``.part``, verifying, importing into staging, tagging) lives
once, in :mod:`.pull` and :mod:`.store`. Four operations:

- :meth:`Transport.resolve`: a remote tag -> a :class:`RemoteImage` (the image id when
  the remote records it, the digest and size of the stream when it knows them);
- :meth:`Transport.download`: the image's stream from a byte offset (resume), appended
  to a ``.part`` file and handed to a sink as it arrives;
- :meth:`Transport.write`: push an image under a tag;
- :meth:`Transport.tags`: list the remote's tags (where it allows).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .remote import PushResult, Remote

if TYPE_CHECKING:
    from ..archive import ProgressCallback
    from ..images import Image


class Importer(Protocol):
    """What turns a stream into an image folder (:class:`~minivirt_core.archive.TarImporter` is one)."""

    @property
    def ended(self) -> bool: ...

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RemoteImage:
    """What a remote tag names.

    ``image_id``: the minivirt image id, when the remote records it (checked against what
    is imported; an image already here is only tagged). ``key``: names the stream (its
    ``.part`` file in the cache). ``digest`` (``sha256:<hex>``) and ``size``: when the
    remote declares them, the stream must match both, checked while it arrives."""

    image_id: str | None
    key: str
    digest: str | None = None
    size: int | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False)  # the transport's own


Sink = Callable[[bytes], None]


class Transport(ABC):
    """One remote, spoken to in its kind's protocol."""

    resumable = True  # downloads go through a ``.part`` file in the cache (False: read in place)

    def __init__(self, remote: Remote, cache_dir: Path) -> None:
        from ..hostinfo import host_arch

        self.remote = remote
        self.cache_dir = cache_dir
        self.arch = host_arch()  # the platform a pull picks where the remote offers several

    def check_tag(self, tag: str) -> str:
        """``tag`` if it is a valid tag on this kind of remote (``{arch}`` already filled in).
        Folder and S3 remotes hold it to the rules of a local tag: it names a file of the
        remote, so ``../`` and friends must never reach a path or a URL."""
        from ..names import validate_tag

        return validate_tag(tag)

    @abstractmethod
    async def resolve(self, tag: str) -> RemoteImage:
        """What ``tag`` (a valid remote tag) names; :class:`~minivirt_core.errors.NotFound` if nothing."""

    @abstractmethod
    def download(self, image: RemoteImage, part: Path | None, sink: Sink, progress: ProgressCallback | None,
                 cancel: threading.Event, done: Callable[[], bool]) -> None:
        """Blocking: stream ``image`` from ``part``'s size on (appending to ``part``), each
        piece to ``sink``; ``done()`` says the importer has all it needs. Raises
        :class:`~minivirt_core.download.Restart` when the remote cannot resume."""

    @abstractmethod
    def importer(self, image: RemoteImage, dest: Path) -> Importer:
        """The importer that turns ``image``'s stream into an image folder at ``dest``."""

    @abstractmethod
    async def write(self, image: Image, tag: str, progress: ProgressCallback | None) -> PushResult:
        """Push ``image`` as ``tag`` (a valid remote tag); blobs already there are not sent again."""

    @abstractmethod
    async def tags(self) -> list[str]:
        """The remote's tags (valid names only), sorted."""

