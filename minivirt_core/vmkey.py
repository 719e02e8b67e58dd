"""A VM's own SSH key, in place of the well-known one (what Vagrant does).

Images accept root with Vagrant's well-known insecure key, so anybody on this machine who
can reach a VM's 127.0.0.1 port could log in. On minivirt's first SSH connection to a VM,
the well-known key is taken out of the guest's ``~root/.ssh/authorized_keys`` and a key
made for this VM (ed25519, ``ssh-key`` in the VM folder, 0600) put in; its line carries the
comment ``minivirt-vm-key``, and the well-known key's line is kept aside in the guest
(``~/.ssh/minivirt-well-known-key``). Other lines of the file are left as they are.

Whoever gets an image must be able to log in with the well-known key, so a graceful stop
puts it back just before powering off (after closing the VM's forwarded ports, so nobody
can slip in meanwhile), and ``commit`` of a VM stopped another way (killed, powered off
from inside) boots it briefly to do the same. ``ssh-key.json`` in the VM folder records
what the VM's disk holds; runs with ``--snapshot`` never change it.

Build VMs of recipes keep the well-known key (:func:`keep_well_known`): the image they
make must accept it, and a recipe's steps may edit ``authorized_keys`` themselves.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import layout, ssh
from .database import read_json
from .errors import ExternalError
from .fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text, flock_async
from .ports import LOOPBACK

if TYPE_CHECKING:
    import socket

    import asyncssh

VM_KEY_COMMENT = "minivirt-vm-key"
SESSION_ATTEMPTS = 3
GUEST_SAVED_KEY = "minivirt-well-known-key"  # in the guest's ~/.ssh: the well-known key's line(s)


@dataclass(frozen=True)
class KeyState:
    """What ``ssh-key.json`` records: which key root's ``authorized_keys`` holds on the
    VM's disk (``own`` is True once it is the VM's own key), and whether this VM keeps the
    well-known key for good (build VMs)."""

    own: bool = False
    keep_well_known: bool = False

    @classmethod
    def read(cls, vm_dir: Path) -> KeyState:
        """The VM's state; a missing or malformed file means nothing was replaced yet."""
        raw = read_json(vm_dir / layout.VM_SSH_KEY_STATE)
        if not isinstance(raw, dict):
            return cls()
        return cls(own=raw.get("disk_key") == "own", keep_well_known=raw.get("keep_well_known") is True)

    def write(self, vm_dir: Path) -> None:
        """Record this state in the VM folder (atomically)."""
        atomic_write_json(vm_dir / layout.VM_SSH_KEY_STATE,
                          {"disk_key": "own" if self.own else "well-known", "keep_well_known": self.keep_well_known},
                          mode=0o600)


def keep_well_known(vm_dir: Path) -> None:
    """Never replace the well-known key in this VM (build VMs of recipes)."""
    replace(KeyState.read(vm_dir), keep_well_known=True).write(vm_dir)


