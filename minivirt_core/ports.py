"""Port forwards: parsing ``HOST:GUEST``, finding free ports on 127.0.0.1."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from .errors import Conflict, InvalidInput

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PortForward:
    """A TCP forward from ``127.0.0.1:host_port`` to the guest's ``guest_port``."""

    host_port: int
    guest_port: int

    def as_json(self) -> dict[str, int]:
        return {"host_port": self.host_port, "guest_port": self.guest_port}

    def __str__(self) -> str:
        return f"{self.host_port}:{self.guest_port}"


def parse_forward(text: str) -> PortForward:
    """``"8080:80"`` -> PortForward(8080, 80); a clear error otherwise."""
    host, sep, guest = text.partition(":")
    if not sep:
        raise InvalidInput(f"invalid port forward {text!r}: write HOST:GUEST, e.g. 8080:80")
    try:
        forward = PortForward(int(host), int(guest))
    except ValueError as e:
        raise InvalidInput(f"invalid port forward {text!r}: ports are numbers, e.g. 8080:80") from e
    for port in (forward.host_port, forward.guest_port):
        if not 1 <= port <= 65535:
            raise InvalidInput(f"invalid port forward {text!r}: ports are between 1 and 65535")
    return forward


def forwards_from_json(value: object) -> list[PortForward]:
    """Forwards from a VM config's ``ports`` list (unknown shapes are skipped)."""
    result = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and "host_port" in item and "guest_port" in item:
                result.append(PortForward(int(item["host_port"]), int(item["guest_port"])))
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def check_port_free(port: int) -> None:
    """Raise :class:`Conflict` when ``127.0.0.1:port`` is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError as e:
            raise Conflict(
                f"port {port} on 127.0.0.1 is already in use",
                hint="Choose another host port (--port HOST:GUEST), or stop what uses it.",
            ) from e
