"""Running the helper programs minivirt relies on (qemu-img), with errors a person can act on,
and stopping a host command's whole process group."""

from __future__ import annotations

import asyncio
import os
import signal
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


async def stop_process_group(pgid: int, grace: float) -> None:
    """Stop a host command's process group (started with ``start_new_session``): SIGTERM to
    all of it (mmdebstrap unmounts what it mounted, scripts' traps clean up), SIGKILL to what
    is left after ``grace`` seconds; returns when none of it is left (or 5 s after SIGKILL)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
