"""Running a recipe: a build VM, its steps, a new image, the recipe's tests, the tags.

The build VM gets a unique name (``build-<hex>``), so builds can run side by side; its
folder is the build folder (downloads, disks and ISOs land there). On success the VM's
disk becomes an image (flattened), every test runs in a fresh VM of it, and only then
is it tagged. On failure or cancellation the build VM is destroyed (unless
``keep_on_failure``), the new image is removed if nothing else uses it, and no staging
is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import layout, ssh
from ..cidata import write_cidata
from ..console import SerialConsole, strip_queries
from ..download import fetch
from ..ephemeral import ephemeral_vm
from ..errors import ExternalError, InvalidInput, MinivirtError, Timeout
from ..hostinfo import host_arch, interpolate_arch
from ..images import Image
from ..qemu import process
from ..tools import run_tool, stop_process_group
from ..vms import VmManager
from . import events, paths
from .placeholders import fill
from .schema import Recipe, Step
from .yamlsource import PathKey

EventCallback = Callable[[events.BuildEvent], None]
DEFAULT_SSH_WAIT = 300.0
DEFAULT_CONSOLE_WAIT = 300.0
POWEROFF_WAIT = 600.0
HOST_STOP_GRACE = 30.0  # how long a cancelled host step's commands may take to clean up
LAST_OUTPUT = 1200


class BuildFailed(MinivirtError):
    """A step or a test of the recipe failed; the message says which and shows output."""


@dataclass(frozen=True)
class BuildResult:
    image: Image
    seconds: float
    step_seconds: tuple[tuple[str, float], ...]


def _tail(data: bytes | bytearray, limit: int = LAST_OUTPUT) -> str:
    text = strip_queries(bytes(data[-limit:])).decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?>=]*[A-Za-z]", "", text).replace("\r", "")
    return "\n".join("    " + line for line in text.strip().splitlines()[-15:])


class _ConsoleSession:
    """The build VM's serial console: output pumped into a buffer, patterns awaited on it."""

    def __init__(self, console: SerialConsole, emit: EventCallback) -> None:
        self.console = console
        self.emit = emit
        self.buffer = bytearray()
        self.mark = 0
        self.closed = False
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while data := await self.console.read():
                self.buffer += data
                self.emit(events.Output("console", data))
                self._changed.set()
        except (OSError, ConnectionError):
            pass
        finally:
            self.closed = True
            self._changed.set()

    async def send(self, text: str) -> None:
        await self.console.write(text.encode())

    async def wait(self, pattern: str, timeout: float) -> None:
        regex = re.compile(pattern.encode(), re.DOTALL)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            match = regex.search(self.buffer, self.mark)
            if match:
                self.mark = match.end()
                return
            if self.closed:
                raise ExternalError(f"the VM stopped before /{pattern}/ appeared on its console")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Timeout(f"/{pattern}/ did not appear on the console within {timeout:g} s")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.console.close()


