"""The image id: a SHA256 over the SHA256 of every file of the image folder.

For every file, in sorted order of relative path, the line
``<relative path>:<sha256 hex>\\n``; the id is the SHA256 hex of those lines (UTF-8).
This is the original minivirt's algorithm; ids of existing databases stay valid.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import InvalidInput

CHUNK = 1 << 20


def combine(file_digests: Mapping[str, str]) -> str:
    """The image id of a folder whose files have the given ``{relative path: sha256 hex}``."""
    lines = "".join(f"{name}:{file_digests[name]}\n" for name in sorted(file_digests))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA256 hex of one regular file, read in large chunks. A symlink, FIFO or device is an
    :class:`~minivirt_core.errors.InvalidInput` (never followed or read: it could be endless)."""
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        what = "is a symbolic link" if e.errno == errno.ELOOP else f"cannot be read: {e.strerror}"
        raise InvalidInput(f"{path.name} {what}") from e
    with open(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(f"{path.name} is not a regular file")
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def folder_digests(folder: Path) -> dict[str, str]:
    """``{relative path: sha256 hex}`` for every file below ``folder``."""
    digests = {}
    for dirpath, _dirnames, filenames in os.walk(folder):
        for filename in filenames:
            full = Path(dirpath) / filename
            digests[str(full.relative_to(folder))] = file_sha256(full)
    return digests


def compute_id(folder: Path) -> str:
    """Recompute the image id of ``folder`` by reading all of its files."""
    return combine(folder_digests(folder))


class BackgroundSha256:
    """SHA256 of pieces handed over in order, computed on a helper thread (hashlib drops
    the GIL), so the caller goes on (sending the same pieces, say) meanwhile. At most
    :data:`BEHIND` pieces wait to be hashed; :meth:`hexdigest` waits for the rest."""

    BEHIND = 4

    def __init__(self) -> None:
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        self._hash = hashlib.sha256()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="miv-sha256")
        self._pending: deque[Future[None]] = deque()

    def update(self, data: bytes | memoryview) -> None:
        """Hash ``data`` next (it must not change until hashed)."""
        if len(self._pending) >= self.BEHIND:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._hash.update, data))

    def hexdigest(self) -> str:
        """The digest of everything handed over."""
        while self._pending:
            self._pending.popleft().result()
        return self._hash.hexdigest()

    def close(self) -> None:
        """Stop the helper thread (also after an error)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BackgroundSha256:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
