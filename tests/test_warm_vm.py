"""Warm starts on the real tiny guest: a saved just-booted state resumed by new VMs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import MIV, miv, wait_until


def _states(db: Path) -> list[Path]:
    folder = db / "cache" / "warm"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _start_both(db: Path, names: list[str]) -> None:
    """Start VMs at the same moment, each in its own miv process."""
    env = {**os.environ, "MINIVIRT_DB_PATH": str(db)}
    procs = [subprocess.Popen([MIV, "start", n, "--daemon", "--wait-for-ssh", "120"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in names]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()


def _ssh(db: Path, vm: str, command: str) -> str:
    return miv(db, "ssh", vm, command).stdout.decode().strip()


@pytest.mark.vm
@pytest.mark.slow
def test_warm_run_clones_at_once_own_state_per_memory_and_prune(tiny_db: Path) -> None:
    db = tiny_db
    first = miv(db, "run", "tiny", "hostname")
    assert first.stdout == b"tiny\n"
    assert first.stderr == b""  # piped, the news of the saved state is left out
    (state,) = _states(db)
    meta = json.loads((state / "warm.json").read_text())
    assert meta["machine"]["machine_type"].startswith("pc-i440fx-")  # pinned, not "pc"
    assert json.loads(miv(db, "images", "--json").stdout)[0]["warm_states"] == 1

    warm = miv(db, "run", "tiny", "hostname")
    assert warm.stdout == b"tiny\n" and warm.stderr == b"", warm.stderr
    # A warm `miv run` runs its command behind the clone-safety steps, in the same exec:
    # its clock is the host's, and two runs from the one state read different random bytes.
    wait_until(lambda: time.time() - meta["created"] > 5, 10, "the warm state to be 5 s old")
    probe = "date +%s; head -c 64 /dev/urandom | od -An -tx1"
    runs = []
    for _ in range(3):
        before = time.time()
        clock, random = miv(db, "run", "tiny", probe).stdout.decode().split("\n", 1)
        assert before - 2 <= int(clock) <= time.time() + 1, f"a warm run's clock is {int(clock) - before:+.1f} s off"
        runs.append((clock, random))
    # (A state is saved right after the guest reseeded; without the reseed a clone asks for,
    # its first reads come from the saved generator: the same bytes in every clone.)
    assert len(runs[0][1].split()) == 64 and len({r for _, r in runs}) == 3

    # Two VMs started from the one state at once: both resumed (no boot on their consoles),
    # each with its own writes, a clock set from the host and an RNG of its own.
    miv(db, "create", "tiny", "a")
    miv(db, "create", "tiny", "b")
    # The guest clock of a restored state lags by the state's age: make that more than the 2 s allowed.
    wait_until(lambda: time.time() - meta["created"] > 5, 10, "the warm state to be 5 s old")
    _start_both(db, ["a", "b"])
    for vm in ("a", "b"):
        assert json.loads((db / "vms" / vm / "run.json").read_text())["warm"] == state.name
        assert b"Linux version" not in (db / "vms" / vm / "serial.log").read_bytes()
    _ssh(db, "a", "echo from-a > /root/mine && sync")
    assert _ssh(db, "a", "cat /root/mine") == "from-a"
    assert _ssh(db, "b", "cat /root/mine 2>/dev/null || echo none") == "none"
    for vm in ("a", "b"):
        guest = int(_ssh(db, vm, "date +%s"))
        assert abs(guest - time.time()) <= 2, f"{vm}'s clock is {guest - time.time():+.1f} s off"
    random_a = _ssh(db, "a", "head -c 64 /dev/urandom | od -An -tx1")
    random_b = _ssh(db, "b", "head -c 64 /dev/urandom | od -An -tx1")
    assert len(random_a.split()) == 64 and random_a != random_b

    # --cold boots even with a state there.
    miv(db, "create", "tiny", "c", "-m", "200")
    miv(db, "start", "c", "--daemon", "--cold")
    assert "warm" not in json.loads((db / "vms" / "c" / "run.json").read_text())

    # Other memory: its own state, never a failed restore of the first.
    other = miv(db, "run", "-m", "256", "tiny", "true")
    assert b"cold" not in other.stderr
    assert len(_states(db)) == 2 and json.loads(miv(db, "images", "--json").stdout)[0]["warm_states"] == 2

    # The image goes: its warm states go with it.
    miv(db, "destroy", "a", "b", "c")
    miv(db, "untag", "tiny")
    out = miv(db, "prune").stderr.decode()
    assert out.count("removed warm state") == 2
    assert _states(db) == []


@pytest.mark.vm
@pytest.mark.slow
def test_corrupt_or_mismatched_warm_state_falls_back_to_a_cold_boot(tiny_db: Path) -> None:
    db = tiny_db
    miv(db, "run", "tiny", "true")
    (state,) = _states(db)

    # Damaged in the middle (same size): QEMU cannot load it, or the guest does not answer.
    with open(state / "state", "r+b") as f:
        f.seek(f.seek(0, 2) // 2)
        f.write(b"\xff" * 65536)
    out = miv(db, "run", "tiny", "hostname")
    assert out.stdout == b"tiny\n"
    err = out.stderr.decode()
    assert "booting" in err and "cold" in err, err  # (and the cold boot saved a new state: below)

    # Saved from another machine (its record differs): refused before QEMU sees it.
    (state,) = _states(db)
    meta = json.loads((state / "warm.json").read_text())
    meta["machine"]["cpus"] = 2
    (state / "warm.json").write_text(json.dumps(meta))
    out = miv(db, "run", "tiny", "hostname")
    assert out.stdout == b"tiny\n"
    assert "the warm state is unusable (it was saved from another machine (settings differ)): " \
           "removed it, booting cold" in out.stderr.decode()
    assert len(_states(db)) == 1  # made again
    assert miv(db, "fsck", rc=None).returncode == 0


# The guest's perl works once (for the save's reseed check), then fails: a clone of the
# state saved after this cannot reseed its RNG, so its clone-safety steps fail.
PERL_WORKS_ONCE = ("mv /usr/bin/perl /root/perl && printf '#!/bin/sh\\n[ -e /root/once ] && exit 1\\n"
                   "touch /root/once\\nexec /root/perl \"$@\"\\n' > /usr/bin/perl && chmod 755 /usr/bin/perl")


def _save_state_after(db: Path, change: str, saved: bool = True) -> list[str]:
    """Save the warm state of ``miv run -m 200 tiny`` from a VM whose guest ran ``change``
    (over SSH) first: a state that later runs resume as it is (``saved``: that the save is
    expected to happen). Returns what the save told."""
    import asyncio

    from minivirt_core import Minivirt, warm

    miv(db, "create", "tiny", "m", "-m", "200")
    core = Minivirt(db)
    core.vms.keep_well_known_key("m")  # logins leave the guest as it was: a state may still be saved
    miv(db, "start", "m", "--daemon", "--cold", "--wait-for-ssh", "120")
    miv(db, "ssh", "m", change, rc=None)
    image = core.images.resolve("tiny")
    choice = asyncio.run(core.vms.accelerator())
    facts = asyncio.run(warm.qemu_facts("qemu-system-x86_64"))
    assert facts is not None
    machine = warm.Machine(image.id, 200, 1, tuple(choice.qemu_args), facts[1], facts[0], False, ("disk",))
    told: list[str] = []
    assert (asyncio.run(warm.save(core.db, db / "vms" / "m", machine, lambda n: told.append(n.text)))
            is not None) == saved, told
    miv(db, "destroy", "m")
    return told


@pytest.mark.vm
@pytest.mark.slow
def test_warm_state_of_a_guest_without_ssh_falls_back_to_a_cold_boot(tiny_db: Path) -> None:
    """A state whose guest cannot be made safe (here its SSH server was stopped before the
    save): the clone is stopped and booted cold, and the user is told."""
    db = tiny_db
    # init respawns the SSH server: take its binary away first.
    _save_state_after(db, "mv /usr/sbin/dropbear /root/dropbear-off && kill $(pidof dropbear)")

    out = miv(db, "run", "-m", "200", "tiny", "hostname")
    assert out.stdout == b"tiny\n"
    assert "the warm-started guest could not be made safe" in out.stderr.decode()
    assert "booting it cold" in out.stderr.decode()


@pytest.mark.vm
@pytest.mark.slow
def test_a_warm_run_whose_clone_safety_steps_fail_does_not_run_its_command(tiny_db: Path) -> None:
    """`miv run` puts the clone-safety steps in front of its command, in one exec: when they
    fail (here the guest's perl works once, for the save's check, then fails: a clone
    cannot reseed its RNG), the command does not run, and the user gets one clear line and
    exit status 1."""
    from minivirt_core import clonesafety

    db = tiny_db
    _save_state_after(db, PERL_WORKS_ONCE)

    out = miv(db, "run", "-m", "200", "tiny", "echo ran", rc=None)
    assert out.returncode == 1
    assert out.stdout == b""
    assert out.stderr.decode() == clonesafety.SAFETY_FAILED + "\n"
    # Every clone of that state would fail the same way: it is removed, the next run boots cold.
    assert _states(db) == []
    assert miv(db, "run", "-m", "200", "tiny", "echo ran").stdout == b"ran\n"
    assert miv(db, "fsck", rc=None).returncode == 0


@pytest.mark.vm
@pytest.mark.slow
def test_a_warm_start_whose_clone_safety_steps_fail_removes_the_state_and_boots_cold(tiny_db: Path) -> None:
    """`miv start` of a never-used VM runs the clone-safety steps on its own connection: when
    the guest fails them (its perl works once, for the save's check), the state is removed
    (every clone would fail alike), the VM boots cold from its image, and the user is told."""
    db = tiny_db
    _save_state_after(db, PERL_WORKS_ONCE)

    miv(db, "create", "tiny", "v", "-m", "200")
    err = miv(db, "start", "v", "--daemon", "--wait-for-ssh", "120").stderr.decode()
    assert "the warm-started guest could not be made safe (the clone-safety steps failed in the guest" in err, err
    assert "removed its warm state, booting it cold" in err, err
    assert _states(db) == []
    assert miv(db, "ssh", "v", "test -e /root/once && echo restored || echo cold").stdout == b"cold\n"
    miv(db, "destroy", "v")
    assert miv(db, "fsck", rc=None).returncode == 0


@pytest.mark.vm
@pytest.mark.slow
def test_a_guest_that_cannot_reseed_its_rng_gets_no_warm_state(tiny_db: Path) -> None:
    """Written entropy reaches /dev/urandom only at the kernel's next reseed: a guest where
    the reseed cannot be asked for (here perl is gone, and tiny has no python3) would give
    every clone the same random numbers, so it gets no state, and its runs boot cold."""
    db = tiny_db
    told = _save_state_after(db, "mv /usr/bin/perl /root/perl-off", saved=False)
    assert any("cannot reseed its RNG" in t for t in told), told
    assert _states(db) == []
