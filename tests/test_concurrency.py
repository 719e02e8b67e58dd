"""Crashes and concurrent `miv` processes never corrupt the database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from minivirt_core import Minivirt
from minivirt_core.database import Database

from .helpers import MIV, db_entries, image_id_of, image_tar, miv, qcow2_of


def test_load_killed_halfway_leaves_fsck_clean_and_no_image(db: Path) -> None:
    data = image_tar(disk=qcow2_of(os.urandom(8 << 20)))
    miv(db, "images")
    proc = subprocess.Popen([MIV, "load", "half"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "MINIVIRT_DB_PATH": str(db)})
    assert proc.stdin is not None
    proc.stdin.write(data[: len(data) // 2])
    proc.stdin.flush()
    staged = db / "staging"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        written = sum(f.stat().st_size for d in staged.iterdir() for f in d.iterdir()) if staged.exists() else 0
        if written >= 2 << 20:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the load never wrote to staging")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert db_entries(db)["images"] == []
    out = miv(db, "fsck")  # exit 0: an interrupted load is not damage
    assert b"interrupted work" in out.stderr
    pruned = miv(db, "prune").stderr.decode()
    assert "removed leftover staging/load-" in pruned
    assert db_entries(db) == {"images": [], "vms": [], "staging": []}


def test_concurrent_loads_and_prune_end_consistent(db: Path) -> None:
    archives = {f"t{i}": image_tar(disk=qcow2_of(os.urandom(6 << 20))) for i in range(2)}
    miv(db, "load", "junk", input=image_tar())
    miv(db, "untag", "junk")
    env = {**os.environ, "MINIVIRT_DB_PATH": str(db)}
    for _round in range(3):
        procs = [subprocess.Popen([MIV, "load", tag], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env) for tag in archives]
        procs.append(subprocess.Popen([MIV, "prune"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
        for p, data in zip(procs, archives.values(), strict=False):
            assert p.stdin is not None
            p.stdin.write(data)
            p.stdin.close()
        for p in procs:
            assert p.wait(60) == 0, p.stderr.read() if p.stderr else ""
        assert b"no problems" in miv(db, "fsck").stderr
        tags = {t: os.readlink(db / "images" / t) for t in archives}
        assert all((db / "images" / target).is_dir() for target in tags.values())
        miv(db, "untag", *archives)
        miv(db, "prune")
    assert db_entries(db) == {"images": [], "vms": [], "staging": []}


# The database lock across threads and coroutines --------------------------------------------


def test_database_lock_is_exclusive_across_threads(db: Path) -> None:
    """Regression: the lock counted re-entry per object, so a second thread walked right in."""
    database = Database(db)
    with database.lock(), database.lock():  # re-entrant for the thread that holds it
        got: list[bool] = []
        probe = threading.Thread(target=lambda: got.append(database._lock.acquire(blocking=False)))
        probe.start()
        probe.join()
    assert got == [False]
    # Many threads, each taking it often: never two inside at once.
    inside: list[int] = []
    most = [0]
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        for _ in range(300):
            with Database(db).lock():  # another object for the same folder: the same lock
                inside.append(1)
                most[0] = max(most[0], len(inside))
                os.stat(db)  # a system call: a chance for the others to run
                inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == [1]


def test_prune_on_another_thread_waits_for_the_lock_holder(db: Path) -> None:
    """Regression: `ImageStore.load` commits on a worker thread; a prune on another thread
    entered the lock meanwhile and could remove the image before its tag was written."""
    miv_ = Minivirt(db)
    files = {"config.json": b"{}", "disk.qcow2": b"d"}
    image_id = image_id_of(files)
    pruned: list[list[str]] = []
    with miv_.db.lock():  # what commit_staging does: the image appears, then its tag
        folder = miv_.db.images_dir / image_id
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        pruner = threading.Thread(target=lambda: pruned.append(miv_.images.prune().images))
        pruner.start()
        pruner.join(1)  # a bounded look: it must still be waiting for us
        assert pruner.is_alive() and pruned == []
        miv_.images.tag(image_id, ["kept"])
    pruner.join(30)
    assert pruned == [[]] and folder.is_dir()


async def test_two_coroutines_never_hold_the_lock_at_once(db: Path) -> None:
    """Coroutines share a thread: one holding the lock across an await must not let another in."""
    database = Database(db)
    holding, release = asyncio.Event(), asyncio.Event()

    async def misbehaving() -> None:
        with database.lock():
            holding.set()
            await release.wait()

    task = asyncio.create_task(misbehaving())
    await holding.wait()
    with pytest.raises(RuntimeError, match="another coroutine"), database.lock():
        pass
    release.set()
    await task
    with database.lock():  # free again
        pass


@pytest.mark.parametrize("operation", ["create", "commit", "destroy"])
async def test_core_waits_for_the_database_lock_off_the_event_loop(db: Path, operation: str) -> None:
    """Regression: `destroy`, `commit` and `create` took the lock on the event loop, so a
    lock held elsewhere (another miv, a prune) froze everything else on the loop."""
    miv_ = Minivirt(db)
    if operation != "create":
        await miv_.vms.create(None, "v", disk_size="1M")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with miv_.db.lock():
            holding.set()
            release.wait(20)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    try:
        if operation == "create":
            task = asyncio.create_task(miv_.vms.create(None, "v", disk_size="1M"))
        elif operation == "commit":
            task = asyncio.create_task(miv_.vms.commit("v", ["committed"]))
        else:
            task = asyncio.create_task(miv_.vms.destroy("v"))
        for _ in range(50):  # the loop keeps running while the operation waits for the lock
            await asyncio.sleep(0.01)
        assert not task.done()
    finally:
        release.set()
    await task
    holder.join()
    assert (db / "vms" / "v").is_dir() == (operation != "destroy")
    assert (db / "images" / "committed").is_symlink() == (operation == "commit")
