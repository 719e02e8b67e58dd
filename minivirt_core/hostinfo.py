"""Facts about the host: architecture and the QEMU programs that match it."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}


def host_arch() -> str:
    """The host architecture as QEMU and the remote tags name it (``x86_64``, ``aarch64``)."""
    machine = platform.machine().lower()
    return _ARCH_ALIASES.get(machine, machine)


def qemu_system_name(arch: str | None = None) -> str:
    """The name of the system emulator for ``arch`` (the host's by default)."""
    return f"qemu-system-{arch or host_arch()}"


def which(program: str) -> str | None:
    """Full path of ``program`` on PATH, or None."""
    return shutil.which(program)


def interpolate_arch(text: str, arch: str | None = None) -> str:
    """Replace ``{arch}`` by ``arch`` (the host's architecture by default), leaving every
    other brace alone."""
    return text.replace("{arch}", arch or host_arch())


def machine_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/minivirt`` (or ``~/.cache/minivirt``): host facts shared by databases."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "minivirt"
