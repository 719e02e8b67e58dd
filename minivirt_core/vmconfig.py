"""A VM's persistent settings (its ``config.json``) and its status as derived on a look."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from . import defaults, layout
from .errors import InvalidInput
from .owners import Owner
from .ports import PortForward, forward_from_json

T = TypeVar("T")

DEFAULT_MEMORY_MB = defaults.MEMORY_MB
DEFAULT_CPUS = defaults.CPUS
MIN_MEMORY_MB = 16
MAX_MEMORY_MB = 1 << 22  # 4 TiB
MAX_CPUS = 64
MAX_CONFIG_BYTES = 1 << 20
MAX_REFERENCE_BYTES = 200  # a tag's limit (names.MAX_NAME_BYTES)
STOP_TIMEOUT = defaults.STOP_TIMEOUT

# What VmManager.stop did.
STOP_GRACEFUL = "graceful"  # the guest powered off (ACPI)
STOP_FORCED = "forced"  # it did not in time: QEMU was ended
STOP_NOT_RUNNING = "not running"  # it was stopped already: nothing done

RUNNING = "running"
STOPPED = "stopped"
BROKEN = "broken"

RESOURCE_TYPES = ("disk", "cdrom")
# A size: ASCII digits (not \d, which takes any script's digits), an optional fraction,
# an optional binary unit with an optional "B"/"iB". No sign, no exponent, no "inf".
_SIZE_RE = re.compile(r"([0-9]{1,20}(?:\.[0-9]{1,9})?)\s*(?:([KMGTP])(?:IB|I|B)?)?", re.IGNORECASE)
_UNIT_POWER = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def _brief(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut short: values from files can be of any size."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _size_bytes(text: str, default_unit: str) -> int | None:
    """Bytes in ``text`` (``512``, ``1.5G``, ``2GiB``; a bare number is in ``default_unit``),
    or None when it is not a size."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        return None
    number, unit = match.group(1), (match.group(2) or default_unit).upper()
    return int(Decimal(number) * 1024 ** _UNIT_POWER.get(unit, 0))


def parse_memory(value: Any) -> int:
    """Memory in MiB from an int (MiB) or text like ``512``, ``512M``, ``2G``, ``1T``."""
    if isinstance(value, int) and not isinstance(value, bool):
        mb: int | None = value
    elif isinstance(value, str):
        size = _size_bytes(value, "M")
        mb = None if size is None else size >> 20
    else:
        mb = None
    if mb is None:
        raise InvalidInput(f"invalid memory size {_brief(value)}: write e.g. 512, 512M or 2G")
    if not MIN_MEMORY_MB <= mb <= MAX_MEMORY_MB:
        raise InvalidInput(f"invalid memory size {_brief(value)}: between 16 MiB and 4 TiB")
    return mb


def parse_disk_size(text: str) -> int:
    """A disk size in bytes from text like ``10G``, ``512M`` or ``1048576`` (bytes)."""
    size = _size_bytes(text, "") if isinstance(text, str) else None
    if not size:
        raise InvalidInput(f"invalid disk size {_brief(text)}: write a size above zero, e.g. 10G or 512M")
    return size


