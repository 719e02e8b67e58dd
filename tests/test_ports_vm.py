"""Port forwards changed on a running VM (`miv port add/rm/ls`), reaching a real guest listener."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from minivirt_core.ports import free_port

from .helpers import miv, wait_until

LISTEN = "busybox nc -ll -p {port} -e echo hello-from-guest </dev/null >/dev/null 2>&1 &"


def _greeting(port: int) -> bytes:
    """What a connection to 127.0.0.1:port reads first (b'' when nothing answers)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            return s.recv(100)
    except OSError:
        return b""


def _ports_in_config(db: Path, vm: str) -> list[dict[str, int]]:
    return json.loads((db / "vms" / vm / "config.json").read_text())["ports"]


@pytest.mark.vm
@pytest.mark.slow
def test_port_add_reaches_guest_listener_rm_closes_it_and_it_survives_a_restart(running_vm: Path) -> None:
    db = running_vm
    host = free_port()
    miv(db, "ssh", "v", LISTEN.format(port=80))
    assert _greeting(host) == b""
    out = miv(db, "port", "add", "v", f"{host}:80")
    assert b"now and at every start" in out.stderr
    assert wait_until(lambda: _greeting(host), 30, "the guest listener through the new forward") == \
        b"hello-from-guest\n"
    assert _ports_in_config(db, "v") == [{"host_port": host, "guest_port": 80}]
    assert json.loads(miv(db, "port", "ls", "v", "--json").stdout) == [
        {"host_port": host, "guest_port": 80, "active": True}]

    # A host port taken by someone else, or already forwarded: a clear error, nothing changed.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        err = miv(db, "port", "add", "v", f"{busy}:80", rc=1).stderr.decode()
        assert err.splitlines()[0] == f"error: port {busy} on 127.0.0.1 is already in use" and "Traceback" not in err
    err = miv(db, "port", "add", "v", f"{host}:81", rc=1).stderr.decode()
    assert f"already forwards host port {host}" in err
    assert _ports_in_config(db, "v") == [{"host_port": host, "guest_port": 80}]

    # The next start has it: the forward is in the config.
    miv(db, "stop", "v")
    assert json.loads(miv(db, "port", "ls", "v", "--json").stdout) == [
        {"host_port": host, "guest_port": 80, "active": None}]
    miv(db, "start", "v", "--daemon", "--wait-for-ssh", "120")
    miv(db, "ssh", "v", LISTEN.format(port=80))
    assert wait_until(lambda: _greeting(host), 30, "the guest listener after the restart") == b"hello-from-guest\n"

    # Removing it closes the port at once and for good.
    miv(db, "port", "rm", "v", str(host))
    assert _greeting(host) == b""
    assert _ports_in_config(db, "v") == []
    assert miv(db, "port", "rm", "v", str(host), rc=1).stderr.decode().startswith(
        f"error: VM 'v' has no forward from host port {host}")


@pytest.mark.vm
def test_port_add_on_a_stopped_vm_changes_only_its_config(tiny_db: Path) -> None:
    miv(tiny_db, "create", "tiny", "s", "-m", "200")
    out = miv(tiny_db, "port", "add", "s", "18123:22")
    assert b"from its next start" in out.stderr
    assert _ports_in_config(tiny_db, "s") == [{"host_port": 18123, "guest_port": 22}]
    assert miv(tiny_db, "port", "ls", "s").stdout.decode().split() == [
        "HOST", "GUEST", "ACTIVE", "127.0.0.1:18123", "22", "-"]
    assert miv(tiny_db, "port", "add", "s", "0:22", rc=1).stderr.startswith(b"error: invalid port forward")
    miv(tiny_db, "port", "rm", "s", "18123:22")
    assert _ports_in_config(tiny_db, "s") == []


@pytest.mark.vm
@pytest.mark.slow
def test_a_running_vm_has_a_network_probe_forward_that_its_guest_refuses_at_once(running_vm: Path) -> None:
    """`miv start` forwards one more host port, on 127.0.0.1, to guest port 1, where nothing
    listens: sshwait.wait_for_banner probes it to learn that the guest's network is up without
    costing the guest's SSH server a process. The guest's kernel refuses it at once; it is
    none of the VM's own forwards."""
    db = running_vm
    run = json.loads((db / "vms" / "v" / "run.json").read_text())
    probe = run["net_probe_port"]
    assert isinstance(probe, int) and probe != run["ssh_port"]
    started = time.monotonic()
    assert _greeting(probe) == b""
    assert time.monotonic() - started < 3  # refused by the guest, not left waiting
    assert json.loads(miv(db, "port", "ls", "v", "--json").stdout) == []
