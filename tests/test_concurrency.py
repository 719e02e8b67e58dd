"""Crashes and concurrent `miv` processes never corrupt the database."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .helpers import MIV, db_entries, image_tar, miv, qcow2_of


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
