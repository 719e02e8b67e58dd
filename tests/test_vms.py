"""VMs on real QEMU: the tiny guest under TCG, driven through the real `miv` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from .helpers import MIV, guest_runs, miv, wait_until

pytestmark = pytest.mark.vm
BOOT = "60"


def _ps(db: Path) -> dict[str, dict]:
    return {v["name"]: v for v in json.loads(miv(db, "ps", "-a", "--json").stdout)}


def _qemu_pids(db: Path) -> list[int]:
    """QEMU processes whose working directory is inside this database."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd.startswith(str(db.resolve())):
                pids.append(int(entry))
    return pids


@pytest.fixture
def vm(tiny_db: Path):
    """A running VM `v` of the tiny image, with 200 MiB and a forward 127.0.0.1:P -> 22."""
    port = _free_port()
    miv(tiny_db, "create", "tiny", "v", "-m", "200", "--port", f"{port}:22")
    miv(tiny_db, "start", "v", "--daemon", "--wait-for-ssh", BOOT)
    yield tiny_db, port
    miv(tiny_db, "destroy", "v", rc=None)
    assert _qemu_pids(tiny_db) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_boot_ssh_memory_and_port_forward(vm) -> None:
    db, port = vm
    assert miv(db, "ssh", "v", "hostname").stdout == b"tiny\n"
    meminfo = miv(db, "ssh", "v", "cat /proc/meminfo").stdout.decode()
    total_kb = int(meminfo.split("MemTotal:")[1].split()[0])
    assert 150_000 < total_kb <= 200 * 1024  # 200 MiB minus what the kernel keeps
    # The forward reaches the guest's sshd: it greets us with its banner.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert s.recv(4) == b"SSH-"
    # Exit status of the remote command is miv's; stdin is passed through.
    assert miv(db, "ssh", "v", "exit 7", rc=7).returncode == 7
    assert miv(db, "ssh", "v", "cat", input=b"piped").stdout == b"piped"
    info = _ps(db)["v"]
    assert info["state"] == "running" and info["memory"] == 200 and info["ssh_port"]
    assert info["ports"] == [{"host_port": port, "guest_port": 22}]
    # Plain OpenSSH works with the per-VM config.
    ssh = subprocess.run(["ssh", "-F", str(db / "vms" / "v" / "ssh-config"), "v", "echo", "plain-ssh"],
                         capture_output=True, timeout=60)
    assert ssh.stdout == b"plain-ssh\n", ssh.stderr


def test_starting_a_running_vm_is_a_clear_error(vm) -> None:
    db, _ = vm
    proc = miv(db, "start", "v", "--daemon", rc=1)
    assert b"already running" in proc.stderr and b"Traceback" not in proc.stderr


def test_port_already_in_use_is_a_clear_error(tiny_db: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        miv(tiny_db, "create", "tiny", "p", "--port", f"{port}:22")
        proc = miv(tiny_db, "start", "p", "--daemon", rc=1)
    assert f"port {port} on 127.0.0.1 is already in use".encode() in proc.stderr
    assert _ps(tiny_db)["p"]["state"] == "stopped"


def test_stop_is_graceful(vm) -> None:
    db, _ = vm
    proc = miv(db, "stop", "v")
    assert proc.stderr == b"stopped v\n"  # not "forced"
    assert b"reboot: Power down" in (db / "vms" / "v" / "serial.log").read_bytes()
    assert _ps(db)["v"]["state"] == "stopped"
    assert _qemu_pids(db) == []
    assert not (db / "vms" / "v" / "qmp.sock").exists()


def test_kill_and_destroy_running(vm) -> None:
    db, _ = vm
    miv(db, "kill", "v")
    assert _qemu_pids(db) == [] and _ps(db)["v"]["state"] == "stopped"
    miv(db, "start", "v", "--daemon")
    assert _qemu_pids(db)
    miv(db, "destroy", "v")
    assert _qemu_pids(db) == [] and "v" not in _ps(db)
    assert os.listdir(db / "vms") == [] and os.listdir(db / "staging") == []


def test_sigkilled_qemu_shows_stopped_and_starts_again(vm) -> None:
    db, _ = vm
    (pid,) = _qemu_pids(db)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _qemu_pids(db), 10, "QEMU to be gone")
    assert _ps(db)["v"]["state"] == "stopped"
    assert not (db / "vms" / "v" / "qemu.pid").exists()  # stale files cleaned
    miv(db, "start", "v", "--daemon", "--wait-for-ssh", BOOT)
    assert miv(db, "ssh", "v", "hostname").stdout == b"tiny\n"


