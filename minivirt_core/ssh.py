"""SSH to guests with asyncssh: waiting for sshd, commands, shells, file copy.

Images accept root with Vagrant's well-known insecure key (the classic recipes' images
do); a VM replaces it with its own key on first contact (see :mod:`.vmkey`). The
forwarded port listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ExternalError
from .ports import LOOPBACK

if TYPE_CHECKING:
    import asyncssh

    from .guestcopy import CopyResult

DATA = Path(__file__).parent / "data"
PRIVATE_KEY = DATA / "vagrant-private-key"
PUBLIC_KEY = DATA / "vagrant.pub"
USER = "root"


def private_key_bytes() -> bytes:
    """The private key minivirt logs in with."""
    return PRIVATE_KEY.read_bytes()


def public_key_text() -> str:
    """The public half, as one ``authorized_keys`` line (``{vagrant_pubkey}`` in recipes)."""
    return PUBLIC_KEY.read_text().strip()


def preload() -> None:
    """Import the SSH client and minivirt's login key in a thread, ahead of a login: the
    import costs ~0.2 s of CPU. No-op once the import has begun; errors surface at the login."""
    if "asyncssh" in sys.modules:
        return
    task = asyncio.ensure_future(asyncio.to_thread(client_key, private_key_bytes()))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


# The guest's host key ed25519 when it has one: its signature in every key exchange costs an
# emulated guest much less than RSA's (the tiny guest's logins: 0.19 s against 0.25 s, under load).
HOST_KEY_ALGS = "^ssh-ed25519"

class KeyRefused(ExternalError):
    """The guest refused every key offered."""


class SessionRefused(ExternalError):
    """The guest's SSH server refused to open a session (to run a command)."""


@lru_cache(maxsize=16)
def client_key(private_key: bytes) -> asyncssh.SSHKey:
    """``private_key`` (OpenSSH or PEM bytes) imported for a login, once per process.

    The well-known key is our own file, so OpenSSL's RSA consistency check, ~50 ms a time
    here, is skipped for it; any other key is checked."""
    import asyncssh

    return asyncssh.import_private_key(private_key,
                                       unsafe_skip_rsa_key_validation=private_key == private_key_bytes())


async def connect(port: int, timeout: float = 30.0, keys: Sequence[bytes] | None = None,
                  sock: socket.socket | None = None) -> asyncssh.SSHClientConnection:
    """An authenticated root SSH connection to the guest forwarded at ``port``, offering
    ``keys`` (private keys, in order), by default the well-known key. A VM's own key is
    :func:`minivirt_core.vmkey.connect`'s business: use ``VmManager.ssh_connect``.

    ``sock``: a connection to the port made already (:func:`wait_for_banner` with ``keep``),
    used for the first attempt; this function owns it from then on."""
    import asyncssh

    client_keys = [client_key(k) for k in keys or [private_key_bytes()]]

    async def attempts() -> asyncssh.SSHClientConnection:
        # dropbear closes a new connection at once while 5 others from the same address are
        # unauthenticated: on a slow (emulated, loaded) guest the banner probes' children can
        # linger that long. Such a close before any answer is retried, until the timeout.
        nonlocal sock
        pause = 0.2
        while True:
            given, sock = sock, None
            try:
                return await asyncssh.connect(
                    LOOPBACK, port, username=USER, client_keys=client_keys, known_hosts=None,
                    agent_path=None, config=None, preferred_auth="publickey", keepalive_interval=15,
                    server_host_key_algs=HOST_KEY_ALGS, sock=given,
                )
            except asyncssh.PermissionDenied:
                if given is not None:
                    given.close()
                raise
            except (OSError, asyncssh.Error) as e:
                if given is not None:
                    given.close()
                    continue  # a connection made earlier, gone stale meanwhile: a fresh one at once
                if not isinstance(e, asyncssh.ConnectionLost | ConnectionResetError):
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
            except BaseException:
                if given is not None:
                    given.close()
                raise

    try:
        return await asyncio.wait_for(attempts(), timeout)
    except asyncssh.PermissionDenied as e:
        raise KeyRefused(
            "the guest refused minivirt's SSH key",
            hint="Images must authorize the key in minivirt_core/data/vagrant.pub for root; "
                 "a VM that replaced it uses the key in its folder (ssh-key).",
        ) from e
    except (TimeoutError, OSError, asyncssh.Error) as e:
        raise ExternalError(f"SSH connection to port {port} failed: {e or type(e).__name__}") from e
    finally:
        if sock is not None:
            sock.close()  # never used (the wait ended first)


