"""Port forwards: parsing ``HOST:GUEST``, finding free ports on 127.0.0.1."""

from __future__ import annotations

import contextlib
import re
import socket
from dataclasses import dataclass

from .errors import Conflict, InvalidInput

LOOPBACK = "127.0.0.1"
# The guest port a VM's network probe is forwarded to (qemu.command, sshwait.wait_for_banner):
# nothing listens there, so the guest's kernel refuses a connection as soon as its network is
# up, and that costs the guest nothing (tcpmux, unused anywhere).
NET_PROBE_GUEST_PORT = 1


@dataclass(frozen=True)
class PortForward:
    """A TCP forward from ``127.0.0.1:host_port`` to the guest's ``guest_port``."""

    host_port: int
    guest_port: int

    def as_json(self) -> dict[str, int]:
        return {"host_port": self.host_port, "guest_port": self.guest_port}

    def __str__(self) -> str:
        return f"{self.host_port}:{self.guest_port}"


# ASCII digits only: int() also takes '+80', '8_0' and other scripts' digits ('٨٠').
_PORT_RE = re.compile(r"[0-9]{1,5}")


def _port(value: object) -> int | None:
    """A port number from an int or ASCII digits, or None when it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _PORT_RE.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 1 <= number <= 65535 else None


def port_number(text: str) -> int | None:
    """A port number (1-65535) written in ASCII digits, or None when ``text`` is not one."""
    return _port(text)


def parse_forward(text: str) -> PortForward:
    """``"8080:80"`` -> PortForward(8080, 80); a clear error otherwise."""
    host, sep, guest = text.partition(":")
    if not sep:
        raise InvalidInput(f"invalid port forward {text!r}: write HOST:GUEST, e.g. 8080:80")
    host_port, guest_port = _port(host), _port(guest)
    if host_port is None or guest_port is None:
        raise InvalidInput(f"invalid port forward {text!r}: ports are numbers from 1 to 65535, e.g. 8080:80")
    return PortForward(host_port, guest_port)


def forward_from_json(value: object) -> PortForward:
    """A forward from an entry of a VM config's ``ports`` list; :class:`InvalidInput` if malformed."""
    if isinstance(value, dict):
        host_port, guest_port = _port(value.get("host_port")), _port(value.get("guest_port"))
        if host_port is not None and guest_port is not None:
            return PortForward(host_port, guest_port)
    raise InvalidInput("not a port forward: it needs host_port and guest_port, numbers from 1 to 65535")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that are free now (held together while
    picked, so none is picked twice)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind((LOOPBACK, 0))
        return [int(s.getsockname()[1]) for s in sockets]


def check_port_free(port: int) -> None:
    """Raise :class:`Conflict` when ``127.0.0.1:port`` is taken. Bound the way QEMU binds
    its forwards (SO_REUSEADDR): connections of a VM just stopped, left in TIME_WAIT, do not
    keep its port from being forwarded again; a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError as e:
            raise Conflict(
                f"port {port} on 127.0.0.1 is already in use",
                hint="Choose another host port (--port HOST:GUEST), or stop what uses it.",
            ) from e