def test_commit_keeps_writes_and_has_no_backing_file(vm) -> None:
    db, _ = vm
    miv(db, "ssh", "v", "echo committed-marker > /root/marker && sync")
    proc = miv(db, "commit", "v", "snap", rc=1)
    assert b"is running" in proc.stderr
    miv(db, "stop", "v")
    miv(db, "commit", "v", "snap")
    snap_id = os.readlink(db / "images" / "snap")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(db / "images" / snap_id / "disk.qcow2")],
                                     capture_output=True, check=True).stdout)
    assert "backing-filename" not in info
    miv(db, "create", "snap", "w", "-m", "200")
    miv(db, "start", "w", "--daemon", "--wait-for-ssh", BOOT)
    try:
        assert miv(db, "ssh", "w", "cat /root/marker").stdout == b"committed-marker\n"
    finally:
        miv(db, "destroy", "w")
    assert b"no problems" in miv(db, "fsck").stderr


def test_run_prints_and_leaves_nothing(tiny_db: Path) -> None:
    proc = miv(tiny_db, "run", "tiny", "-m", "200", "hostname")
    assert proc.stdout == b"tiny\n"
    assert os.listdir(tiny_db / "vms") == [] and _qemu_pids(tiny_db) == []
    assert miv(tiny_db, "run", "tiny", "-m", "200", "exit 3", rc=3).returncode == 3
    assert os.listdir(tiny_db / "vms") == []


def test_run_interrupted_by_sigint_leaves_no_vm(tiny_db: Path) -> None:
    proc = subprocess.Popen([MIV, "run", "tiny", "-m", "200", "sleep", "600"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "MINIVIRT_DB_PATH": str(tiny_db)})
    (name,) = wait_until(lambda: [n for n, v in _ps(tiny_db).items() if v["state"] == "running"], 90, "the VM")
    wait_until(lambda: guest_runs(tiny_db, name, "sleep 600"), 90, "the command to run in the guest")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    assert os.listdir(tiny_db / "vms") == [] and _qemu_pids(tiny_db) == []


def test_run_survives_qemu_being_killed(tiny_db: Path) -> None:
    proc = subprocess.Popen([MIV, "run", "tiny", "-m", "200", "sleep", "600"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "MINIVIRT_DB_PATH": str(tiny_db)})
    (name,) = wait_until(lambda: [n for n, v in _ps(tiny_db).items() if v["state"] == "running"], 90, "the VM")
    wait_until(lambda: guest_runs(tiny_db, name, "sleep 600"), 90, "the command to run in the guest")
    for pid in _qemu_pids(tiny_db):
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(60) != 0
    assert os.listdir(tiny_db / "vms") == []


def test_serial_console_socket_takes_commands(vm) -> None:
    db, _ = vm
    from minivirt_core.console import SerialConsole

    async def session() -> str:
        console = await SerialConsole.open(db / "vms" / "v")
        try:
            await console.write(b"\n")
            await console.expect("login:", 30)
            await console.write(b"root\n")
            await console.expect(r"# ", 30)
            await console.write(b"echo typed-$((6*7)) && uname -n\n")
            return await console.expect(r"typed-42\s+tiny", 30)
        finally:
            await console.close()

    assert "typed-42" in asyncio.run(session())
    assert b"typed-42" in (db / "vms" / "v" / "serial.log").read_bytes()
    assert b"typed-42" in miv(db, "logs", "v").stdout