def shell_command(argv: Sequence[str]) -> str | None:
    """The command line to send for ``miv ssh VM ARG...`` / ``miv run IMAGE ARG...``.

    One argument is a shell line, as with ssh(1) (``'cd /srv && make'``); several are a
    command and its arguments, each kept exactly as given, as with ``docker run``
    (``sh -c 'exit 3'``). None when there are none (an interactive shell)."""
    import shlex

    if not argv:
        return None
    if len(argv) == 1:
        return argv[0]
    return shlex.join(argv)


async def run(
    conn: asyncssh.SSHClientConnection,
    command: str,
    on_stdout: Callable[[bytes], Any] | None = None,
    on_stderr: Callable[[bytes], Any] | None = None,
    stdin: bytes | int | None = None,
) -> int:
    """Run ``command``, streaming its output to the callbacks; returns its exit status
    (255 when the connection ended without one, as with ssh(1)).

    ``stdin`` is bytes to send or a file descriptor to stream until its end. The command
    may exit before it read all of it: that is not an error, and its output is never lost."""
    import asyncssh

    try:
        process = await conn.create_process(command, encoding=None)
    except asyncssh.ChannelOpenError as e:
        raise SessionRefused(f"the guest's SSH server refused to run a command ({e.reason})",
                             hint="See the guest's console (`miv logs`); it may be short of memory.") from e
    except (OSError, asyncssh.Error) as e:
        raise ExternalError(f"the SSH connection to the guest failed: {e}",
                            hint="The guest's SSH server may have stopped or refused the command "
                                 "(dropbear takes at most 9000 bytes).") from e
    feeder = asyncio.ensure_future(_feed(process.stdin, stdin))

    async def pump(stream: Any, sink: Callable[[bytes], Any] | None) -> None:
        while data := await stream.read(65536):
            if sink is not None:
                sink(data)

    try:
        await asyncio.gather(pump(process.stdout, on_stdout), pump(process.stderr, on_stderr))
        completed = await process.wait()
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
    if completed.exit_status is None or completed.exit_status < 0:
        return 255
    return int(completed.exit_status)


async def _feed(writer: Any, source: bytes | int | None) -> None:
    """Write ``source`` to the remote command's stdin, then EOF; stop quietly when the
    channel closes first (the command exited without reading everything)."""
    import asyncssh

    try:
        if isinstance(source, bytes):
            if source:
                writer.write(source)
                await writer.drain()
        elif source is not None:
            async for chunk in read_chunks(source):
                writer.write(chunk)
                await writer.drain()
        writer.write_eof()
    except (OSError, asyncssh.Error):
        pass  # the channel is closed: the command is gone, its output is read elsewhere


async def read_chunks(fd: int, size: int = 65536) -> AsyncIterator[bytes]:
    """The data of ``fd`` until its end, without blocking the event loop on a pipe or a
    terminal; a file or ``/dev/null`` (which the event loop cannot watch) is read on a thread."""
    import stat

    mode = os.fstat(fd).st_mode
    may_block = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd))
    while True:
        if may_block:
            await readable(fd)
            data = os.read(fd, size)
        else:  # files and devices like /dev/null answer at once
            data = await asyncio.to_thread(os.read, fd, size)
        if not data:
            return
        yield data


async def readable(fd: int) -> None:
    """Wait until ``fd`` (a pipe, socket or terminal) has data, or its end, to read."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _set_once, ready)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def capture(conn: asyncssh.SSHClientConnection, command: str) -> tuple[int, str]:
    """Run ``command`` and return (exit status, stdout + stderr as text)."""
    chunks: list[bytes] = []
    status = await run(conn, command, chunks.append, chunks.append)
    return status, b"".join(chunks).decode(errors="replace")


async def copy(conn: asyncssh.SSHClientConnection, src: str, dest: str, upload: bool,
               guest: str = "the guest") -> CopyResult:
    """Copy a file or folder to (``upload``) or from the guest over SFTP (see :mod:`.guestcopy`)."""
    from . import guestcopy

    return await guestcopy.copy(conn, src, dest, upload, guest)