class Builder:
    """Builds one recipe into an image; reports progress through ``on_event``, always called
    on the event loop the build runs on."""

    def __init__(self, vms: VmManager, recipe: Recipe, on_event: EventCallback | None = None,
                 keep_on_failure: bool = False, arch: str | None = None) -> None:
        self.vms = vms
        self.images = vms.images
        self.db = vms.db
        self.recipe = recipe
        self.emit: EventCallback = on_event or (lambda event: None)
        self.keep_on_failure = keep_on_failure
        self.vm_name = vms.ephemeral_name("build")
        self.console: _ConsoleSession | None = None
        self.console_seen = bytearray()  # what the console showed last, for error messages
        self.requested_arch = arch
        self.arch = arch or host_arch()  # the guest architecture built: fixed when the build starts

    def _fill(self, text: str) -> str:
        return fill(text, self.arch)

    @property
    def vm_dir(self) -> Path:
        return self.vms.path(self.vm_name)

    async def build(self, tags: list[str] | None = None) -> BuildResult:
        """Run every step and test for the architecture asked for (else the base image's, else
        the host's); tag the image (``{arch}`` filled in) when all pass."""
        from ..imageconfig import ARCHES
        from ..names import validate_tag

        recipe = self.recipe
        if self.requested_arch is not None and self.requested_arch not in ARCHES:
            raise InvalidInput(f"unknown architecture {self.requested_arch!r}", hint=f"Use one of {', '.join(ARCHES)}.")
        if recipe.base:
            base_arch = self.images.resolve(recipe.base).arch
            if self.requested_arch not in (None, base_arch):
                raise InvalidInput(f"recipe {recipe.path.name} builds on {recipe.base}, an {base_arch} image: "
                                   f"it cannot build {self.requested_arch}",
                                   hint=f"Build {recipe.base} for {self.requested_arch} first, or leave out --arch.")
            self.arch = base_arch
        tags = [validate_tag(interpolate_arch(t, self.arch)) for t in tags or []]
        started = time.monotonic()
        self.emit(events.BuildStarted(str(recipe.path), len(recipe.steps), len(recipe.tests), self.vm_name))
        timings: list[tuple[str, float]] = []
        image: Image | None = None
        ok = False
        with self.db.staging("build") as hold:
            try:
                await self.vms.create(recipe.base, self.vm_name, memory=recipe.memory_mb, cpus=recipe.cpus,
                                      empty=True, throwaway=True, arch=self.arch)
                # Its steps work on the image-to-be, which must accept the well-known key.
                self.vms.keep_well_known_key(self.vm_name)
                for step in recipe.steps:
                    timings.append((step.title, await self._top_step(step)))
                self.emit(events.Note("committing the build VM's disk as an image"))
                t = time.monotonic()
                image = await self.vms.commit(self.vm_name, hold=hold)
                timings.append(("commit", time.monotonic() - t))
                for test in recipe.tests:
                    t = time.monotonic()
                    await self._test(image, test.name, test.run, test.expect, test.timeout)
                    timings.append((f"test: {test.name}", time.monotonic() - t))
                moved = await asyncio.to_thread(self.images.tag, image.id, tags) if tags else []
                ok = True
            finally:
                await self._cleanup(ok, image, hold.path / layout.HOLD)
        assert image is not None
        image = self.images.get(image.id)._replace(moved=tuple(c for c in moved if c.previous_id))
        seconds = time.monotonic() - started
        self.emit(events.BuildFinished(image.id, seconds, tuple(tags)))
        return BuildResult(image, seconds, tuple(timings))

    async def _cleanup(self, ok: bool, image: Image | None, hold_marker: Path) -> None:
        # Shielded: a second Ctrl-C must not leave the build VM behind half-destroyed.
        async def clean() -> None:
            if self.console is not None:
                await self.console.close()
                self.console = None
            if not self.vms.path(self.vm_name).exists():
                pass
            elif ok or not self.keep_on_failure:
                await self.vms.destroy(self.vm_name)
            else:
                await self.vms.kill(self.vm_name)
                self.vms.disown(self.vm_name)  # kept for the user: never an orphan to prune
                self.emit(events.Note(
                    f"kept the build VM {self.vm_name}: `miv start {self.vm_name}` then `miv console "
                    f"{self.vm_name}` or `miv ssh {self.vm_name}`; `miv destroy {self.vm_name}` when done"))
            if not ok and image is not None:
                hold_marker.unlink(missing_ok=True)  # our own hold must not keep it
                await asyncio.to_thread(self.images.remove_if_unused, image.id)

        await asyncio.shield(clean())

    # Steps ---------------------------------------------------------------

    async def _top_step(self, step: Step) -> float:
        total = len(self.recipe.steps)
        if step.if_arch and step.if_arch != self.arch:
            self.emit(events.StepSkipped(step.number, total, step.title, f"only for {step.if_arch}"))
            return 0.0
        self.emit(events.StepStarted(step.number, total, step.title))
        started = time.monotonic()
        try:
            coro = self._run_kind(step.uses, step.settings, step.path)
            if step.timeout:
                await asyncio.wait_for(coro, step.timeout)
            else:
                await coro
        except TimeoutError as e:
            raise BuildFailed(f"step {step.number} ({step.title}) did not finish within {step.timeout:g} s") from e
        except MinivirtError as e:
            detail = ""
            if isinstance(e, Timeout | ExternalError) and self.console_seen:
                detail = "\nlast console output:\n" + _tail(self.console_seen)
            raise BuildFailed(f"step {step.number} ({step.title}) failed: {e.message}{detail}", hint=e.hint) from e
        seconds = time.monotonic() - started
        self.emit(events.StepFinished(step.number, total, step.title, seconds))
        return seconds

    async def _run_kind(self, uses: str, settings: dict[str, Any], where: PathKey) -> None:
        """Run one step kind; ``where`` is the step's place in the recipe, for errors."""
        handler = getattr(self, f"_step_{uses}")
        await handler(where, **settings)

    def _refuse(self, where: PathKey, problem: str) -> InvalidInput:
        """A step's file reference refused when it runs, with the recipe's file and line."""
        return self.recipe.source.error(where, problem, hint=paths.RECIPE_FILE_HINT)

    def _attach(self, filename: str, attach: dict[str, str] | None) -> None:
        if not attach:
            return

        def add(config: dict[str, Any]) -> None:
            resources = [r for r in config.get("resources") or [] if r.get("filename") != filename]
            resources.append({"type": attach["type"], "filename": filename})
            config["resources"] = resources

        self.vms.update_config(self.vm_name, add)

    async def _step_create_disk_image(self, where: PathKey, size: str, filename: str = layout.VM_DISK,
                                      attach: dict[str, str] | None = None) -> None:
        await run_tool(["qemu-img", "create", "-q", "-f", "qcow2", str(self.vm_dir / filename), self._fill(size)])
        self._attach(filename, attach)

    async def _step_download(self, where: PathKey, url: str, filename: str | None = None, resize: str | None = None,
                             attach: dict[str, str] | None = None, sha256: str | None = None) -> None:
        url = self._fill(url)
        filename = self._fill(filename) if filename else paths.download_name(url)
        if url.startswith("file:"):
            url, problem = paths.file_url(self.recipe.directory, url)  # again: the folder may have changed
            if problem:
                raise self._refuse((*where, "with", "url"), f"'url' {problem}")
        last = [0.0]
        loop = asyncio.get_running_loop()

        def progress(p: Any) -> None:  # on the download thread: events go out on the loop
            now = time.monotonic()
            if now - last[0] >= 2:
                last[0] = now
                total = f" of {p.total >> 20} MiB" if p.total else ""
                loop.call_soon_threadsafe(self.emit, events.Note(f"downloading {url}: {p.done >> 20} MiB{total}"))

        cached = await fetch(url, self.db.cache_dir, sha256=sha256, progress=progress)
        dest = self.vm_dir / filename
        await asyncio.to_thread(_copy, cached, dest)
        if resize:
            await run_tool(["qemu-img", "resize", "-q", str(dest), self._fill(resize)])
        self._attach(filename, attach)

    async def _step_cloud_init_iso(self, where: PathKey, cloud_config: str, filename: str = "cloud-init.iso",
                                   attach: dict[str, str] | None = None) -> None:
        await asyncio.to_thread(write_cidata, self.vm_dir / filename, self._fill(cloud_config))
        self._attach(filename, attach)

    async def _step_detach(self, where: PathKey, filename: str) -> None:
        def remove(config: dict[str, Any]) -> None:
            config["resources"] = [r for r in config.get("resources") or [] if r.get("filename") != filename]

        self.vms.update_config(self.vm_name, remove)

    async def _step_host(self, where: PathKey, run: str, filename: str | None = None,
                         attach: dict[str, str] | None = None) -> None:
        env = {**os.environ, "MINIVIRT_RECIPE_DIR": str(self.recipe.directory),
               "MINIVIRT_BUILD_DIR": str(self.vm_dir), "MINIVIRT_ARCH": self.arch}
        # A process group of its own: a cancelled build (Ctrl-C, a step's timeout) stops the
        # whole command, not only its bash, whose children once went on writing into the
        # build VM's folder after the build had removed it.
        proc = await asyncio.create_subprocess_exec(
            "bash", "-e", "-o", "pipefail", "-c", self._fill(run), cwd=self.vm_dir, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        seen = bytearray()
        assert proc.stdout is not None
        try:
            while data := await proc.stdout.read(65536):
                seen += data
                del seen[:-LAST_OUTPUT]
                self.emit(events.Output("host", data))
            status = await proc.wait()
        except BaseException:
            await stop_process_group(proc.pid, HOST_STOP_GRACE)
            if proc.returncode is None:
                await proc.wait()
            raise
        if status != 0:
            raise ExternalError(f"the host command exited with status {status}; its last output:\n{_tail(seen)}")
        if filename and not (self.vm_dir / filename).is_file():
            raise ExternalError(f"the host command did not produce {filename}")
        if filename:
            self._attach(filename, attach)

    async def _step_run_console(self, where: PathKey, steps: list[dict[str, Any]]) -> None:
        st = await self.vms.start(self.vm_name)
        assert st.pid is not None
        self.console = _ConsoleSession(await SerialConsole.open(self.vm_dir), self.emit)
        try:
            for i, cstep in enumerate(steps):
                if cstep.get("if_arch") and cstep["if_arch"] != self.arch:
                    continue
                timeout = float(cstep.get("timeout") or DEFAULT_CONSOLE_WAIT)
                uses = cstep.get("uses")
                if uses == "ssh_poweroff":
                    await self._ssh_poweroff(timeout)
                elif uses:
                    await self._run_kind(uses, cstep.get("with") or {}, (*where, "with", "steps", i))
                if "send" in cstep:
                    await self.console.send(self._fill(cstep["send"]))
                if "wait" in cstep:
                    try:
                        await self.console.wait(self._fill(cstep["wait"]), timeout)
                    except Timeout as e:
                        raise Timeout(e.message + await self._qemu_state(), hint=e.hint) from e
            # The recipe's last console steps power the guest off; wait for QEMU to go.
            if not await process.wait_exit(st.pid, self.vm_dir, POWEROFF_WAIT):
                raise Timeout(f"the build VM did not power off within {POWEROFF_WAIT:g} s")
        finally:
            self.console_seen = self.console.buffer[-LAST_OUTPUT:]
            await self.console.close()
            self.console = None
        await self.vms.kill(self.vm_name)  # cleans runtime files

    async def _qemu_state(self) -> str:
        """What QEMU says of a guest that kept the console waiting, for the error: a guest
        that printed nothing is told apart from one that stopped (paused, panicked), and for a
        silent one, where its vCPUs are (firmware, kernel; halted or busy)."""
        from ..qemu import monitor

        silent = self.console is not None and not self.console.buffer
        said = "; the console printed nothing" if silent else ""
        try:
            async with monitor.session(self.vm_dir / layout.VM_QMP) as client:
                status = await monitor.run(client, "query-status")
                registers = await monitor.hmp(client, "info registers -a") if silent else ""
        except MinivirtError:  # a QEMU whose threads deadlocked answers nothing
            return f"{said} (QEMU did not answer its monitor within 5 s: QEMU itself may be hung)"
        vcpus = monitor.describe_vcpus(registers)
        where = f"; {vcpus}" if vcpus else ""
        return f"{said} (QEMU: the guest is {status.get('status', 'in an unknown state')}{where})"

    async def _ssh_poweroff(self, timeout: float) -> None:
        # The whole step's timeout for the command too: on a slow guest (a Debian first boot
        # under TCG on a loaded host) opening the session alone took more than 10 s, the
        # poweroff was never sent, and the build waited for a VM that never powered off.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = await self.vms.ssh_connect(self.vm_name, timeout)
        try:
            with contextlib.suppress(Exception):  # the guest closes the connection as it goes down
                await asyncio.wait_for(ssh.run(conn, "poweroff"), max(10.0, deadline - loop.time()))
        finally:
            conn.close()

    async def _step_run(self, where: PathKey, steps: list[dict[str, Any]],
                        wait_for_ssh: float = DEFAULT_SSH_WAIT) -> None:
        await self._with_ssh(wait_for_ssh, lambda conn: self._ssh_steps(conn, steps, where))

    async def _step_copy(self, where: PathKey, src: str, dest: str, wait_for_ssh: float = DEFAULT_SSH_WAIT) -> None:
        source = self._copy_source(src, where)  # before booting: a refused source costs no boot
        await self._with_ssh(wait_for_ssh, lambda conn: self._copy_in(conn, source, dest))

    async def _with_ssh(self, wait: float, body: Callable[[Any], Any]) -> None:
        await self.vms.start(self.vm_name, wait_for_ssh=wait)
        try:
            conn = await self.vms.ssh_connect(self.vm_name, wait)
            try:
                await body(conn)
                await ssh.run(conn, "sync")
            finally:
                conn.close()
        finally:
            await self.vms.stop(self.vm_name, timeout=60)

    def _copy_source(self, src: str, where: PathKey) -> Path:
        """The file a ``copy`` step's ``src`` names, checked again now: it must still be in the
        recipe's folder (a link to elsewhere may have appeared since the recipe was loaded)."""
        source, problem = paths.recipe_file(self.recipe.directory, self._fill(src))
        if problem:
            raise self._refuse((*where, "with", "src"), f"'src' {problem}")
        return source

    async def _copy_in(self, conn: Any, source: Path, dest: str) -> None:
        self.emit(events.Note(f"copying {source} to {dest}"))
        await ssh.copy(conn, str(source), self._fill(dest), upload=True)

    async def _ssh_steps(self, conn: Any, steps: list[dict[str, Any]], where: PathKey) -> None:
        for i, sstep in enumerate(steps, 1):
            if sstep.get("if_arch") and sstep["if_arch"] != self.arch:
                continue
            title = sstep.get("name") or f"SSH step {i}"
            if sstep.get("uses") == "copy":
                source = self._copy_source(sstep["with"]["src"], (*where, "with", "steps", i - 1))
                await self._copy_in(conn, source, sstep["with"]["dest"])
                continue
            seen = bytearray()

            def out(data: bytes, seen: bytearray = seen) -> None:
                seen.extend(data)
                del seen[:-LAST_OUTPUT]
                self.emit(events.Output("ssh", data))

            coro = ssh.run(conn, "set -e\n" + self._fill(sstep["run"]), out, out)
            status = await (asyncio.wait_for(coro, sstep["timeout"]) if sstep.get("timeout") else coro)
            if status != 0 and not sstep.get("continue_on_error"):
                raise ExternalError(f"{title} exited with status {status}; its last output:\n{_tail(seen)}")

    # Tests -------------------------------------------------------------------

    async def _test(self, image: Image, name: str, command: str, expect: str | None, timeout: float | None) -> None:
        self.emit(events.TestStarted(name))
        started = time.monotonic()
        async with ephemeral_vm(self.vms, image.id, memory=self.recipe.memory_mb, cpus=self.recipe.cpus,
                                wait_for_ssh=DEFAULT_SSH_WAIT, prefix="test") as st:
            conn = await self.vms.ssh_connect(st.name, DEFAULT_SSH_WAIT)
            try:
                coro = ssh.capture(conn, self._fill(command))
                status, output = await (asyncio.wait_for(coro, timeout) if timeout else coro)
            finally:
                conn.close()
        self.emit(events.Output("ssh", output.encode()))
        if expect is not None and not re.search(self._fill(expect), output, re.MULTILINE):
            raise BuildFailed(
                f"test {name!r} failed: expected output matching /{expect}/, got:\n{_tail(output.encode())}"
            )
        if expect is None and status != 0:
            raise BuildFailed(f"test {name!r} failed: exit status {status}; output:\n{_tail(output.encode())}")
        self.emit(events.TestPassed(name, time.monotonic() - started))


def _copy(src: Path, dest: Path) -> None:
    import shutil

    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