def test_start_and_console_without_a_terminal(tiny_db: Path, tmp_path: Path) -> None:
    """Regression: `miv start v` from a script (stdin /dev/null) tried to attach to the console
    and died with a traceback (the event loop cannot watch /dev/null); `miv console v < file`
    alike. Now start says it did not attach, and console sends the file's keys to the guest."""
    miv(tiny_db, "create", "tiny", "nt", "-m", "200")
    try:
        err = miv(tiny_db, "start", "nt").stderr.decode()  # stdin /dev/null, stdout a pipe
        assert "not attached to its console" in err and "miv console nt" in err, err
        assert "Traceback" not in err
        def prompts() -> int:
            return miv(tiny_db, "logs", "nt").stdout.count(b"login:")

        wait_until(prompts, 60, "the login prompt")
        before = prompts()
        keys = tmp_path / "keys"
        keys.write_bytes(b"\n")  # getty answers Enter with another prompt
        with keys.open("rb") as stdin:
            console = subprocess.Popen([MIV, "console", "nt"], stdin=stdin, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env={**os.environ, "MINIVIRT_DB_PATH": str(tiny_db)})
        try:
            wait_until(lambda: prompts() > before, 30, "another login prompt, after the Enter read from the file")
            assert console.poll() is None  # the file's end does not end the session
            miv(tiny_db, "kill", "nt")
            out, err_bytes = console.communicate(timeout=30)
        finally:
            console.kill()
        assert console.returncode == 0, err_bytes
        assert b"login:" in out  # the guest's output came through
        assert b"[the VM stopped]" in err_bytes and b"Traceback" not in err_bytes
    finally:
        miv(tiny_db, "destroy", "nt", rc=None)


def test_two_vms_at_once(tiny_db: Path) -> None:
    for name in ("a", "b"):
        miv(tiny_db, "create", "tiny", name, "-m", "200")
    procs = [subprocess.Popen([MIV, "start", n, "--daemon", "--wait-for-ssh", BOOT],
                              env={**os.environ, "MINIVIRT_DB_PATH": str(tiny_db)}) for n in ("a", "b")]
    assert [p.wait(120) for p in procs] == [0, 0]
    try:
        ports = {n: v["ssh_port"] for n, v in _ps(tiny_db).items()}
        assert ports["a"] != ports["b"]
        for n in ("a", "b"):
            miv(tiny_db, "ssh", n, f"echo {n} > /root/who")
        assert miv(tiny_db, "ssh", "a", "cat /root/who").stdout == b"a\n"
        assert miv(tiny_db, "ssh", "b", "cat /root/who").stdout == b"b\n"
    finally:
        miv(tiny_db, "destroy", "a", "b")


def test_cp_both_ways(vm, tmp_path: Path) -> None:
    db, _ = vm
    src = tmp_path / "up.txt"
    src.write_bytes(b"to the guest\n")
    miv(db, "cp", str(src), "v:/root/up.txt")
    assert miv(db, "ssh", "v", "cat /root/up.txt").stdout == b"to the guest\n"
    miv(db, "cp", "v:/etc/hostname", str(tmp_path / "hostname"))
    assert (tmp_path / "hostname").read_bytes() == b"tiny\n"
    proc = miv(db, "cp", str(src), str(tmp_path / "x"), rc=2)
    assert b"name a VM on exactly one side" in proc.stderr


def test_vm_names_are_validated(tiny_db: Path) -> None:
    for bad, message in (("a/b", "may not contain '/'"), ("a:b", "may not contain ':'"), (".x", "start with '.'")):
        assert message.encode() in miv(tiny_db, "create", "tiny", bad, rc=1).stderr
    miv(tiny_db, "create", "tiny", "dup")
    assert b"already exists" in miv(tiny_db, "create", "tiny", "dup", rc=1).stderr
    assert b"no image named 'nope'" in miv(tiny_db, "create", "nope", "x", rc=1).stderr


def test_snapshot_discards_writes_and_disk_grows(tiny_db: Path) -> None:
    miv(tiny_db, "create", "tiny", "snap", "-m", "200", "--disk", "2G")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-U",
                                      str(tiny_db / "vms" / "snap" / "disk.qcow2")],
                                     capture_output=True, check=True).stdout)
    assert info["virtual-size"] == 2 << 30
    miv(tiny_db, "start", "snap", "--daemon", "--snapshot", "--wait-for-ssh", BOOT)
    miv(tiny_db, "ssh", "snap", "echo gone > /root/scratch && sync")
    miv(tiny_db, "kill", "snap")
    miv(tiny_db, "start", "snap", "--daemon", "--wait-for-ssh", BOOT)
    try:
        assert miv(tiny_db, "ssh", "snap", "cat /root/scratch", rc=1).returncode == 1
    finally:
        miv(tiny_db, "destroy", "snap")
