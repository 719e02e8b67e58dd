"""What a guest, or another local user, must not be able to do to the host or to a VM:
real QEMU (the tiny guest) and the real `miv` command."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from .conftest import kill_qemus_under
from .helpers import MIV, miv

pytestmark = pytest.mark.vm
BOOT = "120"
UNSAFE = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWOTH


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_cp_out_of_a_guest_drops_setuid_setgid_sticky_and_world_write(running_vm: Path, tmp_path: Path) -> None:
    miv(running_vm, "ssh", "v", "mkdir -p /root/t/sub && cd /root/t && cp /bin/busybox suid && chmod 4777 suid"
        " && echo g > sgid && chmod 2755 sgid && chmod 1777 sub && echo w > sub/w && chmod 0666 sub/w"
        " && ln -s /etc/shadow out && mkfifo fifo")
    env = {**os.environ, "MINIVIRT_DB_PATH": str(running_vm)}
    # umask 000: nothing may become writable by others through the umask either.
    proc = subprocess.run([MIV, "cp", "v:/root/t", str(tmp_path / "t")], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, umask=0, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modes = _modes(tmp_path / "t")
    assert modes == {".": 0o755, "suid": 0o775, "sgid": 0o755, "sub": 0o775, "sub/w": 0o664}, modes
    assert b"skipped out: a link that leads out of the copy" in proc.stderr
    assert b"skipped fifo: not a file, folder or link" in proc.stderr
    # One file, over a link planted where it goes: the link is replaced, not written through.
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "one").symlink_to(victim)
    miv(running_vm, "cp", "v:/root/t/suid", str(tmp_path / "one"))
    assert victim.read_text() == "untouched"
    one = (tmp_path / "one").lstat()
    assert stat.S_ISREG(one.st_mode) and not one.st_mode & UNSAFE and stat.S_IMODE(one.st_mode) == 0o775


# The per-VM key ---------------------------------------------------------------


def _ssh_port(db: Path, name: str) -> int:
    return {v["name"]: v for v in json.loads(miv(db, "ps", "--json").stdout)}[name]["ssh_port"]


def _well_known_key_works(port: int, command: str = "true") -> tuple[bool, str]:
    """Log in with the well-known key alone, as any local user could; (accepted, output)."""
    from minivirt_core import ssh
    from minivirt_core.errors import ExternalError

    async def attempt() -> tuple[bool, str]:
        try:
            conn = await ssh.connect(port, 60)
        except ExternalError as e:
            assert "refused" in e.message, e
            return False, ""
        try:
            return True, (await ssh.capture(conn, command))[1]
        finally:
            conn.close()

    return asyncio.run(attempt())


def test_a_vm_refuses_the_well_known_key_after_first_contact_and_its_image_accepts_it_again(
        tiny_db: Path, tmp_path: Path) -> None:
    miv(tiny_db, "create", "tiny", "v", "-m", "200")
    miv(tiny_db, "start", "v", "--daemon", "--wait-for-ssh", BOOT)  # waiting for SSH is first contact
    vm_dir = tiny_db / "vms" / "v"
    try:
        # Before: any local user could log in as root with Vagrant's public insecure key.
        assert _well_known_key_works(_ssh_port(tiny_db, "v")) == (False, "")
        key = vm_dir / "ssh-key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        import asyncssh

        assert asyncssh.import_private_key(key.read_bytes()).get_algorithm() == "ssh-ed25519"
        # The VM's key works everywhere: miv ssh, cp, and plain ssh with the written ssh-config.
        assert miv(tiny_db, "ssh", "v", "hostname").stdout == b"tiny\n"
        (tmp_path / "up").write_text("uploaded\n")
        miv(tiny_db, "cp", str(tmp_path / "up"), "v:/root/marker")
        plain = subprocess.run(["ssh", "-F", str(vm_dir / "ssh-config"), "v", "cat", "/root/marker"],
                               capture_output=True, timeout=60)
        assert plain.stdout == b"uploaded\n", plain.stderr
        assert b"IdentityFile " + str(key).encode() in (vm_dir / "ssh-config").read_bytes()
        # Only the well-known key's line was swapped: other lines of authorized_keys stay.
        miv(tiny_db, "ssh", "v", "echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeep keep-me' >> .ssh/authorized_keys")
    finally:
        miv(tiny_db, "stop", "v")
    # A graceful stop put the well-known key back: the image opens with it, elsewhere.
    assert b"booting" not in miv(tiny_db, "commit", "v", "shared").stderr  # nothing left to do
    miv(tiny_db, "save", "shared", "-o", str(tmp_path / "shared.tar"))
    other = tmp_path / "other-db"
    miv(other, "load", "shared", "-i", str(tmp_path / "shared.tar"))
    out = miv(other, "run", "shared", "-m", "200", "cat /root/marker; grep -c keep-me .ssh/authorized_keys").stdout
    assert out == b"uploaded\n1\n"
    assert os.listdir(other / "vms") == []
    # And the VM itself starts again and replaces the key again on first contact.
    miv(tiny_db, "start", "v", "--daemon", "--wait-for-ssh", BOOT)
    try:
        assert _well_known_key_works(_ssh_port(tiny_db, "v")) == (False, "")
        assert miv(tiny_db, "ssh", "v", "grep -c . .ssh/authorized_keys").stdout == b"2\n"  # ours + keep-me
    finally:
        miv(tiny_db, "destroy", "v")


def test_commit_of_a_killed_vm_puts_the_well_known_key_back_first(tiny_db: Path) -> None:
    from minivirt_core import ssh, sshwait

    original = ssh.public_key_text() + "\n"  # root's authorized_keys in the tiny image
    miv(tiny_db, "create", "tiny", "v", "-m", "200")
    miv(tiny_db, "start", "v", "--daemon", "--wait-for-ssh", BOOT)
    miv(tiny_db, "kill", "v")  # no chance to put the well-known key back
    proc = miv(tiny_db, "commit", "v", "after-kill", timeout=600)
    assert b"booting it briefly" in proc.stderr
    assert json.loads(miv(tiny_db, "ps", "-a", "--json").stdout)[0]["state"] == "stopped"
    # Never an image that only the VM's private key opens.
    miv(tiny_db, "create", "after-kill", "w", "-m", "200")
    miv(tiny_db, "start", "w", "--daemon")  # no first contact: the guest is as the image made it
    try:
        asyncio.run(sshwait.wait_for_banner(_ssh_port(tiny_db, "w"), float(BOOT)))
        accepted, keys = _well_known_key_works(_ssh_port(tiny_db, "w"),
                                               "cat .ssh/authorized_keys; ls .ssh")
        assert accepted
        assert keys == original + "authorized_keys\n"  # as it was, nothing of ours left
    finally:
        miv(tiny_db, "destroy", "v", "w")


# Permissions of the database ---------------------------------------------------


@pytest.fixture
def reachable_tmp():
    """A folder another user may traverse (pytest's own temporary folders are private
    to their owner, so they would hide what this test looks for)."""
    path = Path(tempfile.mkdtemp(prefix="miv-perms-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)
    kill_qemus_under(path)


def test_database_is_private_to_its_owner_whatever_the_umask(tiny_image, reachable_tmp: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to try as another user")
    old_umask = os.umask(0o022)  # folders made here (an older database) and by miv: 0755 / 0644
    try:
        db = reachable_tmp / "db"
        image = db / "images" / tiny_image.id
        image.mkdir(parents=True)
        for name in ("config.json", "disk.qcow2"):
            shutil.copyfile(tiny_image.path / name, image / name)
        (db / "images" / "tiny").symlink_to(tiny_image.id)
        (reachable_tmp / "remote").mkdir()
        miv(db, "create", "tiny", "v", "-m", "200")
        miv(db, "start", "v", "--daemon", "--wait-for-ssh", BOOT)
        miv(db, "ssh", "v", "hostname")
        miv(db, "remote", "add", "r", f"file://{reachable_tmp / 'remote'}")
        miv(db, "stop", "v")
    finally:
        os.umask(old_umask)
    vm = db / "vms" / "v"
    for folder in (db, db / "images", db / "vms", db / "staging", vm):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for private in (vm / "ssh-key", vm / "ssh-key.json"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    for secret in (vm / "disk.qcow2", vm / "serial.log", vm / "qemu.log", vm / "ssh-key", vm / "config.json",
                   db / "remotes.json", image / "disk.qcow2"):
        assert secret.exists(), secret
        proc = subprocess.run([*as_nobody, "cat", str(secret)], capture_output=True, timeout=30)
        assert proc.returncode != 0 and b"Permission denied" in proc.stderr, secret
    assert subprocess.run([*as_nobody, "ls", str(db)], capture_output=True, timeout=30).returncode != 0
    # The owner still uses it as before.
    assert b"tiny" in miv(db, "images").stdout
    miv(db, "destroy", "v")


# The network ----------------------------------------------------------------------


@pytest.fixture
def host_listener():
    """A TCP service on the host's 127.0.0.1 that greets whoever connects."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello-from-the-host\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_isolated_vm_cannot_reach_the_host_but_ssh_works(tiny_db: Path, host_listener: int) -> None:
    probe = f"nc -w 10 10.0.2.2 {host_listener} </dev/null; echo status=$?"
    # Without --isolated, QEMU's user networking lets a guest reach the host's loopback.
    assert b"hello-from-the-host" in miv(tiny_db, "run", "tiny", "-m", "200", probe).stdout
    out = miv(tiny_db, "run", "tiny", "-m", "200", "--isolated", probe).stdout
    assert b"hello-from-the-host" not in out and b"status=1" in out
    # Kept by the VM's config: every start of it is isolated; forwards into it still work.
    miv(tiny_db, "create", "tiny", "iso", "-m", "200", "--isolated")
    assert json.loads((tiny_db / "vms" / "iso" / "config.json").read_text())["isolated"] is True
    miv(tiny_db, "start", "iso", "--daemon", "--wait-for-ssh", BOOT)
    try:
        out = miv(tiny_db, "ssh", "iso", probe).stdout
        assert b"hello-from-the-host" not in out and b"status=1" in out
    finally:
        miv(tiny_db, "destroy", "iso")


