"""This process's SSH reach into a VM (vmssh.py) on the real tiny guest."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.vm
@pytest.mark.slow
async def test_stop_kill_and_destroy_close_the_connection_kept_for_a_login(tiny_db: Path) -> None:
    """The connection that saw a VM's SSH server answer, kept for this process's next login,
    is closed when the VM stops, is killed or destroyed: it would leak, and hold a process
    of the guest's SSH server, for as long as the process lives."""
    from minivirt_core import Minivirt

    vms = Minivirt(tiny_db).vms
    await vms.create("tiny", "k", memory=200)
    for end in (vms.stop, vms.kill, vms.destroy):
        await vms.start("k", cold=True)
        await vms.wait_for_ssh("k", 120, keep=True)
        kept = vms.ssh._kept_sockets["k"][2]
        assert kept.fileno() != -1
        await end("k")
        assert kept.fileno() == -1, f"{end.__name__} left the kept connection open"
        assert not vms.ssh.has_kept_socket("k")
