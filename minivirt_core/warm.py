"""Warm starts: a new VM resumes a saved, just-booted machine instead of booting.

A *warm state* of an image is a VM of it booted to SSH-ready, paused and saved: QEMU's
migration stream to a file (``state``: the RAM and device state) and the disk overlay as it
was at that instant (``disk.qcow2``, over the image's disk; a few MiB). It lives in the
database's cache, ``cache/warm/<image id>-<key>/``, where the key hashes everything the
restore must match: memory, CPUs, the versioned machine type (``pc`` resolved, e.g.
``pc-i440fx-7.2``), the accelerator and CPU model, the device list, the QEMU binary's
version, and the network mode. A changed setting is another state, never a failed restore.

Measured here (QEMU 7.2, TCG, see bench/README.md): a migration file restores with a thin
overlay over the saved disk, and many VMs can read one state file at once; an internal
snapshot (``savevm``/``-loadvm``) needs a full private copy of the overlay holding it. So a
state is one shared read-only stream plus a per-VM copy of the small saved overlay, which
becomes the VM's own ``disk.qcow2`` (its backing file is the image's disk, as for any VM):
the VM owes the cache nothing afterwards, and ``commit`` still yields a plain image.

When a state is made: the first eligible start of a new VM boots cold, and once its SSH
server answers and its boot is done (systemd's, where there is one: see :func:`_settle`),
*before anyone has logged in*, the VM is paused (~0.1-0.3 s), saved, and resumed. Not on
exit (by then the guest holds its user's files, processes and its own SSH key: nothing to
hand to other VMs) and not by a second VM in the background (it would double the CPU load
of a small machine during the first run). Nobody can log in meanwhile: the save holds the
VM's first-contact lock (``ssh-key.lock``). A guest that cannot reseed its RNG at once (no
perl, no python3: see :mod:`.clonesafety`) gets no state: its VMs boot cold.

After a restore, before the VM is handed over (:func:`.clonesafety.make_safe`): the guest clock is set
from the host (it lags by the time since the save), fresh host entropy is written into the
guest's RNG, the VM's own SSH key replaces the well-known one (the first contact, as on any
VM), and the hostname is the image's, as after a cold boot. A state that cannot be used
(corrupt, mismatched, a guest that does not answer) is removed and the VM boots cold; the
caller is told why.

Only VMs whose disk is still the image's (never started) and that have no other drives are
eligible; ``--cold`` (``cold=True``) and ``--snapshot`` runs always boot.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import clonesafety, layout
from .database import Database, read_json
from .errors import ExternalError, MinivirtError
from .fsutil import atomic_write_json, flock_async, remove_tree

if TYPE_CHECKING:
    from .qemu.command import Drive

WARM = "warm"  # under the database's cache folder
STATE = "state"  # QEMU's migration stream
DISK = "disk.qcow2"  # the VM's disk overlay at the instant of the save
META = "warm.json"  # the Machine it was saved from, the machine type, sizes
FORMAT = 1
# What qemu_argv puts on every VM besides its drives: part of the key, so a change of the
# device list in a new minivirt never meets an old state.
DEVICES = "nodefaults,virtio-net-pci(romfile=),virtio-rng-pci,serial-socket,qmp;v1"
RESTORE_TIMEOUT = 30.0
# A restored guest's SSH server listened when the state was saved: it answers within a few
# seconds even on a loaded machine (4 s seen at a load of 7 on 2 cores), else it never will.
LOGIN_TIMEOUT = 20.0
SAVE_TIMEOUT = 60.0
SETTLE_TIMEOUT = 600.0  # a first boot of a real distribution under emulation on a loaded host
# What the guest runs before a save: systemd's own wait for the end of the boot (its status,
# "running" or "degraded", does not matter; nothing where there is no systemd), then a try of
# the RNG reseed every clone needs (:data:`.clonesafety.RESEED`): NO_RESEED when it fails.
NO_RESEED = "minivirt: no reseed"
SETTLE = ("if command -v systemctl >/dev/null 2>&1; then systemctl is-system-running --wait >/dev/null 2>&1; fi; "
          f"{{ {clonesafety.RESEED}; }} >/dev/null 2>&1 || echo {shlex.quote(NO_RESEED)}; true")

NEWS = "news"  # something done as planned (a state saved): scripts may leave it out
WARNING = "warning"  # a fallback a person should hear about (a state unusable, a cold boot instead)


@dataclass(frozen=True)
class Notice:
    """What a start tells about warm states: its ``text``, and its ``level``
    (:data:`NEWS` or :data:`WARNING`)."""

    text: str
    level: str = NEWS

    def __str__(self) -> str:
        return self.text


Note = Callable[[Notice], None]
SAVED = Notice("saved a warm state: the next VM of this image with these settings starts warm", NEWS)
"""The notice of a start that saved a state."""
_DIR_RE = re.compile(r"([0-9a-f]{64})-([0-9a-f]{16})")


@dataclass(frozen=True)
class Machine:
    """Everything a saved state must match to be restored."""

    image: str
    memory_mb: int
    cpus: int
    accel_args: tuple[str, ...]
    machine_type: str  # versioned, e.g. pc-i440fx-7.2
    qemu_version: str
    isolated: bool
    drives: tuple[str, ...]  # kinds, in order
    devices: str = DEVICES

    def key(self) -> str:
        """16 hex digits of a hash of every field."""
        text = json.dumps({**asdict(self), "format": FORMAT}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "accel_args": list(self.accel_args), "drives": list(self.drives)}


def warm_dir(db: Database) -> Path:
    return db.cache_dir / WARM


def state_dir(db: Database, machine: Machine) -> Path:
    """Where the warm state of ``machine`` is (or would be)."""
    return warm_dir(db) / f"{machine.image}-{machine.key()}"


def named_state(db: Database, name: object) -> Path | None:
    """The folder of the warm state called ``name`` (as a VM's run.json records it), or None
    when that is not a state's name."""
    return warm_dir(db) / name if isinstance(name, str) and _DIR_RE.fullmatch(name) else None


def states_by_image(db: Database) -> dict[str, int]:
    """{image id: number of its warm states} (names only: cheap enough for ``miv images``)."""
    counts: dict[str, int] = {}
    try:
        entries = os.listdir(warm_dir(db))
    except OSError:
        return counts
    for entry in entries:
        if m := _DIR_RE.fullmatch(entry):
            counts[m[1]] = counts.get(m[1], 0) + 1
    return counts


def state_dirs(db: Database) -> list[Path]:
    """Every warm state folder."""
    try:
        return sorted(p for p in warm_dir(db).iterdir() if _DIR_RE.fullmatch(p.name))
    except OSError:
        return []


def remove_states_of(db: Database, keep: set[str], dry_run: bool = False) -> list[tuple[Path, int]]:
    """Remove the warm states of images not in ``keep``; (folder, bytes) of each. Held under
    the database lock by the caller (prune), so no state of a kept image is being written."""
    removed = []
    for path in state_dirs(db):
        if path.name[:64] in keep:
            continue
        size = sum(f.stat().st_blocks * 512 for f in path.iterdir() if f.is_file())
        removed.append((path, size))
        if not dry_run:
            remove_tree(path)
    return removed


# The machine ---------------------------------------------------------------------

_MACHINE_ALIAS = re.compile(r"^pc\s+.*\(alias of (pc-i440fx-[0-9.]+)\)", re.MULTILINE)


async def qemu_facts(qemu: str) -> tuple[str, str] | None:
    """(version line, the versioned machine type ``pc`` stands for) of QEMU binary ``qemu``,
    cached machine-wide by the binary's path, size and mtime; None if it cannot be told."""

    from .hostinfo import machine_cache_dir, which

    path = which(qemu)
    if path is None:
        return None
    st = os.stat(path)
    key = f"{path}:{st.st_size}:{int(st.st_mtime)}"
    cache = machine_cache_dir() / "qemu-machine.json"
    cached = read_json(cache)
    if isinstance(cached, dict) and cached.get("key") == key and isinstance(cached.get("machine"), str):
        return str(cached["version"]), str(cached["machine"])
    from .tools import run_tool

    version = (await run_tool([path, "--version"])).splitlines()[0].strip()
    match = _MACHINE_ALIAS.search(await run_tool([path, "-machine", "help"]))
    if match is None:
        return None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache, {"key": key, "version": version, "machine": match[1]})
    except OSError:
        pass
    return version, match[1]


