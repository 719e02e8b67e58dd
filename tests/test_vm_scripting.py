"""`miv ssh`, `miv run` and `miv cp` driven by scripts: stdin that is not a terminal,
arguments kept as given, clear errors. Real QEMU (the tiny guest), the real `miv` command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .helpers import MIV, miv

pytestmark = pytest.mark.vm


def _miv_env(db: Path) -> dict[str, str]:
    return {**os.environ, "MINIVIRT_DB_PATH": str(db)}


def test_scripted_ssh_never_breaks_the_pipe_nor_loses_output(running_vm: Path) -> None:
    # Before: "BrokenPipeError: Channel not open for sending" now and then, output lost.
    for i in range(30):
        quiet = subprocess.run([MIV, "ssh", "v", "hostname"], stdin=subprocess.DEVNULL, capture_output=True,
                               env=_miv_env(running_vm), timeout=120)
        assert (quiet.returncode, quiet.stdout) == (0, b"tiny\n"), (i, quiet.stderr)
        piped = subprocess.run([MIV, "ssh", "v", "hostname"], input=b"hi\n", capture_output=True,
                               env=_miv_env(running_vm), timeout=120)
        assert (piped.returncode, piped.stdout) == (0, b"tiny\n"), (i, piped.stderr)


def test_ssh_streams_stdin_and_does_not_wait_for_its_end(running_vm: Path) -> None:
    # Before: all of stdin was read first, so a pipe that stays open made `miv ssh` hang.
    with subprocess.Popen([MIV, "ssh", "v", "hostname"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=_miv_env(running_vm)) as proc:
        try:
            status = proc.wait(timeout=120)  # our end of its stdin stays open meanwhile
        finally:
            proc.kill()
        assert proc.stdout is not None and proc.stderr is not None
        assert (status, proc.stdout.read()) == (0, b"tiny\n"), proc.stderr.read()
    # Streamed both ways: the command reads what it needs and stops.
    big = miv(running_vm, "ssh", "v", "wc -c", input=b"x" * (8 << 20)).stdout
    assert big.strip() == str(8 << 20).encode()
    assert miv(running_vm, "ssh", "v", "head -c 3", input=b"abcdef" * 100_000).stdout == b"abc"


def test_ssh_keeps_arguments_as_given(running_vm: Path) -> None:
    # Several words: a command and its arguments, as given (spaces, quotes, our own option names).
    out = miv(running_vm, "ssh", "v", "printf", "%s|", "a  b", "-t", "--wait", "$HOME", "it's").stdout
    assert out == b"a  b|-t|--wait|$HOME|it's|"
    assert miv(running_vm, "ssh", "v", "sh", "-c", "exit 3", rc=3).returncode == 3
    # One word: a shell line, as with ssh(1).
    assert miv(running_vm, "ssh", "v", "echo $HOME && exit 4", rc=4).stdout == b"/root\n"
    # Our options may still come after the VM's name, before the command.
    assert miv(running_vm, "ssh", "v", "--wait", "30", "hostname").stdout == b"tiny\n"


def test_run_keeps_arguments_as_given_and_its_exit_status(tiny_db: Path) -> None:
    # Before: `sh -c 'exit 3'` reached the guest as `sh -c exit 3` and exited 0.
    assert miv(tiny_db, "run", "tiny", "-m", "200", "sh", "-c", "exit 3", rc=3).returncode == 3
    out = miv(tiny_db, "run", "tiny", "-m", "200", "printf", "%s|", "-m", "a  b", "--cpus").stdout
    assert out == b"-m|a  b|--cpus|"
    for _ in range(2):
        proc = subprocess.run([MIV, "run", "tiny", "-m", "200", "hostname"], stdin=subprocess.DEVNULL,
                              capture_output=True, env=_miv_env(tiny_db), timeout=300)
        assert (proc.returncode, proc.stdout) == (0, b"tiny\n"), proc.stderr
    assert os.listdir(tiny_db / "vms") == []


def test_a_failing_ssh_session_is_a_clear_error(running_vm: Path) -> None:
    # Regression: asyncssh's errors when a session is refused (ChannelOpenError) or the
    # connection drops (ConnectionLost) came out as tracebacks. Dropbear drops a connection
    # asking it to run a command longer than 9000 bytes: a real failure to provoke.
    proc = subprocess.run([MIV, "ssh", "v", "echo " + "x" * 10000], stdin=subprocess.DEVNULL, capture_output=True,
                          env=_miv_env(running_vm), timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"error: the SSH connection to the guest failed: "), proc.stderr
    assert b"Traceback" not in proc.stderr
    # The VM is still fine.
    assert miv(running_vm, "ssh", "v", "hostname").stdout == b"tiny\n"


def test_cp_of_a_missing_file_names_it(running_vm: Path, tmp_path: Path) -> None:
    # Before: `b'nothere'`, and a missing guest file blamed a missing SFTP server.
    proc = miv(running_vm, "cp", "nothere", "v:/tmp", rc=1)
    assert proc.stderr.startswith(b"error: no such file or folder on this machine: nothere\n"), proc.stderr
    dest = tmp_path / "out"
    dest.mkdir()
    proc = miv(running_vm, "cp", "v:/nonexistent", str(dest), rc=1)
    assert proc.stderr.startswith(b"error: no such file or folder in VM v: /nonexistent\n"), proc.stderr
    assert b"SFTP" not in proc.stderr and b"Traceback" not in proc.stderr
    assert os.listdir(dest) == []
