"""A VM's persistent settings (its ``config.json``) and its status as derived on a look."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput
from .ports import PortForward, forwards_from_json

DEFAULT_MEMORY_MB = 1024
DEFAULT_CPUS = 1
STOP_TIMEOUT = 30.0

RUNNING = "running"
STOPPED = "stopped"
BROKEN = "broken"


def parse_memory(value: Any) -> int:
    """Memory in MiB from an int (MiB) or text like ``512``, ``512M``, ``2G``."""
    if isinstance(value, bool):
        raise InvalidInput(f"invalid memory size {value!r}")
    if isinstance(value, int):
        mb = value
    else:
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        factor = 1
        if text.endswith("G"):
            factor, text = 1024, text[:-1]
        elif text.endswith("M"):
            text = text[:-1]
        try:
            mb = int(float(text) * factor)
        except ValueError as e:
            raise InvalidInput(f"invalid memory size {value!r}: write e.g. 512, 512M or 2G") from e
    if not 16 <= mb <= 1 << 22:
        raise InvalidInput(f"invalid memory size {value!r}: between 16 MiB and 4 TiB")
    return mb


@dataclass(frozen=True)
class VmConfig:
    """The persistent settings of a VM (its ``config.json``)."""

    image: str | None
    memory_mb: int = DEFAULT_MEMORY_MB
    cpus: int = DEFAULT_CPUS
    disk: bool = True
    ports: tuple[PortForward, ...] = ()
    resources: tuple[dict[str, str], ...] = ()

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> VmConfig:
        memory = value.get("memory", DEFAULT_MEMORY_MB)
        try:
            memory_mb = parse_memory(memory)
        except InvalidInput:
            memory_mb = DEFAULT_MEMORY_MB
        resources = tuple(r for r in value.get("resources") or () if isinstance(r, dict) and "filename" in r)
        return cls(
            image=value.get("image") if isinstance(value.get("image"), str) else None,
            memory_mb=memory_mb,
            cpus=int(value.get("cpus") or DEFAULT_CPUS),
            disk=bool(value.get("disk", True)),
            ports=tuple(forwards_from_json(value.get("ports"))),
            resources=resources,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "memory": self.memory_mb,
            "cpus": self.cpus,
            "disk": self.disk,
            "ports": [p.as_json() for p in self.ports],
            "resources": list(self.resources),
        }


@dataclass(frozen=True)
class VmStatus:
    """A VM as found on the last look: config, state (and why, when broken), runtime facts."""

    name: str
    path: Path
    config: VmConfig | None
    state: str
    reason: str = ""
    pid: int | None = None
    ssh_port: int | None = None
    started: float | None = None
    accel: str | None = None
    image_label: str | None = None
    disk_size: int = 0
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def uptime(self) -> float | None:
        return time.time() - self.started if self.running and self.started else None

    def as_json(self) -> dict[str, Any]:
        config = self.config
        return {
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "image": config.image if config else None,
            "image_label": self.image_label,
            "ssh_port": self.ssh_port,
            "ports": [p.as_json() for p in config.ports] if config else [],
            "memory": config.memory_mb if config else None,
            "cpus": config.cpus if config else None,
            "pid": self.pid,
            "uptime": self.uptime,
        }