def test_a_throwaway_run_takes_the_well_known_key_out_while_its_command_runs(tiny_db: Path) -> None:
    """`miv run` replaces the well-known key alongside the user's command (not before it,
    to start the command sooner): the guest still stops accepting it during the run."""
    from minivirt_core import ssh

    blob = ssh.public_key_text().split()[1]
    wait_for_ours = ("i=0; until grep -q minivirt-vm-key .ssh/authorized_keys; do "
                     "i=$((i+1)); [ $i -gt 1200 ] && break; sleep 0.1; done")
    out = miv(tiny_db, "run", "tiny", "-m", "200",
              f"{wait_for_ours}; grep -c minivirt-vm-key .ssh/authorized_keys; grep -c -F {blob} .ssh/authorized_keys"
              " || true").stdout
    assert out == b"1\n0\n"
    assert os.listdir(tiny_db / "vms") == []


def test_parallel_first_contacts_all_get_in(tiny_db: Path) -> None:
    """Regression: two `miv` processes making a VM's first SSH contact at once could fail one
    with "the guest refused minivirt's SSH key": it offered the well-known key just after the
    other had taken it out. Each round starts with the well-known key (a graceful stop puts
    it back), and four `miv ssh` race to replace it."""
    miv(tiny_db, "create", "tiny", "v", "-m", "200")
    env = {**os.environ, "MINIVIRT_DB_PATH": str(tiny_db)}
    try:
        for _ in range(2):
            miv(tiny_db, "start", "v", "--daemon")
            procs = [subprocess.Popen([MIV, "ssh", "v", "hostname"], env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
            results = [(p.wait(timeout=240), *p.communicate()) for p in procs]
            for rc, out, err in results:
                assert (rc, out) == (0, b"tiny\n"), err.decode(errors="replace")
            miv(tiny_db, "stop", "v")
            state = json.loads((tiny_db / "vms" / "v" / "ssh-key.json").read_text())
            assert state["disk_key"] == "well-known", (state, miv(tiny_db, "logs", "v").stdout[-800:])
    finally:
        miv(tiny_db, "destroy", "v", rc=None)
