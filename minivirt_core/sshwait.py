"""Waiting for a booting guest's SSH server: probes of the forwarded port until its ``SSH-``
banner comes, without costing the guest what a careless wait does (see :func:`wait_for_banner`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import NamedTuple

from .errors import ExternalError, Timeout
from .ports import LOOPBACK
from .ssh import readable

BANNER_PROBES = 3  # connections waiting for the banner at once, once the guest has answered
BANNER_PROBE_EVERY = 0.5  # seconds between new connections while fewer are open
BANNER_PATIENCE = 30.0  # seconds one connection waits for the banner once the guest has answered
BANNER_EARLY_PROBES = 8  # connections at once before the guest has answered at all
BANNER_EARLY_EVERY = 0.2  # seconds between new connections then
BANNER_EARLY_PATIENCE = 0.5  # seconds a connection waits then
BANNER_EARLY_GROWTH = 0.2  # ... plus this much per second of waiting so far
BANNER_EARLY_SSH_EVERY = 3.0  # seconds between SSH probes before the guest answers, with a network probe


class _Probe(NamedTuple):
    """What one banner probe saw: the connection holding the banner, or whether the
    guest answered at all (closed the connection, sent something else) or stayed silent."""

    sock: socket.socket | None
    answered: bool


async def _banner_probe(port: int, patience: float) -> _Probe:
    """One connection, waiting up to ``patience`` s for ``SSH-``; a connection that got it
    is returned with the banner left unread, for whoever logs in over it."""
    loop = asyncio.get_running_loop()
    sock: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    assert sock is not None
    sock.setblocking(False)
    try:
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (LOOPBACK, port)), 2)
        except (TimeoutError, OSError):  # QEMU itself is not listening (yet): says nothing of the guest
            return _Probe(None, False)
        deadline = loop.time() + patience
        while True:
            await asyncio.wait_for(readable(sock.fileno()), deadline - loop.time())
            head = sock.recv(4, socket.MSG_PEEK)  # peeked: the banner stays for the SSH client
            if head == b"SSH-":
                found, sock = sock, None
                return _Probe(found, True)
            if not head or not b"SSH-".startswith(head):
                return _Probe(None, True)
            await asyncio.sleep(0.01)  # part of the banner: the rest is on its way
    except TimeoutError:
        return _Probe(None, False)
    except OSError:
        return _Probe(None, True)
    finally:
        if sock is not None:
            sock.close()


async def wait_for_banner(port: int, timeout: float, alive: Callable[[], bool] | None = None,
                          keep: bool = False, answered: bool = False,
                          net_probe: int | None = None) -> socket.socket | None:
    """Wait until an SSH server answers on ``127.0.0.1:port`` with its ``SSH-`` banner.

    QEMU accepts TCP on a forwarded port before the guest's sshd listens, so a
    connect alone proves nothing: the banner does. Several connections wait at once
    and the first banner wins. How many, and how long each waits, depends on whether
    the guest has answered yet (closed a connection, or sent anything):

    - Before that, QEMU's user network passes each connection's SYN to a guest whose
      network may not be up; nobody answers it, and it sits in the user network's TCP
      back-off (sent again after ~3, 9, 21 s). A patient probe then sees the banner
      seconds after the server is ready, so a silent probe is dropped after
      :data:`BANNER_EARLY_PATIENCE` s (plus :data:`BANNER_EARLY_GROWTH` s per second
      waited so far, for guests that are slow at everything), and fresh ones keep
      coming every :data:`BANNER_EARLY_EVERY` s (up to :data:`BANNER_EARLY_PROBES` at
      once: one that never reaches the guest costs it nothing).
    - After it, the guest's network is up and a silent connection is a slow server
      (TCG on a loaded host: OpenSSH starts a process per connection), so up to
      :data:`BANNER_PROBES` wait, a new one every :data:`BANNER_PROBE_EVERY` s, each up
      to :data:`BANNER_PATIENCE` s: giving up on them kept a slow sshd busy with
      abandoned connections past its MaxStartups, and no banner ever came.

    But QEMU's user network does not forget a connection the host dropped: it keeps sending
    its SYN, and when the guest's network comes up every one of them reaches the guest's
    server at once (OpenSSH starts a process for each: ~0.25 s of an emulated CPU; a Debian
    boot saw ~60 such, in the middle of cloud-init). So with ``net_probe``, a host port QEMU
    forwards to :data:`.ports.NET_PROBE_GUEST_PORT` of the guest (where nothing listens: a refusal,
    from the guest's kernel, costs it nothing), the quick early probes go there instead; the
    first refusal says the guest's network is up, and the SSH port is probed from then on.
    Until then the SSH port gets one probe every :data:`BANNER_EARLY_SSH_EVERY` s only (for a
    guest whose firewall drops, rather than refuses, what nothing listens for).

    ``alive`` stops the wait early (e.g. when QEMU has exited). ``answered``: the guest is
    known to be up (a VM resumed from a warm state): the patient probes from the start.

    ``keep``: return the connection that got the banner (unread) instead of closing it,
    for a login right after (:func:`connect`'s ``sock``): the guest's server has forked
    for it already, and a fresh connection would cost it another process.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    started = loop.time()
    probes: set[asyncio.Task[_Probe]] = set()  # on the SSH port
    net_probes: set[asyncio.Task[_Probe]] = set()  # on net_probe, until the guest answers
    next_probe = next_ssh = started
    guest_answered = answered
    try:
        while True:
            now = loop.time()
            patience = BANNER_EARLY_PATIENCE + BANNER_EARLY_GROWTH * (now - started)
            if guest_answered:
                if len(probes) < BANNER_PROBES and now >= next_probe:
                    next_probe = now + BANNER_PROBE_EVERY
                    probes.add(asyncio.ensure_future(_banner_probe(port, BANNER_PATIENCE)))
            elif net_probe is None:
                if len(probes) < BANNER_EARLY_PROBES and now >= next_probe:
                    next_probe = now + BANNER_EARLY_EVERY
                    probes.add(asyncio.ensure_future(_banner_probe(port, patience)))
            else:
                if len(net_probes) < BANNER_EARLY_PROBES and now >= next_probe:
                    next_probe = now + BANNER_EARLY_EVERY
                    net_probes.add(asyncio.ensure_future(_banner_probe(net_probe, patience)))
                if now >= next_ssh:
                    next_ssh = now + BANNER_EARLY_SSH_EVERY
                    probes.add(asyncio.ensure_future(_banner_probe(port, patience)))
            if probes or net_probes:
                done, _pending = await asyncio.wait(probes | net_probes, timeout=0.05,
                                                    return_when=asyncio.FIRST_COMPLETED)
                seen = [task.result() for task in done & probes]
                probes -= done
                for task in done & net_probes:
                    net_probes.discard(task)
                    if (sock := task.result().sock) is not None:
                        sock.close()  # something listens there after all: the network is up
                    guest_answered = guest_answered or task.result().answered
                banners = [probe.sock for probe in seen if probe.sock is not None]
                if banners:
                    for extra in banners[1:]:
                        extra.close()
                    if keep:
                        return banners[0]
                    banners[0].close()
                    return None
                if any(probe.answered for probe in seen):  # refused or cut off: the guest is up
                    guest_answered = True
                if guest_answered and net_probes:
                    await _cancel_probes(net_probes)
                    net_probes = set()
                if done:  # try again soon
                    next_probe = min(next_probe, loop.time() + 0.05)
            else:
                await asyncio.sleep(0.05)
            if alive is not None and not alive():
                raise ExternalError("the VM stopped before its SSH server answered")
            if loop.time() >= deadline:
                raise Timeout(
                    f"no SSH server answered on port {port} within {timeout:.0f} s",
                    hint="The guest may still be booting (see `miv logs`), or has no SSH server.",
                )
    finally:
        await _cancel_probes(probes | net_probes)


async def _cancel_probes(probes: set[asyncio.Task[_Probe]]) -> None:
    """Cancel banner probes; close what any of them got meanwhile."""
    for task in probes:
        task.cancel()
    if probes:
        await asyncio.wait(probes)
        for task in probes:
            if not task.cancelled() and (sock := task.result().sock) is not None:
                sock.close()  # answered while we were leaving
