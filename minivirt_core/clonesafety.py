"""Clone safety: what a guest resumed from a warm state needs before anyone uses it.

Every VM resumed from one warm state (:mod:`.warm`) starts with the same clock (the instant
of the save) and the same RNG state. Before the VM is handed over, its clock is set from the
host's and fresh host entropy is written into its RNG: either as a script of its own
(:func:`make_safe`) or in front of the first command, in the same exec (:func:`prefixed`).
"""

from __future__ import annotations

import secrets
import shlex
import time
from typing import Any

from .errors import ExternalError


class GuestUnsafe(ExternalError):
    """The restored guest ran its clone-safety steps and they failed. That is a property of
    the saved guest (no way to reseed its RNG, say), so every clone of its state would fail
    the same way: the state is removed (:func:`minivirt_core.warmstart.forget_unsafe_state`)."""


def _safety_steps(entropy: bytes, now: float) -> str:
    """Shell lines that set the guest clock from the host's time ``now`` and write the host's
    ``entropy`` into the guest's RNG; their status fails when either fails.

    Written entropy only reaches what ``/dev/urandom`` gives out at the kernel's next reseed
    (Linux 5.18 on: a read finds the seed older than ``uptime / 2`` s, at most a minute). A
    clone reads within that time of the save, so every clone would read the same bytes: the
    ``RNDRESEEDCRNG`` ioctl (:data:`RESEED`) makes the reseed happen at once, and the steps
    fail when it cannot be made."""
    octal = "".join(f"\\{b:03o}" for b in entropy)
    second = round(now)  # whole seconds only (busybox's date): the nearest one, not the one before
    return (f"{{ date -u -s @{second} >/dev/null 2>&1 || date -u -s \"$(date -u -d @{second} '+%Y-%m-%d %H:%M:%S')\""
            f" >/dev/null; }} && printf '{octal}' > /dev/urandom && {{ {RESEED}; }} 2>/dev/null")


# RNDRESEEDCRNG = _IO('R', 0x07): the kernel's RNG reseeds now (root; Linux 4.17 on). A shell
# cannot make an ioctl: perl does it (Debian and Ubuntu: perl-base is essential; the tiny guest
# has its binary), else python3 (the cloud images that run cloud-init have it).
RESEED = ("perl -e 'open(my $f, \"<\", \"/dev/urandom\") or exit 1; ioctl($f, 0x5207, 0) or exit 1'"
          " || python3 -c 'import fcntl, os; fcntl.ioctl(os.open(\"/dev/urandom\", os.O_RDONLY), 0x5207)'")


def safety_script(entropy: bytes, now: float) -> str:
    """The shell lines run first in a restored guest: the clock from the host, the host's
    entropy into the RNG, then the hostname is printed (a sign the guest answers)."""
    return _safety_steps(entropy, now) + " && hostname"


SAFETY_FAILED = ("error: the warm-started guest could not be made safe (setting its clock or seeding its RNG "
                 "failed): the command did not run, and the warm state is removed: the next run boots cold.")
COMMAND_MAX = 8000  # bytes of a command line with the steps in front (dropbear takes at most 9000)


def prefixed(command: str) -> str | None:
    """``command`` (a shell line) behind the clone-safety steps, in one shell: it runs only
    once they are done, so a warm-started guest runs its first command in one exec, not two.
    When they fail, it does not run: :data:`SAFETY_FAILED` on stderr, exit status 1.
    None when the line would be too long (then run :func:`make_safe` first)."""
    steps = _safety_steps(secrets.token_bytes(64), time.time())
    line = f"{{ {steps}; }} >/dev/null 2>&1 || {{ echo {shlex.quote(SAFETY_FAILED)} >&2; exit 1; }}; " \
           f"eval {shlex.quote(command)}"
    return line if len(line.encode()) <= COMMAND_MAX else None


async def make_safe(conn: Any) -> None:
    """Run :func:`safety_script` over ``conn`` (an SSH connection to the restored guest);
    :class:`GuestUnsafe` if the guest runs it and it fails, :class:`ExternalError` if the
    connection fails."""
    import asyncssh

    from .ssh import capture

    try:
        status, output = await capture(conn, safety_script(secrets.token_bytes(64), time.time()))
    except (OSError, asyncssh.Error) as e:
        raise ExternalError(f"the clone-safety steps failed: the SSH connection failed ({e})") from e
    if status != 0:
        raise GuestUnsafe(f"the clone-safety steps failed in the guest: {output.strip()[-200:]}")
