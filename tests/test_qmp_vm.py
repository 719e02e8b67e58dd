"""One QMP client per VM at a time: conversations with a VM's QEMU queue instead of hanging."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minivirt_core.qemu import monitor

from .helpers import wait_until

QUERY = ("import asyncio, sys; from minivirt_core.qemu import monitor; from pathlib import Path; "
         "print(asyncio.run(monitor.execute(Path(sys.argv[1]), 'query-status', timeout=2))['status'])")


def _holds_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@pytest.mark.vm
def test_concurrent_qmp_users_queue_rather_than_hang(running_vm: Path) -> None:
    """While one conversation holds the QMP socket for longer than the others' connect
    timeout (2 s), two other processes and three tasks of this one ask too: all get their
    answer once it is free. Without the lock QEMU accepts their connections but sends no
    greeting, and every one of them fails after 2 s."""
    vm_dir = (running_vm / "vms" / "v").resolve()
    qmp = vm_dir / "qmp.sock"

    async def scenario() -> list[str]:
        async with monitor.session(qmp) as client:
            procs = [subprocess.Popen([sys.executable, "-c", QUERY, str(qmp)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE) for _ in range(2)]
            tasks = [asyncio.create_task(monitor.execute(qmp, "query-status", timeout=2)) for _ in range(3)]
            await asyncio.to_thread(wait_until, lambda: all(_holds_open(p.pid, vm_dir / "qmp.lock") for p in procs),
                                    60, "the other processes to wait for the QMP lock")
            # Keep talking (not idle) past the others' 2 s connect timeout.
            until = time.monotonic() + 3
            while time.monotonic() < until:
                assert (await monitor.run(client, "query-status"))["status"] == "running"
        answers = [(await t)["status"] for t in tasks]
        for p in procs:
            out, err = await asyncio.to_thread(p.communicate, timeout=60)
            assert p.returncode == 0, err.decode()
            answers.append(out.decode().strip())
        return answers

    assert asyncio.run(scenario()) == ["running"] * 5
