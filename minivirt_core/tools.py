"""Running the helper programs minivirt relies on (qemu-img), with errors a person can act on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .errors import ExternalError


async def run_tool(args: list[str], cwd: Path | None = None) -> str:
    """Run a helper program (qemu-img); its message becomes an :class:`ExternalError`."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as e:
        raise ExternalError(f"{args[0]} is not installed", hint="Run `miv doctor`.") from e
    out, err = await proc.communicate()
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise ExternalError(f"{args[0]} failed: {message}")
    return out.decode(errors="replace")
