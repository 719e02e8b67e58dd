"""VMs: a copy-on-write disk over an image, run by one detached QEMU each.

A VM's folder holds its ``config.json`` (compatible with the original minivirt:
``image``, ``memory``, ``disk``, ``ports``, ``resources``; ours adds ``cpus``, and ``owner``
on throw-away VMs), its ``disk.qcow2`` overlay whose backing file is the image's disk by
relative path, and while it runs: pid file, QMP and serial sockets, logs, ``run.json``, ``ssh-config``.
State is derived on every look from the pid file and the process, never remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import accel, drives, layout, serial_log, vmkey, warm, warmstart
from .database import Database, Staging, read_json
from .errors import Conflict, ExternalError, InvalidInput, MinivirtError, NotFound
from .fsutil import atomic_write_json, flock_async, remove_tree
from .hostinfo import host_arch, qemu_system_name, which
from .images import Image, ImageStore
from .names import validate_vm_name
from .owners import Owner
from .ports import LOOPBACK, PortForward, check_port_free, free_ports, parse_forward
from .qemu import firmware, process
from .qemu.command import Drive, LaunchSpec, qemu_argv
from .tools import run_tool

# The settings and status types live in vmconfig; re-exported here for callers.
from .vmconfig import (
    BROKEN,
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    RUNNING,
    STOP_FORCED,
    STOP_GRACEFUL,
    STOP_NOT_RUNNING,
    STOP_TIMEOUT,
    STOPPED,
    VmConfig,
    VmStatus,
    parse_cpus,
    parse_disk_size,
    parse_memory,
    read_config,
)
from .vmssh import VmSsh

if TYPE_CHECKING:
    import asyncssh

    from .seed import CloudInit

COMMIT_SSH_WAIT = 300.0  # a commit that must boot the VM to put the well-known key back

__all__ = ["BROKEN", "DEFAULT_CPUS", "DEFAULT_MEMORY_MB", "RUNNING", "STOPPED", "STOP_FORCED", "STOP_GRACEFUL",
           "STOP_NOT_RUNNING", "STOP_TIMEOUT", "VmConfig", "VmManager", "VmStatus", "parse_memory"]


class VmManager:
    """Create, run and remove the VMs of a database."""

    def __init__(self, db: Database, images: ImageStore) -> None:
        self.db = db
        self.images = images
        self._accel: dict[str, accel.AccelChoice] = {}  # by guest architecture
        self.ssh = VmSsh(self)  # this process's SSH reach into the VMs (see vmssh.py)

    # Looking ---------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.db.vms_dir / name

    def names(self) -> list[str]:
        """Names of every VM, sorted."""
        try:
            return sorted(e.name for e in os.scandir(self.db.vms_dir) if e.is_dir() and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def check(self, name: str) -> tuple[VmConfig | None, list[str]]:
        """The VM's config (None when unusable) and what is wrong with the VM: its config,
        its image, its disk. Changes nothing (``fsck`` uses it too)."""
        vm_dir = self.path(name)
        try:
            config = read_config(vm_dir)
        except InvalidInput as e:
            return None, [e.message]
        problems = []
        if config.image and not (self.db.images_dir / config.image).is_dir():
            problems.append(f"its image {config.image[:12]} is missing")
        if config.disk and not (vm_dir / layout.VM_DISK).is_file():
            problems.append("its disk.qcow2 is missing")
        return config, problems

    def status(self, name: str, tags: dict[str, str] | None = None) -> VmStatus:
        """The VM's state derived now; stale runtime files of a dead QEMU are removed.

        A VM whose config is malformed is BROKEN, with the reason; it never stops the
        other VMs from being listed. ``tags`` ({tag: image id}) saves a scan of the images."""
        vm_dir = self.path(name)
        if not vm_dir.is_dir():
            raise NotFound(f"no VM named {name!r}", hint="`miv ps -a` lists the VMs.")
        config, problems = self.check(name)
        label = config.image_reference(tags if tags is not None else self.images.tags()) if config else None
        pid = process.running_pid(vm_dir)
        if pid is None:
            if (vm_dir / layout.VM_PID).exists() or (vm_dir / layout.VM_QMP).exists():
                process.clean_runtime(vm_dir)  # QEMU died (e.g. SIGKILL): stale files
            state = BROKEN if problems else STOPPED
            return VmStatus(name, vm_dir, config, state, "; ".join(problems), image_label=label,
                            problems=tuple(problems))
        run = read_json(vm_dir / layout.VM_RUN)
        run = run if isinstance(run, dict) else {}
        state = RUNNING
        if not (vm_dir / layout.VM_QMP).exists():
            problems.append("QEMU runs but its QMP socket is gone")
            state = BROKEN
        return VmStatus(
            name, vm_dir, config, state, "; ".join(problems), pid=pid,
            ssh_port=_typed(run.get("ssh_port"), int), net_probe_port=_typed(run.get("net_probe_port"), int),
            warm=_typed(run.get("warm"), str), started=_typed(run.get("started"), int | float),
            accel=_typed(run.get("accel"), str), image_label=label, problems=tuple(problems),
        )

    def list(self, include_stopped: bool = True, tags: dict[str, str] | None = None) -> list[VmStatus]:
        """Every VM's status (only running ones unless ``include_stopped``).

        ``tags`` ({tag: image id}) saves a scan of the images when the caller has one."""
        if tags is None:
            tags = self.images.tags()
        result = []
        for name in self.names():
            try:
                st = self.status(name, tags)
            except NotFound:
                continue  # removed while we looked
            if include_stopped or st.running:
                result.append(st)
        return result

    # Locking ---------------------------------------------------------------

    @asynccontextmanager
    async def _vm_lock(self, name: str) -> AsyncIterator[Path]:
        """Hold the VM's own lock (a flock on its folder) across start/stop/kill."""
        vm_dir = self.path(name)
        try:
            fd = os.open(vm_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise NotFound(f"no VM named {name!r}", hint="`miv ps -a` lists the VMs.") from e
        try:
            await flock_async(fd)
            yield vm_dir
        finally:
            os.close(fd)

    def locked(self, name: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """Hold VM ``name``'s lock for the block (what start, stop and kill hold): for
        changes that must not race them. Yields the VM's folder."""
        return self._vm_lock(name)

    # Creating --------------------------------------------------------------

    async def create(
        self,
        image_ref: str | None,
        name: str,
        memory: int | str = DEFAULT_MEMORY_MB,
        cpus: int = DEFAULT_CPUS,
        disk_size: str | None = None,
        ports: Iterable[str | PortForward] = (),
        empty: bool = False,
        throwaway: bool = False,
        isolated: bool = False,
        arch: str | None = None,
        cloud_init: CloudInit | None = None,
    ) -> VmStatus:
        """Create VM ``name`` from an image: a qcow2 overlay over the image's disk.

        With no image, ``disk_size`` makes an empty disk; ``empty`` allows a VM with no
        disk at all (a recipe then attaches what it needs). A ``throwaway`` VM records
        this process as its owner: once the process is gone, the VM is an orphan that
        ``fsck`` reports and ``prune`` removes. ``isolated``: the guest can reach neither
        the host nor the network (forwards into it still work). ``arch``: the guest's
        architecture (the image's, which it must match; the host's for a VM without image).
        ``cloud_init``: the VM gets its own NoCloud seed (see :mod:`~minivirt_core.seed`) as a CD-ROM."""
        validate_vm_name(name)
        memory_mb = parse_memory(memory)
        cpus = parse_cpus(cpus)
        disk_bytes = parse_disk_size(disk_size) if disk_size else None
        forwards = tuple(p if isinstance(p, PortForward) else parse_forward(p) for p in ports)
        if len({f.host_port for f in forwards}) != len(forwards):
            raise InvalidInput("two port forwards use the same host port")
        self.db.ensure()
        if self.path(name).exists():
            raise Conflict(f"a VM named {name!r} already exists", hint="Choose another name, or `miv destroy` it.")
        image: Image | None = self.images.resolve(image_ref) if image_ref else None
        image_config = image.config if image is not None else None  # checked: refuses an unsafe image
        arch = _vm_arch(arch, image)
        if image is None and not disk_size and not empty:
            raise InvalidInput("a VM without an image needs --disk SIZE")
        with self.db.staging("vm") as staging:
            has_image_disk = image is not None and image.disk_path is not None
            args = overlay_command(image.id if image and has_image_disk else None, disk_bytes)
            if args:  # else no disk to make (an installer ISO image, or an empty build VM)
                await run_tool(args, cwd=staging.path)
            resources = []
            if image is not None and image_config and (iso := drives.image_iso_path(image.id, image_config)):
                resources.append({"type": "cdrom", "filename": iso})
            if cloud_init is not None:
                from .seed import write_seed

                seed_iso = await asyncio.to_thread(write_seed, staging.path, name, cloud_init)
                resources.append({"type": "cdrom", "filename": seed_iso})
            config = VmConfig(
                image=image.id if image else None, memory_mb=memory_mb, cpus=cpus, disk=bool(args),
                ports=forwards, resources=tuple(resources), owner=Owner.current() if throwaway else None,
                isolated=isolated, image_ref=image_ref if image is not None else None, arch=arch,
            )
            atomic_write_json(staging.path / layout.VM_CONFIG, config.as_json())

            def place() -> None:  # in a thread: the lock may wait for another miv
                with self.db.lock():
                    if image is not None and not (self.db.images_dir / image.id).is_dir():
                        raise NotFound(f"image {image_ref} was removed meanwhile")
                    if self.path(name).exists():
                        raise Conflict(f"a VM named {name!r} already exists")
                    os.rename(staging.path, self.path(name))

            await asyncio.to_thread(place)
        return self.status(name)

    def update_config(self, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to the VM's raw config and write it back atomically."""
        path = self.path(name) / layout.VM_CONFIG
        raw = read_json(path)
        if not isinstance(raw, dict):
            raise NotFound(f"VM {name!r} has no readable config")
        change(raw)
        atomic_write_json(path, raw)

    def disown(self, name: str) -> None:
        """Keep a throw-away VM for good: it no longer belongs to the process that made it,
        so it never becomes an orphan (a build VM kept on failure)."""
        self.update_config(name, lambda raw: raw.pop("owner", None))

    # Running ---------------------------------------------------------------

    async def accelerator(self, arch: str | None = None) -> accel.AccelChoice:
        """The accelerator VMs of ``arch`` (the host's by default) start with: the host's
        (probed once, cached machine-wide) for its own architecture, TCG for another."""
        arch = arch or host_arch()
        if arch not in self._accel:
            self._accel[arch] = await accel.choose_for(arch)
        return self._accel[arch]

    def arch_of(self, config: VmConfig) -> str:
        """The guest architecture of a VM: recorded in its config, else its image's, else the host's."""
        if config.arch:
            return config.arch
        try:
            return self.images.get(config.image).arch if config.image else host_arch()
        except NotFound:
            return host_arch()

    async def start(self, name: str, snapshot: bool = False, wait_for_ssh: float | None = None,
                    cold: bool = False, note: warm.Note | None = None,
                    loadvm: str | None = None) -> VmStatus:
        """Boot the VM in a detached QEMU; optionally wait for its SSH server.

        A never-started VM resumes its image's warm state when there is one (see warm.py)
        unless ``cold``; the first such start boots and, once SSH answers (``wait_for_ssh``),
        saves the state. ``note`` hears what happened (a state made, a fallback and why).
        ``loadvm``: resume this snapshot of the VM (one with memory) instead of booting.

        A throw-away VM is logged into right after (``miv run``, a recipe's VMs): its start
        keeps what it opened to the guest for that login (see :meth:`ssh_session`)."""
        plan: warm.Machine | None = None
        restored = False
        async with self._vm_lock(name) as vm_dir:
            st = self.status(name)
            if st.running:
                raise Conflict(f"VM {name!r} is already running", hint=f"`miv console {name}` or `miv ssh {name}`.")
            if st.state == BROKEN or st.config is None:
                hint = (f"Fix {vm_dir / layout.VM_CONFIG}, or remove the VM: `miv destroy {name}`."
                        if st.config is None else "`miv fsck` tells more.")
                raise Conflict(f"VM {name!r} cannot start: {st.reason}", hint=hint)
            config = st.config
            for forward in config.ports:
                check_port_free(forward.host_port)
            attached = self.checked_drives(name, vm_dir, config)
            arch = self.arch_of(config)
            choice = await self.accelerator(arch)
            serial_log.record(vm_dir, serial_log.START)  # where this boot's output begins (`miv logs --since`)
            if not cold and loadvm is None:
                plan = await warmstart.plan(self, vm_dir, config, attached, snapshot, choice)
            if plan is not None:
                restored = await warmstart.restore(self, name, vm_dir, config, plan, choice, note)
            if not restored:
                used = await self.launch(name, vm_dir, config, attached, snapshot, choice, plan,
                                         ("-loadvm", loadvm) if loadvm else ())
                if plan is not None and tuple(used.qemu_args) != plan.accel_args:
                    plan = None  # the accelerator failed and TCG runs it: not the machine planned
                if wait_for_ssh:
                    vmkey.prepare_login(vm_dir)  # while it boots (not sooner: it would slow the launch)
        if restored:
            if (handed := await warmstart.make_safe(self, name, wait_for_ssh or 120.0, note)) is not None:
                self.ssh.hand_off(name, handed)
        elif wait_for_ssh:  # a state is saved only when SSH answers: a guest that has none gets none
            # A state saved with a connection open would carry it into every clone: keep none then.
            await self.wait_for_ssh(name, wait_for_ssh, keep=config.owner is not None and plan is None)
            if plan is not None and await warm.save(self.db, vm_dir, plan, note) and note:
                note(warm.SAVED)
        return self.status(name)

    async def launch(self, name: str, vm_dir: Path, config: VmConfig, attached: tuple[Drive, ...], snapshot: bool,
                     choice: accel.AccelChoice, plan: warm.Machine | None = None,
                     extra_args: tuple[str, ...] = ()) -> accel.AccelChoice:
        """Launch QEMU for the VM (the caller holds its lock: :meth:`locked`) and write its
        run.json; returns the accelerator it runs with (TCG when the chosen one failed).
        ``plan``: the warm machine it must match; ``extra_args`` (a restore) go to QEMU."""
        if plan is not None and not extra_args:
            extra_args = ("-machine", plan.machine_type)  # pinned, as the warm state will record it
        restoring = "-incoming" in extra_args or "-loadvm" in extra_args  # a state for this accelerator
        arch = self.arch_of(config)
        qemu = _emulator(arch)
        boot = firmware.require(arch)
        for attempt in range(3):
            ssh_port, probe_port = free_ports(2)
            spec = LaunchSpec(name, config.memory_mb, config.cpus, choice.qemu_args, ssh_port,
                              config.ports, attached, snapshot, arch=arch, isolated=config.isolated,
                              firmware=boot.qemu_args if boot else (), extra_args=extra_args,
                              net_probe_port=probe_port)
            try:
                pid = await process.launch(qemu_argv(spec, qemu), vm_dir)
                break
            except ExternalError as e:
                text = str(e)
                if (f":{ssh_port}-" in text or f":{probe_port}-" in text) and attempt < 2:
                    continue  # somebody took one of our free ports in between: pick others
                if "host forwarding rule" in text:
                    raise Conflict(f"cannot forward a port: {e.message}",
                                   hint="A host port is in use; choose another with --port.") from e
                if choice.accel != "tcg" and "MINIVIRT_ACCEL" not in os.environ and not restoring:
                    # The accelerator failed for real: fall back, and remember it (for this
                    # architecture only: another one's VMs keep their own accelerator).
                    choice = self._accel[arch] = accel.AccelChoice("tcg", f"{choice.accel} failed to start a VM", arch)
                    continue
                raise
        vmkey.write_ssh_config_at_start(vm_dir, name, ssh_port)
        atomic_write_json(vm_dir / layout.VM_RUN, {
            "pid": pid, "ssh_port": ssh_port, "net_probe_port": probe_port, "started": time.time(),
            "accel": choice.accel, "snapshot": snapshot, "arch": arch,
        })
        return choice

    def checked_drives(self, name: str, vm_dir: Path, config: VmConfig) -> tuple[Drive, ...]:
        """The VM's checked drives; a VM whose image or attached files are unsafe does not start."""
        image = self.images.get(config.image) if config.image else None
        try:
            return drives.vm_drives(vm_dir, config, image.config if image else None)
        except InvalidInput as e:
            raise InvalidInput(f"VM {name!r} cannot start: {e.message}",
                               hint=e.hint or "`miv fsck` lists the problems.") from e

    async def wait_for_ssh(self, name: str, timeout: float, keep: bool = False) -> int:
        """Wait until the running VM's SSH server answers; returns its port (see :meth:`VmSsh.wait`)."""
        return await self.ssh.wait(name, timeout, keep)

    async def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> str:
        """Power off gracefully (ACPI), then QMP quit, then SIGKILL. Returns what it took:
        :data:`STOP_GRACEFUL`, :data:`STOP_FORCED`, or :data:`STOP_NOT_RUNNING` (nothing to do)."""
        await self.ssh.forget(name)
        async with self._vm_lock(name) as vm_dir:
            pid = process.running_pid(vm_dir)
            if pid is None:
                self.status(name)  # cleans stale files
                return STOP_NOT_RUNNING
            from .qemu import monitor

            qmp = vm_dir / layout.VM_QMP
            await self._put_back_well_known_key(vm_dir)
            graceful = False
            if await monitor.try_execute(qmp, "system_powerdown"):
                graceful = await process.wait_exit(pid, vm_dir, timeout)
            if not graceful:
                await monitor.try_execute(qmp, "quit")
                if not await process.wait_exit(pid, vm_dir, 5):
                    process.terminate(pid, vm_dir, signal.SIGKILL)
                    await process.wait_exit(pid, vm_dir, 5)
            process.clean_runtime(vm_dir)
            serial_log.record(vm_dir, serial_log.STOP)
            return STOP_GRACEFUL if graceful else STOP_FORCED

    async def kill(self, name: str, flush: bool = True) -> bool:
        """Stop at once: QMP quit (QEMU flushes the disk), SIGKILL if it does not answer;
        SIGKILL straight away unless ``flush`` (a disk about to be removed).
        False when it was not running (nothing to do)."""
        await self.ssh.forget(name)
        async with self._vm_lock(name) as vm_dir:
            pid = process.running_pid(vm_dir)
            if pid is not None:
                from .qemu import monitor

                if not flush or not await monitor.try_execute(vm_dir / layout.VM_QMP, "quit", timeout=2):
                    process.terminate(pid, vm_dir, signal.SIGKILL)
                if not await process.wait_exit(pid, vm_dir, 5):
                    process.terminate(pid, vm_dir, signal.SIGKILL)
                    await process.wait_exit(pid, vm_dir, 5)
                serial_log.record(vm_dir, serial_log.STOP)
            process.clean_runtime(vm_dir)
            return pid is not None

    async def destroy(self, name: str) -> None:
        """Kill the VM if it runs and remove its folder."""
        if not self.path(name).is_dir():
            raise NotFound(f"no VM named {name!r}", hint="`miv ps -a` lists the VMs.")
        await self.kill(name, flush=False)  # its disk goes: nothing to flush

        def remove() -> None:  # in a thread: the lock may wait, and a big folder takes a while
            with self.db.lock():
                # Move it out of vms/ first, so a half-removed VM is never listed.
                trash = self.db.staging_dir / f"destroy-{secrets.token_hex(6)}"
                os.rename(self.path(name), trash)
            remove_tree(trash)

        await asyncio.to_thread(remove)

    # SSH keys (see vmkey.py) ---------------------------------------------------

    async def ssh_connect(self, name: str, wait: float = 120.0) -> asyncssh.SSHClientConnection:
        """A root SSH connection to running VM ``name`` with the VM's own key (see :meth:`VmSsh.connect`)."""
        return await self.ssh.connect(name, wait)

    def ssh_session(self, name: str, wait: float = 120.0) -> contextlib.AbstractAsyncContextManager[
            asyncssh.SSHClientConnection]:
        """A root SSH connection to running VM ``name`` for a block of work (see :meth:`VmSsh.session`)."""
        return self.ssh.session(name, wait)

    def ssh_key_replaced(self, name: str) -> bool:
        """True while the VM's disk accepts only the VM's own key (a commit would boot it
        briefly to put the well-known key back)."""
        state = vmkey.KeyState.read(self.path(name))
        return state.own and not state.keep_well_known

    def keep_well_known_key(self, name: str) -> None:
        """Never replace the well-known key in VM ``name`` (a recipe's build VM)."""
        vmkey.keep_well_known(self.path(name))

    async def _put_back_well_known_key(self, vm_dir: Path, wait: float | None = None) -> None:
        """Before a graceful power-off: close the VM's forwarded ports, then put the
        well-known key back in the guest. Best effort (on failure, ``commit`` does it later),
        unless ``wait`` (seconds for SSH) is given: then failures raise."""
        if not vmkey.KeyState.read(vm_dir).own:
            return
        run = read_json(vm_dir / layout.VM_RUN) or {}
        port = run.get("ssh_port")
        if run.get("snapshot") is True or not isinstance(port, int):
            return  # this run's writes are discarded: the disk keeps what it had
        from .qemu import monitor

        try:
            host_ports = [port, *(f.host_port for f in read_config(vm_dir).ports)]
        except InvalidInput:
            host_ports = [port]

        async def close_ports() -> None:  # nobody may log in with the well-known key from now on
            for host_port in host_ports:
                with contextlib.suppress(ExternalError):
                    await monitor.execute(vm_dir / layout.VM_QMP, "human-monitor-command",
                                          {"command-line": f"hostfwd_remove net0 tcp:{LOOPBACK}:{host_port}"})

        try:
            await self.wait_for_ssh(vm_dir.name, wait or 15)  # a loaded host can be slow to answer
            await vmkey.put_back(vm_dir, port, close_ports)
        except MinivirtError:
            if wait is not None:
                raise

    async def _commit_with_well_known_key(self, name: str) -> None:
        """A VM stopped without putting the well-known key back (killed, or powered off from
        inside) is booted briefly to do it: an image must open with the well-known key."""
        if not self.ssh_key_replaced(name):
            return
        try:
            await self.start(name)
            await self._put_back_well_known_key(self.path(name), wait=COMMIT_SSH_WAIT)
        except MinivirtError as e:
            if self.status(name).running:
                await self.kill(name)
            raise ExternalError(
                f"VM {name!r} accepts only its own SSH key, and putting the well-known key back failed: {e.message}",
                hint=f"An image must open with the well-known key. Start it and stop it gracefully "
                     f"(`miv start {name} -d --wait-for-ssh 300 && miv stop {name}`), then commit.",
            ) from e
        await self.stop(name)

    # Images from VMs ---------------------------------------------------------

    async def commit(self, name: str, tags: Iterable[str] = (), hold: Staging | None = None) -> Image:
        """Make a new image of the (stopped) VM's disk, flattened: it has no backing file."""
        from . import imageid

        tags = list(tags)
        st = self.status(name)
        if st.running:
            raise Conflict(f"VM {name!r} is running", hint=f"Stop it first: `miv stop {name}`.")
        if not (st.path / layout.VM_DISK).is_file():
            raise NotFound(f"VM {name!r} has no disk to commit")
        await self._commit_with_well_known_key(name)
        with self.db.staging("commit") as staging:
            await run_tool(["qemu-img", "convert", "-O", "qcow2", str(st.path / layout.VM_DISK),
                             str(staging.path / layout.IMAGE_DISK)], cwd=st.path)
            atomic_write_json(staging.path / layout.IMAGE_CONFIG,
                              {"disk": True, "arch": self.arch_of(st.config) if st.config else host_arch()})
            image_id = await asyncio.to_thread(imageid.compute_id, staging.path)
            return await asyncio.to_thread(self.images.commit_staging, staging, image_id, tags, hold=hold)

    # Ephemeral -------------------------------------------------------------

    def ephemeral_name(self, prefix: str = "run") -> str:
        """A fresh VM name for ``run`` and builds."""
        return f"{prefix}-{secrets.token_hex(4)}"


def _vm_arch(arch: str | None, image: Image | None) -> str:
    """A new VM's architecture: ``arch`` if given (checked against its image's), else its image's,
    else the host's."""
    from .imageconfig import ARCHES

    if arch is not None and arch not in ARCHES:
        raise InvalidInput(f"unknown architecture {arch!r}", hint=f"Use one of {', '.join(ARCHES)}.")
    if image is None:
        return arch or host_arch()
    if arch is not None and arch != image.arch:
        raise InvalidInput(f"image {image.label} is for {image.arch}, not {arch}")
    return image.arch


def _emulator(arch: str) -> str:
    """The path of ``qemu-system-<arch>``; missing, a :class:`NotFound` naming what to install."""
    name = qemu_system_name(arch)
    path = which(name)
    if path is None:
        package = {"x86_64": "qemu-system-x86", "aarch64": "qemu-system-arm"}.get(arch, "qemu-system")
        raise NotFound(f"{name} is not installed: {arch} VMs cannot run here",
                       hint=f"Install it: apt-get install {package} (Debian/Ubuntu), dnf install {name} "
                            "(Fedora), brew install qemu (macOS).")
    return path


def overlay_command(image_id: str | None, size: int | None) -> list[str]:
    """``qemu-img`` arguments that make a VM's ``disk.qcow2`` (run in its folder): an overlay
    over the image's disk by relative path, or an empty disk of ``size``; [] for neither."""
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if image_id is not None:
        args += ["-F", "qcow2", "-b", os.path.join("..", "..", layout.IMAGES, image_id, layout.IMAGE_DISK)]
    elif not size:
        return []
    return [*args, layout.VM_DISK, *([str(size)] if size else [])]


def _typed(value: Any, kind: Any) -> Any:
    """``value`` if it is an instance of ``kind`` (and not a bool), else None: run.json is a file."""
    return value if isinstance(value, kind) and not isinstance(value, bool) else None
