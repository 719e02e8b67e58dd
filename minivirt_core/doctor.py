"""``doctor``: what minivirt needs on this host, what is there, and what to do."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from . import accel
from .database import Database
from .hostinfo import host_arch, qemu_system_name, which
from .imageconfig import ARCHES
from .qemu import firmware

IMAGE_TOOLS = ("sfdisk", "mkfs.vfat", "mcopy", "syslinux", "mkfs.ext4", "cpio", "apt-get")
APT_PACKAGES = "qemu-system-x86 qemu-utils"
EMULATOR_PACKAGES = {"x86_64": "qemu-system-x86", "aarch64": "qemu-system-arm"}
FIRMWARE_PACKAGES = {"aarch64": "qemu-efi-aarch64"}
DEBIAN_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class Check:
    """One requirement: whether it is met, what was found, and the fix when it is not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


async def _version(program: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            program, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    except (TimeoutError, OSError):
        return "?"
    first = out.decode(errors="replace").splitlines()
    return first[0] if first else "?"


async def _foreign_packages() -> set[str]:
    """The Debian architectures apt fetches packages for besides the native one."""
    if which("dpkg") is None:
        return set()
    try:
        proc = await asyncio.create_subprocess_exec("dpkg", "--print-foreign-architectures",
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    except (TimeoutError, OSError):
        return set()
    return set(out.decode(errors="replace").split())


async def _arch_check(arch: str, host_choice: accel.AccelChoice) -> Check:
    """Whether guests of ``arch`` can run here, and how (accelerated or emulated); what to install."""
    name = f"{arch} guests"
    native = arch == host_arch()
    qemu_name = qemu_system_name(arch)
    missing = []
    if which(qemu_name) is None:
        missing.append((qemu_name, EMULATOR_PACKAGES.get(arch, "qemu-system")))
    if firmware.needs_firmware(arch) and firmware.find(arch) is None:
        missing.append((f"UEFI firmware for {arch}", FIRMWARE_PACKAGES.get(arch, "")))
    if missing:
        what = " and ".join(m[0] for m in missing)
        fix = (f"apt-get install {' '.join(m[1] for m in missing)} (Debian/Ubuntu); "
               f"brew install qemu (macOS)")
        return Check(name, False, f"cannot run: {what} missing", fix, required=native)
    if native:
        how = ("accelerated" if host_choice.accel != "tcg" else "emulated") + f" ({host_choice.accel})"
    else:
        how = "emulated (tcg): several times slower than native"
    fix = ""
    debian = DEBIAN_ARCHES.get(arch)
    if not native and which("apt-get") and debian and debian not in await _foreign_packages():
        fix = f"to build {arch} images offline (recipes/tiny.yaml --arch {arch}): " \
              f"dpkg --add-architecture {debian} && apt-get update"
        how += f"; building {arch} images needs apt's {debian} packages"
    return Check(name, True, how, fix, required=native)


async def run_checks(db: Database) -> list[Check]:
    """Every check, in display order."""
    checks = []
    arch = host_arch()
    qemu_name = qemu_system_name(arch)
    install = f"install it: apt-get install {APT_PACKAGES} (Debian/Ubuntu) or brew install qemu (macOS)"
    qemu = which(qemu_name)
    checks.append(
        Check(qemu_name, True, f"{qemu}: {await _version(qemu)}")
        if qemu
        else Check(qemu_name, False, "not found on PATH", install)
    )
    qemu_img = which("qemu-img")
    checks.append(
        Check("qemu-img", True, f"{qemu_img}: {await _version(qemu_img)}")
        if qemu_img
        else Check("qemu-img", False, "not found on PATH", install)
    )
    db_ok = True
    try:
        db.ensure()
    except Exception as e:
        db_ok = False
        checks.append(Check("database", False, str(e), "set MINIVIRT_DB_PATH to a writable folder"))
    if db_ok:
        checks.append(Check("database", True, str(db.root)))
    choice = await accel.choose(qemu)
    fast = choice.accel != "tcg"
    checks.append(
        Check(
            "accelerator",
            True,
            f"{choice.accel}: {choice.reason}",
            "" if fast else "guests run under software emulation (slower); set MINIVIRT_ACCEL to override",
        )
    )
    checks += [await _arch_check(guest, choice) for guest in ARCHES]
    missing = [t for t in IMAGE_TOOLS if which(t) is None]
    checks.append(
        Check(
            "tiny image tools",
            not missing,
            "all present" if not missing else f"missing: {', '.join(missing)}",
            "apt-get install fdisk dosfstools mtools syslinux syslinux-common e2fsprogs cpio",
            required=False,
        )
    )
    ssh = which("ssh")
    checks.append(
        Check("ssh client", bool(ssh), ssh or "not found (only needed for `ssh -F <vm>/ssh-config`)",
              "apt-get install openssh-client", required=False)
    )
    if os.geteuid() != 0 and not os.access(db.root if db.root.exists() else db.root.parent, os.W_OK):
        checks.append(Check("permissions", False, f"cannot write {db.root}", "set MINIVIRT_DB_PATH"))
    return checks
