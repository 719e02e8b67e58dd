"""Unix socket paths that work however deep the database is.

``sun_path`` holds about 108 bytes. QEMU runs with its working directory in the VM
folder and relative socket names; we connect through ``/proc/self/fd/N/<name>`` (an
open handle on the folder) when the full path is too long.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ..errors import InvalidInput

MAX_PATH = 100


@asynccontextmanager
async def short_path(path: Path) -> AsyncIterator[str]:
    """A path for ``path`` short enough for ``connect()``, valid inside the block."""
    full = str(path)
    if len(full.encode()) <= MAX_PATH:
        yield full
        return
    if not sys.platform.startswith("linux"):
        raise InvalidInput(
            f"the socket path {full} is too long for this system",
            hint="Use a shorter MINIVIRT_DB_PATH.",
        )
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


async def open_unix(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_unix_connection`` for a path of any length."""
    async with short_path(path) as p:
        return await asyncio.open_unix_connection(p, limit=1 << 20)
