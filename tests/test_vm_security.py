"""What a guest, or another local user, must not be able to do to the host or to a VM:
real QEMU (the tiny guest) and the real `miv` command."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from .helpers import MIV, miv

pytestmark = pytest.mark.vm
BOOT = "120"
UNSAFE = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWOTH


@pytest.fixture
def running(tiny_db: Path):
    """A running VM `v` of the tiny image."""
    miv(tiny_db, "create", "tiny", "v", "-m", "200")
    miv(tiny_db, "start", "v", "--daemon", "--wait-for-ssh", BOOT)
    yield tiny_db
    miv(tiny_db, "destroy", "v", rc=None)


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_cp_out_of_a_guest_drops_setuid_setgid_sticky_and_world_write(running: Path, tmp_path: Path) -> None:
    miv(running, "ssh", "v", "mkdir -p /root/t/sub && cd /root/t && cp /bin/busybox suid && chmod 4777 suid"
        " && echo g > sgid && chmod 2755 sgid && chmod 1777 sub && echo w > sub/w && chmod 0666 sub/w"
        " && ln -s /etc/shadow out && mkfifo fifo")
    env = {**os.environ, "MINIVIRT_DB_PATH": str(running)}
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
    miv(running, "cp", "v:/root/t/suid", str(tmp_path / "one"))
    assert victim.read_text() == "untouched"
    one = (tmp_path / "one").lstat()
    assert stat.S_ISREG(one.st_mode) and not one.st_mode & UNSAFE and stat.S_IMODE(one.st_mode) == 0o775