def parse_cpus(value: Any) -> int:
    """A CPU count: a whole number from 1 to 64."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CPUS:
        raise InvalidInput(f"invalid CPU count {_brief(value)}: a whole number from 1 to {MAX_CPUS}")
    return value


def _image_ref(value: Any) -> str:
    if not isinstance(value, str) or not value or "/" in value or value.startswith("."):
        raise InvalidInput(f"{_brief(value)} is not an image id")
    return value


def _reference(value: Any) -> str:
    # What the user typed to name the image (a tag, an id or an id prefix): only shown.
    if (not isinstance(value, str) or not value or len(value.encode()) > MAX_REFERENCE_BYTES
            or not value.isprintable() or "/" in value):
        raise InvalidInput(f"{_brief(value)} is not an image reference")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{_brief(value)} is not true or false")
    return value


def _arch(value: Any) -> str:
    from .imageconfig import ARCHES

    if value not in ARCHES:
        raise InvalidInput(f"must be one of {', '.join(ARCHES)}, not {_brief(value)}")
    return str(value)


def _disk_flag(value: Any) -> bool:
    # true/false; the original minivirt could also write the --disk size it was given.
    if not isinstance(value, bool | str):
        raise InvalidInput(f"{_brief(value)} is not true or false")
    return bool(value)


def _resource(value: Any) -> dict[str, str]:
    if (not isinstance(value, dict) or not isinstance(value.get("filename"), str) or not value["filename"]
            or value.get("type", "disk") not in RESOURCE_TYPES
            or not all(isinstance(v, str) for v in value.values())):
        raise InvalidInput(f"{_brief(value)} is not a resource: a filename and a type, disk or cdrom")
    return dict(value)


def _items(value: Any, parse: Callable[[Any], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise InvalidInput(f"{_brief(value)} is not a list")
    result = []
    for index, item in enumerate(value):
        try:
            result.append(parse(item))
        except InvalidInput as e:
            raise InvalidInput(f"entry {index + 1}: {e.message}") from e
    return tuple(result)


@dataclass(frozen=True)
class VmConfig:
    """The persistent settings of a VM (its ``config.json``), checked when read.

    ``owner`` is set on throw-away VMs only (``run``, builds): the process that will
    destroy them, so one whose owner is gone can be found and removed."""

    image: str | None
    memory_mb: int = DEFAULT_MEMORY_MB
    cpus: int = DEFAULT_CPUS
    disk: bool = True
    ports: tuple[PortForward, ...] = ()
    resources: tuple[dict[str, str], ...] = ()
    owner: Owner | None = None
    isolated: bool = False  # QEMU user networking with restrict=on: no way out of the guest
    image_ref: str | None = None  # what the VM was created from, as typed (a tag, usually)
    arch: str | None = None  # the guest's architecture; None: its image's (VMs made before this)

    @classmethod
    def from_json(cls, value: object) -> VmConfig:
        """Parse a config (as written by us or by the original minivirt); unknown keys are
        ignored, a malformed known one is an :class:`InvalidInput` naming it."""
        if not isinstance(value, dict):
            raise InvalidInput("config.json is not a JSON object")

        def get(key: str, parse: Callable[[Any], T], default: T) -> T:
            raw = value.get(key)
            if raw is None:
                return default
            try:
                return parse(raw)
            except InvalidInput as e:
                raise InvalidInput(f"config.json: {key}: {e.message}") from e

        return cls(
            image=get("image", _image_ref, None),
            memory_mb=get("memory", parse_memory, DEFAULT_MEMORY_MB),
            cpus=get("cpus", parse_cpus, DEFAULT_CPUS),
            disk=get("disk", _disk_flag, "disk" not in value),
            ports=get("ports", lambda v: _items(v, forward_from_json), ()),
            resources=get("resources", lambda v: _items(v, _resource), ()),
            owner=get("owner", Owner.from_json, None),
            isolated=get("isolated", _flag, False),
            image_ref=get("image_ref", _reference, None),
            arch=get("arch", _arch, None),
        )

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "image": self.image,
            "memory": self.memory_mb,
            "cpus": self.cpus,
            "disk": self.disk,
            "ports": [p.as_json() for p in self.ports],
            "resources": list(self.resources),
        }
        if self.owner is not None:
            result["owner"] = self.owner.as_json()
        if self.isolated:  # an optional key: older files stay valid
            result["isolated"] = True
        if self.image_ref is not None:  # optional too
            result["image_ref"] = self.image_ref
        if self.arch:
            result["arch"] = self.arch
        return result

    def image_reference(self, tags: dict[str, str]) -> str | None:
        """How to name this VM's image (``tags``: ``{tag: image id}`` as they are now).

        The reference it was created from while that still names its image (``tiny``);
        ``tiny@3f2a1b0c9d8e`` once the tag has moved to another image (or is gone), so
        the id it really runs shows; the image's first tag (else its short id) for VMs
        made before references were recorded; None for a VM without an image."""
        image = self.image
        if image is None:
            return None
        ref = self.image_ref
        if ref is None:
            return min((t for t, i in tags.items() if i == image), default=image[:12])
        if self.image_ref_moved(tags):
            return f"{ref}@{image[:12]}"
        return ref if ref in tags else image[:12]  # an id prefix: the short id

    def image_ref_moved(self, tags: dict[str, str]) -> bool:
        """True when the tag this VM was created from names another image now, or none."""
        ref, image = self.image_ref, self.image
        if ref is None or image is None or image.startswith(ref.lower()):
            return False
        return tags.get(ref) != image


def read_config(vm_dir: Path) -> VmConfig:
    """The VM's ``config.json``, parsed and checked; :class:`InvalidInput` says what is wrong."""
    path = vm_dir / layout.VM_CONFIG
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as e:
        raise InvalidInput("config.json is missing") from e
    except OSError as e:
        raise InvalidInput(f"config.json cannot be read: {e.strerror}") from e
    if len(data) > MAX_CONFIG_BYTES:
        raise InvalidInput(f"config.json is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise InvalidInput(f"config.json is not valid JSON: {str(e)[:80]}") from e
    return VmConfig.from_json(raw)


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
    net_probe_port: int | None = None  # forwarded to a guest port nothing listens on (sshwait)
    warm: str | None = None  # the warm state it was resumed from, if it was
    started: float | None = None
    accel: str | None = None
    image_label: str | None = None
    disk_size: int = 0
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def arch(self) -> str | None:
        """The guest's architecture as recorded in the VM's config (None: its image's)."""
        return self.config.arch if self.config else None

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
            "image_ref": config.image_ref if config else None,
            "image_label": self.image_label,
            "ssh_port": self.ssh_port,
            "ports": [p.as_json() for p in config.ports] if config else [],
            "memory": config.memory_mb if config else None,
            "cpus": config.cpus if config else None,
            "pid": self.pid,
            "uptime": self.uptime,
            "arch": self.arch,
            "accel": self.accel,
        }
