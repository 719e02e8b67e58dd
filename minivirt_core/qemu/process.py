"""The detached QEMU process of a VM: launching it, finding it, and ending it.

QEMU is started through ``sh -c '... &'`` so that it is not our child: it outlives
``miv`` and never lingers as our zombie. It is found again through its pid file, and a
pid is trusted only if that process's working directory is the VM folder (Linux), so a
recycled pid is never mistaken for the VM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from .. import layout
from ..errors import ExternalError, Timeout


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


def _last_words(log: Path, offset: int) -> str:
    """The last line QEMU wrote to its log after ``offset`` (this start's own output)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


async def _spawn_detached(argv: list[str], vm_dir: Path) -> int:
    """Start ``argv`` in ``vm_dir`` as a grandchild (it outlives us, never our zombie),
    its output appended to the QEMU log; returns its pid."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", f'exec "$@" </dev/null >>{layout.VM_QEMU_LOG} 2>&1 & echo $!', "sh", *argv,
        cwd=vm_dir, start_new_session=True,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    try:
        return int(out)
    except ValueError as e:
        raise ExternalError(f"could not start {argv[0]}: the shell gave no process id") from e


async def _answers_qmp(vm_dir: Path, timeout: float) -> bool:
    """True once QEMU answers a command on its QMP socket. QEMU runs commands only from
    its main loop, which starts after the machine is set up (memory, devices, drives):
    an answer means the start-up succeeded, where an open socket alone does not."""
    from .monitor import try_execute

    if not (vm_dir / layout.VM_QMP).exists():
        return False
    return await try_execute(vm_dir / layout.VM_QMP, "query-status", timeout=timeout)


async def launch(argv: list[str], vm_dir: Path, timeout: float = 20.0) -> int:
    """Start QEMU detached in ``vm_dir``; return its pid once it has started for real.

    QEMU's exit during start-up is noticed at once and raised as :class:`ExternalError`
    with QEMU's own reason (e.g. ``cannot set up guest memory``); a missing QEMU is a
    clear error before anything runs.
    """
    if shutil.which(argv[0]) is None:
        raise ExternalError(
            f"QEMU is not installed: {argv[0]} was not found on PATH",
            hint="Install it (Debian/Ubuntu: apt-get install qemu-system-x86 qemu-utils); `miv doctor` checks.",
        )
    log = vm_dir / layout.VM_QEMU_LOG
    with open(log, "ab") as f:
        f.write(b"--- starting: " + " ".join(argv).encode() + b"\n")
        offset = f.tell()
    pid = await _spawn_detached(argv, vm_dir)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pid_alive(pid, vm_dir):
        remaining = deadline - loop.time()
        if remaining <= 0:
            terminate(pid, vm_dir, signal.SIGKILL)
            clean_runtime(vm_dir)
            raise Timeout(f"QEMU did not come up within {timeout:.0f} s", hint=f"See {log}.")
        if await _answers_qmp(vm_dir, min(remaining, 2.0)):
            return pid
        await asyncio.sleep(0.02)
    # QEMU exited during start-up: its last words are the reason.
    clean_runtime(vm_dir)
    reason = _last_words(log, offset) or "it exited without a message"
    raise ExternalError(f"QEMU failed to start: {reason}", hint=f"Full log: {log}")


def terminate(pid: int, vm_dir: Path, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the VM's QEMU if it is still that process."""
    if pid_alive(pid, vm_dir):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


async def wait_exit(pid: int, vm_dir: Path, timeout: float) -> bool:
    """Wait until the VM's QEMU is gone; True if it went within ``timeout``. On Linux a
    pidfd tells the moment it exits; elsewhere (or without one) the process is polled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    exited: asyncio.Future[None] | None = None
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    if pidfd is not None:
        exited = loop.create_future()
        loop.add_reader(pidfd, _set_once, exited)
    try:
        while pid_alive(pid, vm_dir):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if exited is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), min(remaining, 0.5))
            else:
                await asyncio.sleep(0.05)
        return True
    finally:
        if pidfd is not None:
            loop.remove_reader(pidfd)
            os.close(pidfd)


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
