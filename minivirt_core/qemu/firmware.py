"""The firmware a guest architecture boots with, found where distributions put it.

x86_64 guests boot QEMU's built-in SeaBIOS: nothing to find. aarch64 guests need UEFI
(edk2): Debian and Ubuntu ship ``QEMU_EFI.fd`` (package ``qemu-efi-aarch64``), Fedora
``edk2-aarch64``, Homebrew's ``qemu`` ``edk2-aarch64-code.fd``; any QEMU may also describe
its firmware in JSON descriptors (``share/qemu/firmware/*.json``, the files libvirt reads).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFound

PREFIXES = ("/usr", "/usr/local", "/opt/homebrew")
"""Where QEMU and its data are installed: the system, a local build, Homebrew on Apple Silicon."""

BIOS_FILES = {
    "aarch64": (
        "share/qemu-efi-aarch64/QEMU_EFI.fd",  # Debian, Ubuntu
        "share/edk2/aarch64/QEMU_EFI.fd",  # Fedora, RHEL (edk2-aarch64)
        "share/AAVMF/QEMU_EFI.fd",
        "share/qemu/edk2-aarch64-code.fd",  # QEMU's own install, Homebrew
    ),
}
"""Firmware images loaded with ``-bios``, in order of preference, relative to a prefix."""

INSTALL_HINTS = {
    "aarch64": "Install UEFI firmware for aarch64 guests: apt-get install qemu-efi-aarch64 "
               "(Debian/Ubuntu), dnf install edk2-aarch64 (Fedora), brew install qemu (macOS).",
}


@dataclass(frozen=True)
class Firmware:
    """A firmware file and how QEMU loads it (``-bios`` or a read-only pflash drive)."""

    path: str
    pflash: bool = False

    @property
    def qemu_args(self) -> list[str]:
        """The QEMU arguments that load it."""
        from .command import opt_value

        if self.pflash:
            return ["-drive", f"if=pflash,format=raw,readonly=on,file={opt_value(self.path)}"]
        return ["-bios", self.path]


def needs_firmware(arch: str) -> bool:
    """True when guests of ``arch`` need a firmware file from the host (UEFI)."""
    return arch in BIOS_FILES


def _descriptors(prefixes: Iterable[str]) -> list[Path]:
    folders = [Path("/etc/qemu/firmware")] + [Path(p) / "share/qemu/firmware" for p in prefixes]
    files: dict[str, Path] = {}
    for folder in folders:  # a file name seen first wins, as QEMU's own lookup does
        try:
            for path in sorted(folder.glob("*.json")):
                files.setdefault(path.name, path)
        except OSError:
            continue
    return [files[name] for name in sorted(files)]


def _from_descriptor(path: Path, arch: str) -> Firmware | None:
    """The plain (no secure boot) UEFI firmware ``path`` describes for ``arch``'s virt machine."""
    try:
        with open(path, "rb") as f:
            desc = json.loads(f.read(65536))
        if "uefi" not in desc.get("interface-types", []):
            return None
        if not any(t.get("architecture") == arch and any(m.startswith("virt") for m in t.get("machines", []))
                   for t in desc.get("targets", [])):
            return None
        if {"secure-boot", "enrolled-keys", "requires-smm"} & set(desc.get("features", [])):
            return None
        mapping = desc["mapping"]
        filename = mapping["executable"]["filename"]
        device = mapping.get("device")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(filename, str) or device not in ("flash", "memory") or not os.path.isfile(filename):
        return None
    return Firmware(filename, pflash=device == "flash")


def find(arch: str, prefixes: Iterable[str] = PREFIXES) -> Firmware | None:
    """The firmware for ``arch`` guests: a known file, else a QEMU firmware descriptor's.
    None when ``arch`` needs none (x86_64) or none is installed (see :func:`require`)."""
    prefixes = list(prefixes)
    for relative in BIOS_FILES.get(arch, ()):
        for prefix in prefixes:
            path = os.path.join(prefix, relative)
            if os.path.isfile(path):
                return Firmware(path)
    if not needs_firmware(arch):
        return None
    for descriptor in _descriptors(prefixes):
        if (found := _from_descriptor(descriptor, arch)) is not None:
            return found
    return None


def require(arch: str) -> Firmware | None:
    """Like :func:`find`, but a missing firmware ``arch`` needs is a :class:`NotFound` with what to install."""
    found = find(arch)
    if found is None and needs_firmware(arch):
        raise NotFound(f"no UEFI firmware for {arch} guests is installed", hint=INSTALL_HINTS.get(arch, ""))
    return found
