"""Choosing the accelerator: KVM (Linux) or HVF (macOS) where they work, else TCG.

``/dev/kvm`` can exist and answer its API version while guests hang (a host that is
itself a VM without working nested virtualisation): there, QEMU's firmware runs under
KVM but a Linux kernel prints nothing. So KVM is trusted only after a probe that boots
a real kernel under ``-accel kvm`` and sees it print. The kernel is the one the tiny
guest builder keeps in the machine cache, else the host's ``/boot/vmlinuz-*``; with
neither, a firmware-only probe decides (weaker, said so, and not cached). The verdict
is cached machine-wide, keyed by the QEMU binary and the host kernel; the environment
variable ``MINIVIRT_ACCEL`` overrides it all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import InvalidInput
from .fsutil import atomic_write_json
from .hostinfo import host_arch, machine_cache_dir, qemu_system_name, which
from .qemu.command import machine_args, opt_value

ACCELS = ("kvm", "hvf", "tcg")
KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12
PROBE_SECONDS = 4.0


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator to use for guests of ``arch`` and why (shown by ``miv doctor``)."""

    accel: str
    reason: str
    arch: str = field(default_factory=host_arch)

    @property
    def qemu_args(self) -> list[str]:
        """Machine, accelerator and CPU arguments for QEMU (see :func:`machine_args`)."""
        return machine_args(self.arch, self.accel)


def kvm_api_version() -> int | None:
    """``KVM_GET_API_VERSION`` of ``/dev/kvm``, or None if it cannot be opened."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError:
        return None
    finally:
        os.close(fd)


def _hvf_supported() -> bool:
    try:
        out = subprocess.run(["sysctl", "-n", "kern.hv_support"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "1"


def _cache_key(qemu: str) -> dict[str, str]:
    st = os.stat(qemu)
    return {"qemu": qemu, "qemu_mtime": str(int(st.st_mtime)), "qemu_size": str(st.st_size),
            "kernel": platform.release()}


def probe_kernel() -> Path | None:
    """A Linux kernel to probe with: the tiny builder's cached one, else the host's."""
    candidates = sorted((machine_cache_dir() / "tiny").glob("vmlinuz-*"), key=lambda p: p.stat().st_mtime)
    running = Path(f"/boot/vmlinuz-{platform.release()}")
    candidates += [running] if running.exists() else sorted(Path("/boot").glob("vmlinuz-*"))
    for path in reversed(candidates):
        if os.access(path, os.R_OK):
            return path
    return None


async def _probe(argv: list[str], log: Path, marker: bytes, seconds: float) -> tuple[bool, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    ok = False
    while loop.time() < deadline:
        if log.exists() and marker in log.read_bytes():
            ok = True
            break
        if proc.returncode is not None:
            break
        try:
            await asyncio.wait_for(proc.wait(), 0.05)
        except TimeoutError:
            pass
    exited = proc.returncode is not None
    if not exited:
        proc.kill()
    _, err = await proc.communicate()
    lines = [line for line in err.decode(errors="replace").strip().splitlines() if "warning:" not in line]
    # QEMU's own last words matter only when it gave up by itself (we kill a hung probe).
    return ok, lines[-1] if exited and not ok and lines else ""


async def probe_kvm(qemu: str, kernel: Path | None, seconds: float = PROBE_SECONDS) -> tuple[bool, str]:
    """Boot ``kernel`` (or only the firmware) under KVM; (works, why)."""
    with tempfile.TemporaryDirectory(prefix="miv-accel-") as tmp:
        log = Path(tmp) / "out.log"
        base = [qemu, "-accel", "kvm", "-m", "128", "-nodefaults", "-display", "none", "-no-reboot"]
        if kernel is not None:
            argv = [*base, "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1",
                    "-serial", f"file:{opt_value(log)}"]
            ok, err = await _probe(argv, log, b"Linux version", seconds)
            what = f"a probe boot of {kernel.name} under KVM"
        else:
            argv = [*base, "-chardev", f"file,id=dbg,path={opt_value(log)}",
                    "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]
            ok, err = await _probe(argv, log, b"SeaBIOS", seconds)
            what = "a firmware-only probe under KVM (no kernel found to probe with)"
    if ok:
        return True, f"{what} ran"
    if err:
        return False, f"{what} failed: {err}"
    return False, f"{what} printed nothing in {seconds:.0f} s (guests hang)"


def emulated(arch: str) -> AccelChoice:
    """TCG for guests of another architecture than the host's: no hardware runs them."""
    return AccelChoice("tcg", f"{arch} guests are emulated on this {host_arch()} host", arch)


async def choose_for(arch: str, qemu: str | None = None, use_cache: bool = True) -> AccelChoice:
    """The accelerator for guests of ``arch``: :func:`choose`'s for the host's architecture
    (``MINIVIRT_ACCEL`` included), TCG for any other."""
    if arch == host_arch():
        return dataclasses.replace(await choose(qemu, use_cache), arch=arch)
    return emulated(arch)


async def choose(qemu: str | None = None, use_cache: bool = True) -> AccelChoice:
    """Decide the accelerator for the host's architecture: ``MINIVIRT_ACCEL``, else a cached
    or fresh probe."""
    env = os.environ.get("MINIVIRT_ACCEL", "").strip().lower()
    if env:
        if env not in ACCELS:
            raise InvalidInput(f"MINIVIRT_ACCEL={env!r} is not one of {', '.join(ACCELS)}")
        return AccelChoice(env, "set by MINIVIRT_ACCEL")
    system = platform.system()
    if system == "Darwin":
        if _hvf_supported():
            return AccelChoice("hvf", "macOS Hypervisor.framework is available")
        return AccelChoice("tcg", "Hypervisor.framework is not available")
    if system != "Linux":
        return AccelChoice("tcg", f"no hardware accelerator is supported on {system}")
    version = kvm_api_version()
    if version is None:
        reason = "/dev/kvm is missing" if not os.path.exists("/dev/kvm") else "/dev/kvm cannot be opened"
        return AccelChoice("tcg", reason)
    if version != KVM_API_VERSION:
        return AccelChoice("tcg", f"/dev/kvm reports API version {version}, not {KVM_API_VERSION}")
    qemu = qemu or which(qemu_system_name())
    if qemu is None:
        return AccelChoice("tcg", "QEMU is not installed, so KVM could not be probed")
    kernel = probe_kernel()
    key = _cache_key(qemu)
    cache_file = machine_cache_dir() / "accel.json"
    if use_cache:
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("key") == key:
                return AccelChoice(str(cached["accel"]), str(cached["reason"]) + " (cached)")
        except (OSError, ValueError, KeyError, TypeError):
            pass
    works, why = await probe_kvm(qemu, kernel)
    choice = AccelChoice("kvm", why) if works else AccelChoice("tcg", why)
    if kernel is not None:  # a firmware-only verdict is too weak to remember
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cache_file, {"key": key, **asdict(choice)})
        except OSError:
            pass
    return choice
