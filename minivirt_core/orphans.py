"""Orphans: throw-away VMs whose owner is gone, reported by ``fsck``, removed by ``prune``.

A VM made by ``miv run``, a build or a build's test records its owner (see
:mod:`~minivirt_core.owners`). If that process died without destroying it (SIGKILL, a
crash), nothing else ever will: such a VM, running or not, is an orphan.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .database import Database
from .errors import InvalidInput
from .fsutil import remove_tree
from .owners import Owner
from .qemu import process
from .vmconfig import read_config

KILL_WAIT = 10.0


@dataclass(frozen=True)
class Orphan:
    """A throw-away VM whose owner is gone; ``pid`` is its QEMU when that still runs."""

    name: str
    owner: Owner
    pid: int | None

    def describe(self) -> str:
        """One line for a person: what it is and what to do."""
        running = f", and its QEMU (pid {self.pid}) still runs" if self.pid else ""
        return (f"an orphan: the miv process that made it ({self.owner}) is gone{running}; "
                "`miv prune` removes it")


def _orphan(db: Database, name: str) -> Orphan | None:
    vm_dir = db.vms_dir / name
    try:
        owner = read_config(vm_dir).owner
    except InvalidInput:
        return None  # a broken VM is fsck's other report, and never removed on a guess
    if owner is None or owner.alive():
        return None
    return Orphan(name, owner, process.running_pid(vm_dir))


def find_orphans(db: Database) -> list[Orphan]:
    """Every orphan VM of the database, by name."""
    return [o for o in (_orphan(db, n) for n in sorted(db.vm_image_ids())) if o is not None]


def remove_orphans(db: Database, dry_run: bool = False, only: Collection[str] | None = None) -> list[Orphan]:
    """Kill the QEMU of every orphan (of those named ``only``, when given) and remove its
    folder (blocking); returns them.

    A VM someone is starting or stopping right now (its folder lock is taken) is left
    for the next time."""
    orphans = [o for o in find_orphans(db) if only is None or o.name in only]
    if dry_run:
        return orphans
    return [o for o in orphans if _remove(db, o.name)]


def _remove(db: Database, name: str) -> bool:
    vm_dir = db.vms_dir / name
    try:
        fd = os.open(vm_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the VM's own lock (see VmManager)
        except BlockingIOError:
            return False
        orphan = _orphan(db, name)  # again, under the lock
        if orphan is None:
            return False
        if orphan.pid is not None:
            _kill(orphan.pid, vm_dir)
        with db.lock():
            trash = db.staging_dir / f"orphan-{os.urandom(6).hex()}"
            os.rename(vm_dir, trash)
    finally:
        os.close(fd)
    remove_tree(trash)
    return True


def _kill(pid: int, vm_dir: Path) -> None:
    process.terminate(pid, vm_dir, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT
    while process.pid_alive(pid, vm_dir) and time.monotonic() < deadline:
        time.sleep(0.02)
