"""The detached QEMU process of a VM: launching it, finding it, and ending it.

QEMU is started through ``sh -c '... &'`` so that it is not our child: it outlives
``miv`` and never lingers as our zombie. It is found again through its pid file, and a
pid is trusted only if that process's working directory is the VM folder (Linux), so a
recycled pid is never mistaken for the VM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from .. import layout
from ..errors import ExternalError, Timeout
from .sockets import can_connect


def read_pid(vm_dir: Path) -> int | None:
    """The pid in the VM's pid file, or None."""
    try:
        text = (vm_dir / layout.VM_PID).read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def pid_alive(pid: int, vm_dir: Path) -> bool:
    """True when ``pid`` is a live process that is this VM's QEMU."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return False  # a zombie has exited
            return os.readlink(f"/proc/{pid}/cwd") == str(vm_dir.resolve())
        except PermissionError:
            return True
        except (FileNotFoundError, IndexError):
            return False
    return True


def running_pid(vm_dir: Path) -> int | None:
    """The pid of the VM's live QEMU, or None."""
    pid = read_pid(vm_dir)
    return pid if pid is not None and pid_alive(pid, vm_dir) else None


def clean_runtime(vm_dir: Path) -> None:
    """Remove the files a QEMU that is gone left behind (sockets, pid file, run info)."""
    for name in layout.VM_RUNTIME_FILES:
        try:
            (vm_dir / name).unlink()
        except FileNotFoundError:
            pass


def log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


async def launch(argv: list[str], vm_dir: Path, timeout: float = 20.0) -> int:
    """Start QEMU detached in ``vm_dir``; return its pid once its QMP socket answers.

    Raises :class:`ExternalError` with QEMU's own message when it exits during start-up.
    """
    log = vm_dir / layout.VM_QEMU_LOG
    with open(log, "ab") as f:
        f.write(b"--- starting: " + " ".join(argv).encode() + b"\n")
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", f'exec "$@" </dev/null >>{layout.VM_QEMU_LOG} 2>&1 &', "sh", *argv,
        cwd=vm_dir, start_new_session=True,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen_pid = False
    while loop.time() < deadline:
        pid = read_pid(vm_dir)
        if pid is not None:
            seen_pid = True
            if not pid_alive(pid, vm_dir):
                break
            if await asyncio.to_thread(can_connect, vm_dir / layout.VM_QMP):
                return pid
        await asyncio.sleep(0.02)
    else:
        pid = read_pid(vm_dir)
        if pid is not None:
            terminate(pid, vm_dir, signal.SIGKILL)
        clean_runtime(vm_dir)
        raise Timeout(f"QEMU did not come up within {timeout:.0f} s", hint=f"See {log}.")
    # QEMU exited during start-up: its last words are the reason.
    await asyncio.sleep(0.05)
    clean_runtime(vm_dir)
    detail = "\n".join(
        line for line in log_tail(log, 20).splitlines() if not line.startswith("--- starting:")
    ).strip()
    if not seen_pid and not detail:
        detail = "it exited at once"
    raise ExternalError(f"QEMU failed to start: {detail.splitlines()[-1] if detail else 'no message'}",
                        hint=f"Full log: {log}")


def terminate(pid: int, vm_dir: Path, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the VM's QEMU if it is still that process."""
    if pid_alive(pid, vm_dir):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


async def wait_exit(pid: int, vm_dir: Path, timeout: float) -> bool:
    """Wait until the VM's QEMU is gone; True if it went within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pid_alive(pid, vm_dir):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
