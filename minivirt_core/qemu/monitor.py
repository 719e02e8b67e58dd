"""Short QMP conversations with a VM's QEMU, through ``qemu.qmp``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ..errors import ExternalError
from .sockets import short_path

# qemu.qmp logs every event at INFO/WARNING on its own loggers; keep them quiet.
logging.getLogger("qemu.qmp").setLevel(logging.ERROR)


async def execute(qmp_socket: Path, command: str, arguments: dict[str, Any] | None = None,
                  timeout: float = 5.0) -> Any:
    """Connect, run one QMP command, disconnect; the result or :class:`ExternalError`."""
    from qemu.qmp import QMPClient
    from qemu.qmp.error import QMPError

    client = QMPClient("miv")
    try:
        async with short_path(qmp_socket) as path:
            await asyncio.wait_for(client.connect(path), timeout)
        return await asyncio.wait_for(client.execute(command, arguments), timeout)
    except (TimeoutError, QMPError, OSError) as e:
        raise ExternalError(f"QMP {command} failed: {e or type(e).__name__}") from e
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2)
        except Exception:
            pass


async def try_execute(qmp_socket: Path, command: str, timeout: float = 3.0) -> bool:
    """Like :func:`execute` but returns False instead of raising (QEMU may be exiting)."""
    try:
        await execute(qmp_socket, command, timeout=timeout)
        return True
    except ExternalError:
        return False