def eligible(vm_dir: Path, image_id: str | None, arch: str | None, drives: tuple[Drive, ...],
             snapshot: bool) -> bool:
    """Whether a start of this VM may use or make a warm state: an x86_64 VM of an image,
    never started (its disk is the image's), with only its disk attached."""
    from .hostinfo import host_arch

    return (image_id is not None and not snapshot and host_arch() == "x86_64" and arch in (None, "x86_64")
            and [d.kind for d in drives] == ["disk"] and drives[0].filename == layout.VM_DISK
            and not (vm_dir / layout.VM_QEMU_LOG).exists())


# Saving ------------------------------------------------------------------------------


async def save(db: Database, vm_dir: Path, machine: Machine, note: Note | None = None) -> Path | None:
    """Save running VM ``vm_dir`` (SSH-ready, nobody logged in yet) as the warm state of
    ``machine``: pause, migrate to a file, copy the disk overlay, resume. Returns the
    state's folder, or None when it was not saved (another process made it meanwhile, or
    somebody logged in first); failures to save are reported through ``note`` and never
    fail the start."""
    import asyncio
    import shutil

    from . import vmkey
    from .qemu import monitor

    target = state_dir(db, machine)
    if target.is_dir():
        return None
    run = read_json(vm_dir / layout.VM_RUN)
    if isinstance(run, dict) and isinstance(run.get("ssh_port"), int) and not await _settle(run["ssh_port"]):
        if note:
            note(Notice("no warm state saved: the guest cannot reseed its RNG (it has neither perl nor python3 "
                        "for the RNDRESEEDCRNG ioctl), so its clones would all read the same random numbers; "
                        "its VMs boot cold"))
        return None
    fd = os.open(vm_dir / layout.VM_SSH_KEY_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        await flock_async(fd)  # no first contact while we save
        if vmkey.KeyState.read(vm_dir).own:
            return None  # somebody logged in already: the guest is no longer pristine
        with db.staging("warm") as staging:
            state = staging.path / STATE
            started = time.monotonic()
            async with monitor.session(vm_dir / layout.VM_QMP) as client:
                await monitor.run(client, "stop")
                try:
                    await monitor.run(client, "migrate-set-parameters", {"max-bandwidth": 1 << 40})
                    await monitor.run(client, "migrate", {"uri": "exec:cat > " + shlex.quote(str(state))})
                    await _wait_migration(client)
                    await asyncio.to_thread(shutil.copyfile, vm_dir / layout.VM_DISK, staging.path / DISK)
                finally:
                    await monitor.run(client, "cont")
            paused = time.monotonic() - started
            atomic_write_json(staging.path / META, {
                "format": FORMAT, "machine": machine.as_json(), "created": time.time(),
                "paused_seconds": round(paused, 3), "state_bytes": state.stat().st_size,
            })

            def place() -> bool:
                with db.lock():
                    if target.exists():
                        return False
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(staging.path, target)
                    return True

            placed = await asyncio.to_thread(place)
        return target if placed else None
    except MinivirtError as e:
        if note:
            note(Notice(f"could not save a warm state: {e.message}", WARNING))
        return None
    finally:
        os.close(fd)


async def _settle(port: int) -> bool:
    """Wait until the guest has finished starting up, so clones resume a quiet machine: a
    guest whose SSH server answers may still be booting (Debian: cloud-init's last stages,
    which take minutes under emulation and would run again in every clone, restarting
    services under their user). A login with the well-known key (it is not replaced:
    nobody has made this VM their own yet) asks systemd, where there is one, to wait until
    the boot is done. The login also makes a server that makes its host keys on first use
    (dropbear -R) make them now, once, rather than in every clone. Best effort: a guest
    that refuses the login or takes longer than :data:`SETTLE_TIMEOUT` is saved as it is.

    False when the guest said it cannot reseed its RNG (:data:`.clonesafety.RESEED`): then no
    state may be saved, for its clones could not be made safe; True otherwise."""
    import asyncio

    import asyncssh

    from . import ssh

    try:  # one attempt (ssh.connect retries a closed connection: a guest without a server closes them all)
        conn = await asyncio.wait_for(asyncssh.connect(
            ssh.LOOPBACK, port, username=ssh.USER, client_keys=[ssh.client_key(ssh.private_key_bytes())],
            known_hosts=None, agent_path=None, config=None, preferred_auth="publickey",
            server_host_key_algs=ssh.HOST_KEY_ALGS), 30)
    except (asyncssh.Error, OSError, TimeoutError):
        return True
    try:
        _, output = await asyncio.wait_for(ssh.capture(conn, SETTLE), SETTLE_TIMEOUT)
    except Exception:  # (a connection lost, a refused session, the timeout): saved as it is
        return True
    finally:
        conn.close()
    return NO_RESEED not in output


async def _wait_migration(client: Any) -> None:
    import asyncio

    from .qemu import monitor

    loop = asyncio.get_running_loop()
    deadline = loop.time() + SAVE_TIMEOUT
    while True:
        info = await monitor.run(client, "query-migrate")
        status = info.get("status") if isinstance(info, dict) else None
        if status == "completed":
            return
        if status in ("failed", "cancelled") or loop.time() > deadline:
            raise ExternalError(f"saving the machine state {status or 'timed out'}: {info.get('error-desc', '')}")
        await asyncio.sleep(0.01)


# Restoring -----------------------------------------------------------------------------


def check_state(db: Database, machine: Machine) -> Path | None:
    """The folder of a usable-looking warm state of ``machine`` (None when there is none);
    :class:`ExternalError` says why one that exists cannot be used."""
    folder = state_dir(db, machine)
    if not folder.is_dir():
        return None
    meta = read_json(folder / META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ExternalError("its warm.json is missing or unreadable")
    if meta.get("machine") != machine.as_json():
        raise ExternalError("it was saved from another machine (settings differ)")
    state = folder / STATE
    if not state.is_file() or state.stat().st_size != meta.get("state_bytes"):
        raise ExternalError("its state file is missing or has the wrong size")
    if not (folder / DISK).is_file():
        raise ExternalError("its disk is missing")
    return folder


def discard(db: Database, folder: Path) -> None:
    """Remove an unusable warm state (the next cold start makes it again)."""
    trash = db.staging_dir / f"warm-discard-{secrets.token_hex(6)}"
    with db.lock():
        if not folder.is_dir():
            return
        os.rename(folder, trash)
    remove_tree(trash)


def install_disk(folder: Path, vm_dir: Path) -> None:
    """Make the state's saved overlay the VM's disk (a copy: the VM owns it)."""
    import shutil

    tmp = vm_dir / f".warm-disk-{secrets.token_hex(4)}"
    shutil.copyfile(folder / DISK, tmp)
    os.replace(tmp, vm_dir / layout.VM_DISK)


def incoming_args(folder: Path, machine: Machine) -> list[str]:
    """QEMU arguments that restore the state instead of booting."""
    return ["-machine", machine.machine_type, "-incoming", "exec:cat " + shlex.quote(str(folder / STATE))]


async def wait_restored(vm_dir: Path, pid: int) -> None:
    """Wait until the restoring QEMU runs the guest (resuming it if the state was paused);
    :class:`ExternalError` if it exits or does not finish in time (a state from another CPU
    model can hang without a word)."""
    import asyncio

    from .qemu import monitor, process

    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESTORE_TIMEOUT

    def waited_too_long() -> bool:
        if loop.time() > deadline:
            raise ExternalError(f"the restore did not finish in {RESTORE_TIMEOUT:.0f} s")
        return not process.pid_alive(pid, vm_dir)

    while not waited_too_long():
        try:
            # One conversation, asked until the state is in: a new one each time would cost
            # a connection and a handshake per look while the restore needs the host's CPU.
            async with monitor.session(vm_dir / layout.VM_QMP) as client:
                while not waited_too_long():
                    status = (await monitor.run(client, "query-status")).get("status")
                    if status in ("paused", "postmigrate"):
                        await monitor.run(client, "cont")
                        return
                    if status == "running":
                        return
                    await asyncio.sleep(0.01)
        except ExternalError:
            await asyncio.sleep(0.01)
    raise ExternalError("QEMU exited while restoring: " + (process.log_tail(vm_dir / layout.VM_QEMU_LOG, 1)
                                                           or "no reason given"))