def own_key(vm_dir: Path) -> bytes:
    """The VM's own private key (OpenSSH format), made on first use; when two processes
    make it at once, both end up with the first one written."""
    path = vm_dir / layout.VM_SSH_KEY
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519", comment=VM_KEY_COMMENT)
    tmp = vm_dir / f".{layout.VM_SSH_KEY}.{os.urandom(6).hex()}.tmp"
    atomic_write_bytes(tmp, key.export_private_key("openssh"), mode=0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


def prepare_login(vm_dir: Path) -> None:
    """Start, in a thread, what the VM's first login needs: the SSH client's import (~0.2 s
    of CPU), minivirt's keys imported, the VM's own key made. For while the VM boots or
    restores; an error surfaces at the login."""

    def work() -> None:
        ssh.client_key(ssh.private_key_bytes())
        if not KeyState.read(vm_dir).keep_well_known:
            ssh.client_key(own_key(vm_dir))

    task = asyncio.ensure_future(asyncio.to_thread(work))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def connect(vm_dir: Path, name: str, port: int, snapshot: bool = False, timeout: float = 30.0,
                  sock: socket.socket | None = None,
                  alongside: Callable[[asyncssh.SSHClientConnection], Awaitable[None]] | None = None,
                  ) -> asyncssh.SSHClientConnection:
    """A root SSH connection to the VM at ``port``, with the VM's own key, replacing the
    well-known key in the guest first when needed; writes the VM's ``ssh-config``.

    ``snapshot``: this run's disk writes are discarded, so the replacement is made in the
    running guest but not recorded for the disk. ``sock``: a connection to the port made
    already (its banner unread), used for the first login attempt. ``alongside``: work to
    do over the connection meanwhile (a channel of its own); both are done on return."""
    conn, replacement = await open_first(vm_dir, name, port, snapshot, timeout, sock)
    await finish_first(conn, replacement, alongside)
    return conn


async def finish_first(conn: asyncssh.SSHClientConnection, replacement: asyncio.Task[None] | None,
                       alongside: Callable[[asyncssh.SSHClientConnection], Awaitable[None]] | None = None) -> None:
    """Wait for ``replacement`` (from :func:`open_first`) and ``alongside`` work on ``conn``
    (a channel of its own), done side by side; on a failure of either, ``conn`` is closed."""
    work = [task for task in (replacement, asyncio.ensure_future(alongside(conn)) if alongside else None)
            if task is not None]
    try:
        await asyncio.gather(*work)
    except BaseException:
        for task in work:
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        conn.close()
        raise


@asynccontextmanager
async def session(vm_dir: Path, name: str, port: int, snapshot: bool = False, timeout: float = 30.0,
                  throwaway: bool = False, sock: socket.socket | None = None,
                  ) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """A :func:`connect` connection for a block of work, closed after it.

    ``throwaway``: the VM is destroyed right after the block (``miv run``). Then a first
    contact's replacement of the well-known key runs on its own channel while the block
    runs instead of before it (it costs about a login's time under emulation); the
    replacement lock is held until it is done, so nobody else logs in halfway. When the
    block ends first, the replacement is abandoned (its key would protect nothing any
    more); when it failed on a connection still up, its error is raised then."""
    if not throwaway:
        conn = await connect(vm_dir, name, port, snapshot, timeout, sock)
        try:
            yield conn
        finally:
            conn.close()
        return
    conn, replacement = await open_first(vm_dir, name, port, snapshot, timeout, sock)
    async with replacing_alongside(conn, replacement):
        yield conn


@asynccontextmanager
async def replacing_alongside(conn: asyncssh.SSHClientConnection,
                              replacement: asyncio.Task[None] | None) -> AsyncIterator[None]:
    """A block of work on ``conn`` while ``replacement`` (from :func:`open_first`) replaces
    the well-known key on its own channel, for a throw-away VM; ``conn`` is closed after.
    When the block ends first, the replacement is abandoned (its key would protect nothing
    any more); when it failed on a connection still up, its error is raised then."""
    try:
        yield
        if replacement is not None and replacement.done() and not conn.is_closed():
            replacement.result()  # its failure, if any, while the guest is still there
    finally:
        if replacement is not None and not replacement.done():
            replacement.cancel()
        if replacement is not None:
            await asyncio.gather(replacement, return_exceptions=True)  # (its lock is released)
        conn.close()


async def open_first(vm_dir: Path, name: str, port: int, snapshot: bool = False, timeout: float = 30.0,
                     sock: socket.socket | None = None,
                     ) -> tuple[asyncssh.SSHClientConnection, asyncio.Task[None] | None]:
    """A connection, and the task replacing the well-known key over it, started (None
    when not needed): the replacement lock is held until that task is done. The caller
    awaits the task (:func:`connect`) or runs it alongside its work (:func:`replacing_alongside`)."""
    state = KeyState.read(vm_dir)
    if state.keep_well_known:
        conn = await ssh.connect(port, timeout, sock=sock)
        _write_ssh_config(vm_dir, name, port, _well_known_copy(vm_dir))
        return conn, None
    key = own_key(vm_dir)
    if state.own and not snapshot:
        if (ours := await _own_key_login(vm_dir, name, port, key, timeout, sock)) is not None:
            return ours, None
        sock = None  # (used up)
    # One replacement at a time: a second process (or task) connecting meanwhile could
    # offer the well-known key just after the first one took it out, and be refused.
    lock = await _lock_replacing(vm_dir)
    try:
        if not state.own and not snapshot and KeyState.read(vm_dir).own:
            # Replaced by another process while we waited for the lock.
            if (ours := await _own_key_login(vm_dir, name, port, key, timeout, sock)) is not None:
                os.close(lock)
                return ours, None
            sock = None
        # The key the guest most likely holds first: each key it refuses costs a pause of
        # its SSH server (dropbear: ~0.3 s). Before the first replacement that is the
        # well-known key; our own key follows for a replacement whose record was lost (a
        # crash). A --snapshot run's guest holds ours after its first contact.
        keys = [key, ssh.private_key_bytes()] if snapshot else [ssh.private_key_bytes(), key]
        conn = await ssh.connect(port, timeout, keys=keys, sock=sock)
    except BaseException:
        os.close(lock)
        raise

    async def replace_key() -> None:
        try:
            await _run_script(conn, _install_script(public_line(key)), "replace the well-known SSH key")
            if not snapshot:
                replace(KeyState.read(vm_dir), own=True).write(vm_dir)
            _write_ssh_config(vm_dir, name, port, vm_dir / layout.VM_SSH_KEY)
        finally:
            os.close(lock)

    return conn, asyncio.create_task(replace_key())


async def _own_key_login(vm_dir: Path, name: str, port: int, key: bytes, timeout: float,
                         sock: socket.socket | None) -> asyncssh.SSHClientConnection | None:
    """A login with the VM's own key only; None when the guest refuses it (its
    ``authorized_keys`` edited by hand: then the key is replaced again)."""
    try:
        conn = await ssh.connect(port, timeout, keys=[key], sock=sock)
    except ssh.KeyRefused:
        return None
    _write_ssh_config(vm_dir, name, port, vm_dir / layout.VM_SSH_KEY)
    return conn


async def _lock_replacing(vm_dir: Path) -> int:
    """Take the VM's key-replacement lock (an ``flock`` of its own open file, so it
    excludes other processes and other tasks of this one) without blocking the loop;
    returns the descriptor whose closing releases it."""
    fd = os.open(vm_dir / layout.VM_SSH_KEY_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        await flock_async(fd)  # the holder is one SSH login and one script away from done
    except BaseException:
        os.close(fd)
        raise
    return fd


async def put_back(vm_dir: Path, port: int, close_ports: Callable[[], Awaitable[None]] | None = None,
                   timeout: float = 20.0) -> None:
    """Put the well-known key back in the running guest (and record it), removing the VM's
    own key; ``close_ports`` runs once our connection is up, before the change."""
    conn = await ssh.connect(port, timeout, keys=[own_key(vm_dir), ssh.private_key_bytes()])
    try:
        if close_ports is not None:
            await close_ports()
        await _run_script(conn, _restore_script(), "put back the well-known SSH key")
    finally:
        conn.close()
    replace(KeyState.read(vm_dir), own=False).write(vm_dir)
    (vm_dir / layout.VM_SSH_CONFIG).unlink(missing_ok=True)


def write_ssh_config_at_start(vm_dir: Path, name: str, port: int) -> None:
    """At start: an ``ssh-config`` naming the key the guest accepts, when that is known
    already (else it is written on first contact); a stale one is removed."""
    state = KeyState.read(vm_dir)
    if state.keep_well_known:
        _write_ssh_config(vm_dir, name, port, _well_known_copy(vm_dir))
    elif state.own and (vm_dir / layout.VM_SSH_KEY).is_file():
        _write_ssh_config(vm_dir, name, port, vm_dir / layout.VM_SSH_KEY)
    else:
        (vm_dir / layout.VM_SSH_CONFIG).unlink(missing_ok=True)


# Helpers -------------------------------------------------------------------


def public_line(private_key: bytes) -> str:
    """The OpenSSH public key line of ``private_key`` (with its comment)."""
    return ssh.client_key(private_key).export_public_key("openssh").decode().split("\n")[0].strip()


def _well_known_copy(vm_dir: Path) -> Path:
    """A 0600 copy of the well-known private key (OpenSSH refuses readable ones)."""
    path = vm_dir / layout.VM_WELL_KNOWN_KEY
    atomic_write_bytes(path, ssh.private_key_bytes(), mode=0o600)
    return path


def _write_ssh_config(vm_dir: Path, name: str, port: int, key_path: Path) -> None:
    config = (
        f"Host {name} {name}.miv\n"
        f"  HostName {LOOPBACK}\n"
        f"  Port {port}\n"
        f"  User {ssh.USER}\n"
        f"  IdentityFile {key_path}\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n"
    )
    atomic_write_text(vm_dir / layout.VM_SSH_CONFIG, config, mode=0o600)


def _well_known_blob() -> str:
    return ssh.public_key_text().split()[1]


# Both scripts run as root in the guest's POSIX sh (busybox, dash, bash), are idempotent,
# and replace authorized_keys by a rename (restorecon keeps SELinux guests happy).
# No sync after installing our key: if the guest loses that write (a crash), its disk
# still holds the well-known key, and the next contact replaces it again. Putting the
# well-known key back syncs (an image must never be committed without it).
_REWRITE = """
mv -f authorized_keys.minivirt.$$ authorized_keys
if command -v restorecon >/dev/null 2>&1; then restorecon authorized_keys || true; fi
"""


def _install_script(public_line: str) -> str:
    wk, tag = shlex.quote(_well_known_blob()), shlex.quote(" " + VM_KEY_COMMENT)
    return f"""set -e
umask 077
cd
mkdir -p .ssh
cd .ssh
touch authorized_keys
if grep -q -F -e {wk} authorized_keys; then grep -F -e {wk} authorized_keys > {GUEST_SAVED_KEY}; fi
{{ grep -v -F -e {wk} -e {tag} authorized_keys || true; printf '%s\\n' {shlex.quote(public_line)}; }} \\
  > authorized_keys.minivirt.$$
{_REWRITE}"""


def _restore_script() -> str:
    wk, tag = shlex.quote(_well_known_blob()), shlex.quote(" " + VM_KEY_COMMENT)
    return f"""set -e
umask 077
cd
cd .ssh
if [ -f {GUEST_SAVED_KEY} ]; then
  {{ grep -v -F -e {wk} -e {tag} authorized_keys || true; cat {GUEST_SAVED_KEY}; }} > authorized_keys.minivirt.$$
else
  {{ grep -v -F -e {tag} authorized_keys || true; }} > authorized_keys.minivirt.$$
fi
{_REWRITE}rm -f {GUEST_SAVED_KEY}
sync
"""


async def _run_script(conn: asyncssh.SSHClientConnection, script: str, what: str) -> None:
    """Run one of the scripts above as root. A session the guest's SSH server refuses is
    asked again (dropbear has been seen refusing one, once in a while, right after a
    boot under heavy load); what still fails is an :class:`ExternalError`."""
    import asyncssh

    for attempt in range(SESSION_ATTEMPTS):
        try:
            status, output = await ssh.capture(conn, script)
            break
        except ssh.SessionRefused as e:
            if attempt + 1 == SESSION_ATTEMPTS:
                raise ExternalError(f"could not {what} in the guest: {e.message}", hint=e.hint) from e
            await asyncio.sleep(0.2 * (attempt + 1))
        except (OSError, asyncssh.Error) as e:
            raise ExternalError(f"could not {what} in the guest: the SSH connection failed ({e})") from e
    if status != 0:
        raise ExternalError(f"could not {what} in the guest (exit status {status}): {output.strip()[-300:]}",
                            hint="The guest's root needs a writable ~/.ssh and a POSIX sh with grep.")
