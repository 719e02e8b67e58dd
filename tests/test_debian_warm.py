"""Warm starts of the real Debian 12 guest (OpenSSH, systemd, cloud-init; its kernel has no
vmgenid driver, so nothing but minivirt reseeds a clone's RNG). Run by default, like test_debian.py."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minivirt_core import ssh

from .conftest import TinyImage, kill_qemus_under
from .helpers import MIV, miv, wait_until
from .test_debian import BOOT, linked_db

# Run by default, as test_debian.py: the debian_image fixture skips with the reason where the
# image cannot be built (conftest.debian_build_unavailable; MINIVIRT_SKIP_DEBIAN=1 opts out).
pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(5400)]


@pytest.fixture(scope="module")
def warm_db(debian_image: TinyImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A database with the Debian image and its warm state, made by one cold `miv run`
    (whose guest's hostname comes along)."""
    base = tmp_path_factory.mktemp("debian-warm")
    db = linked_db(base / "db", debian_image, "debian-12")
    cold = miv(db, "run", "--wait-for-ssh", str(BOOT), "debian-12", "hostname", timeout=BOOT + 60)
    yield db, cold.stdout.decode().strip()
    kill_qemus_under(base)


def _ssh(db: Path, vm: str, command: str) -> str:
    return miv(db, "ssh", vm, "--", command).stdout.decode().strip()


def test_debian_warm_run_is_resumed_and_made_safe(warm_db: tuple[Path, str]) -> None:
    db, hostname = warm_db
    (state,) = (db / "cache" / "warm").iterdir()
    meta = json.loads((state / "warm.json").read_text())
    wait_until(lambda: time.time() - meta["created"] > 5, 10, "the warm state to be 5 s old")

    # A warm run: its command runs behind the clone-safety steps (the clock is the host's).
    before = time.time()
    out = miv(db, "run", "debian-12", "hostname; date +%s")
    name, clock = out.stdout.decode().split()
    assert name == hostname and before - 2 <= int(clock) <= time.time() + 1, out.stdout


def test_debian_clones_warm_started_at_once_are_safe(warm_db: tuple[Path, str]) -> None:
    db, hostname = warm_db
    (state,) = (db / "cache" / "warm").iterdir()

    # Two VMs from the one state at once: resumed, not booted; each its own clock, RNG, key, writes.
    for vm in ("a", "b"):
        miv(db, "create", "debian-12", vm)
    env = {**os.environ, "MINIVIRT_DB_PATH": str(db)}
    procs = [subprocess.Popen([MIV, "start", vm, "-d", "--wait-for-ssh", "120"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for vm in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    well_known = ssh.public_key_text().split()[1]
    for vm in ("a", "b"):
        assert json.loads((db / "vms" / vm / "run.json").read_text())["warm"] == state.name
        assert json.loads((db / "vms" / vm / "ssh-key.json").read_text())["disk_key"] == "own"
        keys = _ssh(db, vm, "cat /root/.ssh/authorized_keys")
        assert "minivirt-vm-key" in keys and well_known not in keys, keys
        # The guest's time (GNU date: to the nanosecond) was read somewhere inside the call:
        # within 2 s of the host means within 2 s of [before, after]. (Read against the time
        # after the call alone, a slow login's tail under load counted as clock error: -2.1 s.)
        before = time.time()
        guest = float(_ssh(db, vm, "date +%s.%N"))
        after = time.time()
        assert before - 2 <= guest <= after + 2, f"{vm}'s clock read {guest - before:+.1f} s after the call began" \
                                                 f" (which took {after - before:.1f} s)"
        assert _ssh(db, vm, "hostname") == hostname
    _ssh(db, "a", "echo from-a > /root/mine && sync")
    assert _ssh(db, "b", "cat /root/mine 2>/dev/null || echo none") == "none"
    random_a = _ssh(db, "a", "head -c 64 /dev/urandom | od -An -tx1")
    random_b = _ssh(db, "b", "head -c 64 /dev/urandom | od -An -tx1")
    assert len(random_a.split()) == 64 and random_a != random_b
    miv(db, "destroy", "a", "b")
