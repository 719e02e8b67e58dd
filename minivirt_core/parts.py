"""The ``.part`` files of the cache: what a transfer writes before its result is complete.

One transfer at a time writes a given ``.part`` file and holds an ``flock`` on it while
it lives (the kernel drops it when the process dies): parallel transfers of the same
thing wait for each other and share the result, an interrupted one leaves its ``.part``
for the next to resume from, and ``miv prune`` tells an abandoned ``.part`` (unlocked)
from one in progress.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from pathlib import Path

from .fsutil import remove_abandoned

PART_SUFFIX = ".part"
LOCK_POLL = 0.2  # seconds between looks at a .part another transfer holds


@asynccontextmanager
async def locked_part(part: Path, finished: Callable[[], bool]) -> AsyncIterator[Path | None]:
    """Hold the lock (an ``flock``, dropped by the kernel if the process dies) on the
    ``.part`` file of one transfer, waiting while another transfer holds it. Yields the
    path, or None (and no ``.part`` is left) when ``finished()`` says the result is there
    already, e.g. made by the transfer we waited for."""
    import fcntl

    while True:
        if finished():
            yield None
            return
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            await asyncio.sleep(LOCK_POLL)
            continue
        if not _same_file(part, fd):  # the holder renamed or removed it while we waited: look again
            os.close(fd)
            continue
        try:
            if finished():
                part.unlink(missing_ok=True)
                yield None
            else:
                yield part
        finally:
            os.close(fd)
        return


def _same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st, ours = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino)


def remove_abandoned_parts(cache_dir: Path, dry_run: bool = False,
                           only: Collection[Path] | None = None) -> list[tuple[Path, int]]:
    """The partial downloads of the cache no live transfer holds (of those in ``only``,
    when given), with their sizes; removed unless ``dry_run`` (for ``miv prune``)."""
    found: list[tuple[Path, int]] = []
    try:
        entries = list(os.scandir(cache_dir))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.endswith(PART_SUFFIX) and entry.is_file(follow_symlinks=False):
            path = Path(entry.path)
            if only is not None and path not in only:
                continue
            size = remove_abandoned(path, dry_run)
            if size is not None:
                found.append((path, size))
    return sorted(found)
