"""The first SSH login to a VM, against a real SSH server (asyncssh's, on a port of
127.0.0.1, running commands in a real shell in a temporary home): which keys are offered,
and that the connection which saw the banner is the one logged into."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncssh

from minivirt_core import ssh, sshwait, vmkey


class _Server(asyncssh.SSHServer):
    """Accepts root with the keys in its home's ``.ssh/authorized_keys`` (read at each
    offer, as dropbear does) and records the keys offered, in order, and every connection."""

    def __init__(self, home: Path, offered: list[str], connections: list[object]) -> None:
        self.home, self.offered, self.connections = home, offered, connections

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.connections.append(conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        line = key.export_public_key("openssh").decode().split()[1]
        if line not in self.offered:  # (asked once for the offer, once for the signed request)
            self.offered.append(line)
        authorized = (self.home / ".ssh" / "authorized_keys").read_text()
        return username == "root" and line in authorized


async def _serve(home: Path, offered: list[str], connections: list[object],
                 host_keys: tuple[str, ...] = ("ssh-ed25519",)) -> asyncssh.SSHAcceptor:
    async def run_in_shell(process: asyncssh.SSHServerProcess) -> None:
        proc = await asyncio.create_subprocess_shell(
            process.command or "true", env={"HOME": str(home), "PATH": os.environ["PATH"]}, cwd=home,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        process.stdout.write(out.decode())
        process.exit(proc.returncode or 0)

    return await asyncssh.create_server(
        lambda: _Server(home, offered, connections), "127.0.0.1", 0,
        server_host_keys=[asyncssh.generate_private_key(k) for k in host_keys], process_factory=run_in_shell)


async def _serve_well_known(tmp_path: Path, connections: list[object]) -> tuple[asyncssh.SSHAcceptor, int]:
    """A server whose root accepts the well-known key; (server, port)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "authorized_keys").write_text(ssh.public_key_text() + "\n")
    server = await _serve(home, [], connections)
    return server, server.sockets[0].getsockname()[1]


def _blob(private_key: bytes) -> str:
    return vmkey.public_line(private_key).split()[1]


async def test_a_first_contact_offers_the_well_known_key_first_and_then_only_the_vms_own(tmp_path: Path) -> None:
    """Regression (speed): the first contact offered the VM's own key first, which the guest
    could not hold yet; dropbear answers a refused key after a pause (~0.3 s, 0.56 s seen
    right after a boot), so every first login waited for it."""
    home, vm_dir = tmp_path / "home", tmp_path / "vm"
    (home / ".ssh").mkdir(parents=True)
    vm_dir.mkdir()
    (home / ".ssh" / "authorized_keys").write_text(ssh.public_key_text() + "\n")
    offered: list[str] = []
    server = await _serve(home, offered, [])
    port = server.sockets[0].getsockname()[1]
    try:
        conn = await vmkey.connect(vm_dir, "v", port)
        conn.close()
        own = _blob((vm_dir / "ssh-key").read_bytes())
        assert offered == [_blob(ssh.private_key_bytes())]  # never our key: the guest could not hold it
        authorized = (home / ".ssh" / "authorized_keys").read_text()
        assert own in authorized and _blob(ssh.private_key_bytes()) not in authorized

        offered.clear()  # the next contact: the VM's own key only
        conn = await vmkey.connect(vm_dir, "v", port)
        conn.close()
        assert offered == [own]
    finally:
        server.close()


async def test_the_login_after_the_banner_wait_uses_the_connection_that_saw_the_banner(tmp_path: Path) -> None:
    """Regression (speed): the login after the banner wait opened a connection of its own,
    which costs the guest's SSH server another process (and the login its start-up)."""
    connections: list[object] = []
    server, port = await _serve_well_known(tmp_path, connections)
    try:
        sock = await sshwait.wait_for_banner(port, 10, keep=True)
        assert sock is not None
        conn = await ssh.connect(port, 10, sock=sock)
        try:
            assert (await ssh.capture(conn, "echo hi")) == (0, "hi\n")
        finally:
            conn.close()
        assert len(connections) == 1
        # Without `keep`, the wait closes what it opened.
        assert await sshwait.wait_for_banner(port, 10) is None
    finally:
        server.close()


async def test_a_kept_connection_that_went_stale_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    """A connection handed to the login that the server closed meanwhile (a guest's SSH
    server gives up on a silent client) costs a retry, never the login."""
    connections: list[object] = []
    server, port = await _serve_well_known(tmp_path, connections)
    try:
        sock = await sshwait.wait_for_banner(port, 10, keep=True)
        assert sock is not None
        for c in connections:
            c.abort()  # type: ignore[attr-defined]  # the server drops it
        conn = await ssh.connect(port, 10, sock=sock)
        conn.close()
        assert len(connections) == 2
    finally:
        server.close()


async def test_logins_ask_for_the_guests_ed25519_host_key(tmp_path: Path) -> None:
    """Regression (speed): logins let the guest sign with its RSA host key, which costs an
    emulated guest ~60 ms more per login than ed25519 (tiny guest, under load)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "authorized_keys").write_text(ssh.public_key_text() + "\n")
    server = await _serve(home, [], [], host_keys=("ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519"))
    try:
        conn = await ssh.connect(server.sockets[0].getsockname()[1], 10)
        host_key = conn.get_server_host_key()
        conn.close()
        assert host_key is not None and host_key.get_algorithm() == "ssh-ed25519"
    finally:
        server.close()
