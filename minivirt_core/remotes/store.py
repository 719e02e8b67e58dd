"""The configured remotes (``remotes.json``) and the operations on them."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import TYPE_CHECKING

from ..database import Database, read_json
from ..download import shown_url
from ..errors import Conflict, InvalidInput, NotFound
from ..fsutil import atomic_write_json, disk_full_is_an_error
from ..hostinfo import interpolate_arch
from ..images import ImageStore
from ..names import validate_remote_name, validate_tag
from .remote import PullResult, PushResult, Remote, parse, validate_url
from .transport import Transport

if TYPE_CHECKING:
    from ..archive import ProgressCallback


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
        return [parse(n, u) for n, u in sorted(raw.items()) if isinstance(u, str)]

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

    def add(self, name: str, url: str, insecure: bool = False, replace: bool = False) -> Remote:
        """Add a remote (``insecure``: an ``oci://`` registry over plain HTTP). One of that
        name is replaced only with ``replace`` (else :class:`Conflict`, unless it has this
        URL already); the result's ``previous`` is the URL it had."""
        validate_remote_name(name)
        url = validate_url(url, insecure)
        with self.db.lock():
            raw = read_json(self.db.remotes_file)
            raw = raw if isinstance(raw, dict) else {}
            previous = raw.get(name)
            previous = previous if isinstance(previous, str) or previous is None else repr(previous)
            if previous is not None and previous != url and not replace:
                raise Conflict(
                    f"a remote named {name!r} exists already ({shown_url(previous)})",
                    hint=f"Replace it with `miv remote add --force {name} URL`, or choose another name.",
                )
            raw[name] = url
            self._write(raw)
        return Remote(name, url, previous=previous if previous is None else shown_url(previous))

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
                   progress: ProgressCallback | None = None, arch: str | None = None) -> PullResult:
        """Fetch ``remote_tag`` from ``remote`` and tag it ``tag``; ``{arch}`` in both is ``arch``
        (the architecture wanted), else the host's. Where the tag offers several architectures
        (an OCI index), ``arch`` (default: the host's) is taken.

        ``progress`` is called from the download thread (see :data:`ProgressCallback`)."""
        from ..imageconfig import ARCHES
        from .pull import pull

        transport = self.transport(remote)
        if arch is not None:
            if arch not in ARCHES:
                raise InvalidInput(f"unknown architecture {arch[:20]!r}", hint=f"Use one of {', '.join(ARCHES)}.")
            transport.arch = arch
        remote_tag = transport.check_tag(interpolate_arch(remote_tag, arch))
        local = validate_tag(interpolate_arch(tag, arch) if tag else _local_name(remote_tag))
        return await pull(self.db, self.images, transport, remote_tag, local, progress)

    async def push(self, remote: str, image_ref: str, remote_tag: str,
                   progress: ProgressCallback | None = None) -> PushResult:
        """Upload image ``image_ref`` to ``remote`` as ``remote_tag`` (``{arch}``: the image's
        architecture).

        ``progress`` is called from the compression thread (see :data:`ProgressCallback`)."""
        transport = self.transport(remote)
        image = self.images.resolve(image_ref)
        remote_tag = transport.check_tag(interpolate_arch(remote_tag, image.arch))
        return await transport.write(image, remote_tag, progress)

    async def tags(self, remote: str) -> builtins.list[str]:
        """The tags on ``remote``, when the store allows listing."""
        return await self.transport(remote).tags()

    async def login(self, host: str, username: str, password: str, insecure: bool = False) -> None:
        """Check ``username``/``password`` against registry ``host`` (``name[:port]``), then
        store them (0600, in the database) for pulls and pushes."""
        from ..oci.auth import Credentials
        from .oci import check_login, credential_store

        credentials = Credentials(username, password)
        await check_login(host, credentials, insecure)
        self.db.ensure()
        credential_store(self.db.cache_dir).login(host, credentials)

    def logout(self, host: str) -> bool:
        """Forget the stored credentials of registry ``host``; False when there were none."""
        from .oci import credential_store

        return credential_store(self.db.cache_dir).logout(host)

    def transport(self, remote: str) -> Transport:
        """The transport that speaks to ``remote`` (see :mod:`.transport`)."""
        return transport_for(self.get(remote), self.db.cache_dir)


def _local_name(remote_tag: str) -> str:
    """The local tag a pull gives by default: the remote tag, with an OCI ``NAME:TAG``'s
    ``:`` kept (a local tag may hold it) and the ``/`` of a nested repository made ``-``."""
    return validate_tag(remote_tag.replace("/", "-"))


def transport_for(remote: Remote, cache_dir: Path) -> Transport:
    """The transport of ``remote``'s kind."""
    if remote.kind == "file":
        from .file import FileTransport

        return FileTransport(remote, cache_dir)
    if remote.kind == "oci":
        from .oci import OciTransport

        return OciTransport(remote, cache_dir)
    from .s3 import S3Transport

    return S3Transport(remote, cache_dir)
