"""The CLI against real VMs (issue 10): `miv inspect` of a running VM, `miv logs -n/--since`,
and the status line `miv run` shows on a terminal while its VM boots."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from minivirt_core.ports import free_port

from .conftest import install_tiny, kill_qemus_under
from .helpers import miv, on_terminal, wait_until

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, tiny_image):
    """A database with a running VM ``web`` of the tiny image (a forward to its port 80),
    reached once over SSH; shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("cli-vm")
    db = install_tiny(folder / "db", tiny_image)
    port = free_port()
    miv(db, "create", "tiny", "web", "-m", "200", "--port", f"{port}:80")
    miv(db, "start", "web", "--daemon", "--wait-for-ssh", "120")
    yield db, port
    miv(db, "destroy", "web", rc=None)
    kill_qemus_under(folder)


def test_inspect_json_of_a_running_vm_has_its_real_qemu_pid_command_line_and_ports(web) -> None:
    db, port = web
    vm_dir = db / "vms" / "web"
    data = json.loads(miv(db, "inspect", "web", "--json").stdout)
    assert data["kind"] == "vm" and data["state"] == "running"
    pid = data["pid"]
    assert pid == int((vm_dir / "qemu.pid").read_text())
    assert os.readlink(f"/proc/{pid}/cwd") == str(vm_dir.resolve())  # that process is this VM's QEMU
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert data["command_line"] == [a.decode() for a in argv] and "qemu-system" in data["command_line"][0]
    assert data["ports"] == [{"host_port": port, "guest_port": 80}]
    (listed,) = json.loads(miv(db, "ps", "--json").stdout)
    assert data["ssh_port"] == listed["ssh_port"] and data["ssh_port"] != port
    assert data["image"]["reference"] == "tiny" and data["image"]["moved"] is False
    assert data["memory"] == 200 and data["disk"]["overlay_size"] > 0 and data["disk"]["virtual_size"] > 0
    assert data["logs"]["serial"] == str(vm_dir / "serial.log") and Path(data["logs"]["serial"]).is_file()
    assert data["started"] <= time.time() and data["uptime"] >= 0
    # The SSH command it gives works as it is.
    proc = subprocess.run([*shlex.split(data["ssh_command"]), "echo", "inspected"], capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.stdout == b"inspected\n", proc.stderr
    text = miv(db, "inspect", "web").stdout.decode()
    assert re.search(rf"^pid: +{pid}$", text, re.M) and "qemu-system" in text


def test_logs_tail_prints_the_last_lines_of_the_serial_log(web) -> None:
    db, _ = web
    out = miv(db, "logs", "web", "-n", "3").stdout
    log = (db / "vms" / "web" / "serial.log").read_bytes()  # an idle guest: it printed nothing meanwhile
    assert len(out.splitlines()) == 3 and out == b"".join(log.splitlines(keepends=True)[-3:])
    assert miv(db, "logs", "web", "--tail", "0").stdout == b""


def test_logs_since_starts_at_the_boot_running_at_that_time(web) -> None:
    db, _ = web
    vm_dir = db / "vms" / "web"
    miv(db, "kill", "web")
    first_boot = (vm_dir / "serial.log").read_bytes()
    between = time.time()
    wait_until(lambda: time.time() > between + 0.01, 5, "the clock to move on")
    miv(db, "start", "web", "--daemon", "--wait-for-ssh", "120")
    everything = miv(db, "logs", "web").stdout
    assert everything.startswith(first_boot) and len(everything) > len(first_boot)
    # Between the two boots: exactly what the second printed.
    assert miv(db, "logs", "web", "--since", f"{between:.3f}").stdout == everything[len(first_boot):]
    assert miv(db, "logs", "web", "--since", "1h").stdout == everything  # both boots began within the hour
    assert miv(db, "logs", "web", "--since", "0s").stdout == b""  # the idle guest printed nothing since now
    assert miv(db, "logs", "web", "--since", "1h", "-n", "1").stdout == everything.splitlines(keepends=True)[-1]


ERASE = b"\r\x1b[K"


def test_run_on_a_terminal_shows_a_status_line_that_the_output_replaces(tiny_db: Path) -> None:
    rc, out = on_terminal(tiny_db, "run", "tiny", "echo from-the-guest")
    assert rc == 0, out
    assert b"booting a VM of tiny" in out and b"waiting for SSH" in out
    output_at = out.index(b"from-the-guest")
    # The status line was erased before the command's output, and never drawn again after it.
    assert out.rindex(ERASE, 0, output_at) > out.rindex(b"waiting for SSH", 0, output_at)
    assert b"waiting for SSH" not in out[output_at:] and b"booting" not in out[output_at:]


def test_run_piped_prints_nothing_but_the_commands_output(tiny_db: Path) -> None:
    proc = miv(tiny_db, "run", "tiny", "echo from-the-guest")
    assert proc.stdout == b"from-the-guest\n"
    assert proc.stderr == b""
