"""When a guest's SSH server answers, measured without the probe's own delays.

QEMU's user network (slirp) accepts a connection to a forwarded port on the host at once,
then sends the SYN to the guest. Before the guest's network is up nobody answers it, so the
SYN waits in slirp's TCP retransmission back-off (sent again after about 3, 9 and 21 s), and
slirp takes no further connections on that port meanwhile: a probe that connected early and
waits patiently sees the banner up to ~15 s after the server is ready (measured with QEMU's
filter-dump on the aarch64 tiny guest: guest network up at 11 s, SSH served at 12 s, the
early probes' SYNs re-sent at 18.8 s). So until the guest has answered once (a reset from a
closed port, or the banner), a silent probe is dropped after :data:`EARLY_PATIENCE` and a new
one made; once it has answered, probes are patient (a slow server may take seconds to send
its banner, and dropped connections would cost it processes).
"""

from __future__ import annotations

import asyncio

EARLY_PATIENCE = 1.0  # seconds a probe waits before the guest has answered at all
PATIENCE = 30.0  # seconds a probe waits once it has
PROBES = 3  # connections open at once
EVERY = 0.25  # seconds between new connections


async def _probe(port: int, patience: float) -> str:
    """One connection: "banner", "answered" (closed by the guest) or "silent"."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (TimeoutError, OSError):
        return "silent"
    try:
        return "banner" if await asyncio.wait_for(reader.readexactly(4), patience) == b"SSH-" else "answered"
    except TimeoutError:
        return "silent"
    except (OSError, asyncio.IncompleteReadError):
        return "answered"
    finally:
        writer.close()


async def wait_for_guest_banner(port: int, timeout: float) -> None:
    """Return once the SSH server forwarded at ``127.0.0.1:port`` has sent its banner."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    probes: set[asyncio.Task[str]] = set()
    next_probe = loop.time()
    answered = False
    try:
        while loop.time() < deadline:
            if len(probes) < PROBES and loop.time() >= next_probe:
                probes.add(asyncio.ensure_future(_probe(port, PATIENCE if answered else EARLY_PATIENCE)))
                next_probe = loop.time() + EVERY
            if not probes:
                await asyncio.sleep(0.02)
                continue
            done, probes = await asyncio.wait(probes, timeout=0.02, return_when=asyncio.FIRST_COMPLETED)
            results = {task.result() for task in done}
            if "banner" in results:
                return
            if "answered" in results:
                answered = True
                next_probe = min(next_probe, loop.time() + 0.05)
        raise TimeoutError(f"no SSH banner on port {port} within {timeout:.0f} s")
    finally:
        for task in probes:
            task.cancel()
        if probes:
            await asyncio.wait(probes)
