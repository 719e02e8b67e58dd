"""Named snapshots of VMs on the real tiny guest (`miv snapshot save/ls/restore/rm`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .helpers import guest_runs, miv


def _snapshots(db: Path, vm: str) -> list[tuple[str, bool]]:
    return [(s["name"], s["memory"]) for s in json.loads(miv(db, "snapshot", "ls", vm, "--json").stdout)]


def _state(db: Path, vm: str) -> str:
    (st,) = [v["state"] for v in json.loads(miv(db, "ps", "-a", "--json").stdout) if v["name"] == vm]
    return str(st)


@pytest.mark.vm
@pytest.mark.slow
def test_snapshot_round_trips_live_with_memory_and_disk_only_when_stopped(running_vm: Path) -> None:
    db = running_vm
    miv(db, "ssh", "v", "sleep 4242 </dev/null >/dev/null 2>&1 &")
    assert guest_runs(db, "v", "sleep 4242")
    miv(db, "snapshot", "save", "v", "live")
    assert _state(db, "v") == "running"  # a live snapshot: the VM keeps running
    miv(db, "ssh", "v", "echo written-after > /root/after")
    miv(db, "snapshot", "restore", "v", "live")
    assert _state(db, "v") == "running"
    assert miv(db, "ssh", "v", "ls /root/after 2>/dev/null || echo gone").stdout == b"gone\n"
    assert guest_runs(db, "v", "sleep 4242")  # started before the snapshot: still there

    # Stopped: a disk-only snapshot; a snapshot with memory brings the VM back running.
    miv(db, "stop", "v")
    miv(db, "snapshot", "save", "v", "disk")
    assert _snapshots(db, "v") == [("live", True), ("disk", False)]
    out = miv(db, "snapshot", "restore", "v", "live")
    assert b"running" in out.stderr and _state(db, "v") == "running"
    assert guest_runs(db, "v", "sleep 4242")
    miv(db, "ssh", "v", "echo x > /root/x && sync")
    err = miv(db, "snapshot", "restore", "v", "disk", rc=1).stderr.decode()
    assert err.startswith("error: snapshot 'disk' of VM 'v' holds its disk only: stop the VM")
    miv(db, "stop", "v")
    miv(db, "snapshot", "restore", "v", "disk")
    assert _state(db, "v") == "stopped"
    miv(db, "start", "v", "--daemon", "--wait-for-ssh", "120")
    assert miv(db, "ssh", "v", "ls /root/x 2>/dev/null || echo gone").stdout == b"gone\n"

    miv(db, "snapshot", "rm", "v", "live")
    assert _snapshots(db, "v") == [("disk", False)]
    assert miv(db, "snapshot", "rm", "v", "live", rc=1).stderr.startswith(
        b"error: VM 'v' has no snapshot named 'live'")
    assert miv(db, "snapshot", "save", "v", "disk", rc=1).stderr.startswith(
        b"error: VM 'v' has a snapshot named 'disk' already")
    assert miv(db, "snapshot", "save", "v", "-bad;quit", rc=None).returncode != 0


@pytest.mark.vm
def test_commit_of_a_vm_with_snapshots_is_a_plain_image(tiny_db: Path) -> None:
    miv(tiny_db, "create", "tiny", "t", "-m", "200")
    miv(tiny_db, "snapshot", "save", "t", "one")
    assert _snapshots(tiny_db, "t") == [("one", False)]
    miv(tiny_db, "commit", "t", "plain")
    disk = tiny_db / "images" / "plain" / "disk.qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True,
                                     check=True).stdout)
    assert "snapshots" not in info and "backing-filename" not in info
