"""Per-VM cloud-init seeds (what minivirt writes, checked by cloud-init's own schema), the
download cache filled by hand (`miv cache add`), and the SSH banner wait on a slow server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from minivirt_core import layout
from minivirt_core.download import cache_key, fetch
from minivirt_core.seed import CloudInit, documents

from .helpers import ROOT, miv, simple_tar

VAGRANT_PUB = (ROOT / "minivirt_core" / "data" / "vagrant.pub").read_text().strip()
OWN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1gN0XGcdTzsuVqFBmAm3bO8FyiVPpg4thPfuF7Nwi9 minivirt-vm-key"


def read_seed(iso: Path) -> dict[str, str]:
    """The files of a cidata ISO, read back with pycdlib (Rock Ridge names)."""
    import io

    import pycdlib

    out = {}
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        for name in ("user-data", "meta-data"):
            buf = io.BytesIO()
            reader.get_file_from_iso_fp(buf, rr_path=f"/{name}")
            out[name] = buf.getvalue().decode()
        assert reader.pvd.volume_identifier.decode().strip() == "cidata"
    finally:
        reader.close()
    return out


def schema_check(tmp_path: Path, user_data: str) -> None:
    """cloud-init's own validator (Debian's cloud-init package on this machine)."""
    if not shutil.which("cloud-init"):
        pytest.skip("cloud-init (for `cloud-init schema`) is not installed here: scripts/setup installs it")
    path = tmp_path / f"ud-{hashlib.sha256(user_data.encode()).hexdigest()[:8]}.yaml"
    path.write_text(user_data)
    proc = subprocess.run(["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr


USER_DATAS = {
    "keys only": None,
    "runcmd and packages": "#cloud-config\nruncmd:\n  - [sh, -c, 'echo hi > /run/x']\npackages: [htop]\n",
    "own users and root": ("#cloud-config\nusers:\n  - default\n  - name: alice\n    shell: /bin/bash\n"
                           "  - name: root\n    ssh_authorized_keys: ['" + VAGRANT_PUB + "']\n"),
    "own hostname": "#cloud-config\nhostname: chosen\nwrite_files:\n  - path: /etc/x\n    content: hello\n",
    "empty": "#cloud-config\n",
}


@pytest.mark.parametrize("case", sorted(USER_DATAS))
def test_every_seed_minivirt_writes_passes_cloud_inits_schema(tmp_path: Path, case: str) -> None:
    text = USER_DATAS[case]
    ud = None
    if text is not None:
        ud = tmp_path / "user-data"
        ud.write_text(text)
    pub = tmp_path / "me.pub"
    pub.write_text(VAGRANT_PUB + "\n")
    cloud_init = CloudInit.from_files(ud, [str(pub)])
    user_data, meta_data = documents("web_1.x", OWN, cloud_init)
    schema_check(tmp_path, user_data)
    config = yaml.safe_load(user_data)
    roots = [u for u in config["users"] if isinstance(u, dict) and u.get("name") == "root"]
    assert len(roots) == 1
    assert OWN in roots[0]["ssh_authorized_keys"] and VAGRANT_PUB in roots[0]["ssh_authorized_keys"]
    assert config["disable_root"] is False
    assert config.get("hostname") == ("chosen" if case == "own hostname" else "web-1-x")
    assert yaml.safe_load(meta_data) == {"instance-id": "minivirt-web_1.x", "local-hostname": "web-1-x"}


def test_create_with_cloud_init_writes_a_seed_cdrom(db: Path, tmp_path: Path) -> None:
    """`miv create --cloud-init --ssh-key` (no boot): the VM's seed ISO, attached as a CD-ROM,
    holds the VM's own key and the user's; cloud-init's schema accepts it."""
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    miv(db, "load", "base", input=simple_tar({"config.json": b'{"disk": true}\n', "disk.qcow2": disk.read_bytes()}))
    ud = tmp_path / "ud.yaml"
    ud.write_text("#cloud-config\nruncmd:\n  - [touch, /run/ran]\n")
    miv(db, "create", "base", "web", "--cloud-init", str(ud), "--ssh-key", VAGRANT_PUB)
    vm = db / "vms" / "web"
    assert {"type": "cdrom", "filename": layout.VM_SEED} in json.loads((vm / "config.json").read_text())["resources"]
    seed = read_seed(vm / layout.VM_SEED)
    from minivirt_core.vmkey import own_key, public_line

    assert public_line(own_key(vm)) in seed["user-data"] and VAGRANT_PUB in seed["user-data"]
    assert "instance-id: minivirt-web" in seed["meta-data"]
    schema_check(tmp_path, seed["user-data"])
    assert miv(db, "fsck").returncode == 0


@pytest.mark.parametrize(("content", "message"), [
    ("runcmd: [ls]\n", "does not start with '#cloud-config'"),
    ("#cloud-config\n- a list\n", "is not a cloud-config mapping"),
    ("#cloud-config\nruncmd: [unclosed\n", "is not valid YAML"),
    ("#cloud-config\nusers: root\n", "'users' must be a list"),
])
def test_bad_user_data_is_a_clear_error_and_leaves_no_vm(db: Path, tmp_path: Path, content: str,
                                                          message: str) -> None:
    ud = tmp_path / "ud"
    ud.write_text(content)
    proc = miv(db, "create", "whatever", "v", "--cloud-init", str(ud), rc=1)
    err = proc.stderr.decode()
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not (db / "vms" / "v").exists()


def test_a_bad_ssh_key_is_a_clear_error(db: Path, tmp_path: Path) -> None:
    proc = miv(db, "create", "whatever", "v", "--ssh-key", "ssh-ed25519 AAAAnotbase64!", rc=1)
    assert "not a valid public key" in proc.stderr.decode()
    proc = miv(db, "create", "whatever", "v", "--ssh-key", str(tmp_path / "missing.pub"), rc=1)
    assert "no such file" in proc.stderr.decode()


# miv cache add ------------------------------------------------------------------

URL = "https://cloud.example.invalid/images/disk.qcow2"


def test_cache_add_puts_a_file_where_a_download_of_its_url_finds_it(db: Path, tmp_path: Path) -> None:
    """Air-gapped: after `miv cache add URL FILE`, fetching URL (whose host does not even
    resolve) returns the file without touching the network."""
    src = tmp_path / "disk.qcow2"
    src.write_bytes(b"offline image\n" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    proc = miv(db, "cache", "add", URL, str(src), "--sha256", digest.upper())
    assert "cached" in proc.stderr.decode()
    cached = db / "cache" / cache_key(URL)
    assert cached.read_bytes() == src.read_bytes()
    assert asyncio.run(fetch(URL, db / "cache", sha256=digest)) == cached
    src.write_bytes(b"a newer file")  # adding again replaces it
    miv(db, "cache", "add", URL, str(src))
    assert cached.read_bytes() == b"a newer file"
    assert sorted(p.name for p in (db / "cache").iterdir()) == [cached.name]


def test_cache_add_refuses_a_file_whose_sha256_differs_and_caches_nothing(db: Path, tmp_path: Path) -> None:
    src = tmp_path / "disk.qcow2"
    src.write_bytes(b"tampered")
    proc = miv(db, "cache", "add", URL, str(src), "--sha256", "0" * 64, rc=1)
    err = proc.stderr.decode()
    assert "sha256 is" in err and "--sha256 expects" in err and "Traceback" not in err
    assert [p.name for p in (db / "cache").iterdir()] == []
    proc = miv(db, "cache", "add", URL, str(src), "--sha256", "xyz", rc=1)
    assert "is not a sha256" in proc.stderr.decode()


@pytest.mark.parametrize(("url", "what", "message"), [
    (URL, "missing", "no such file"),
    (URL, "folder", "is not a regular file"),
    ("ftp://x/y", "file", "only http, https and file URLs"),
])
def test_cache_add_errors_are_clear_and_leave_nothing(db: Path, tmp_path: Path, url: str, what: str,
                                                     message: str) -> None:
    path = tmp_path / what
    if what == "folder":
        path.mkdir()
    elif what == "file":
        path.write_bytes(b"x")
    proc = miv(db, "cache", "add", url, str(path), rc=1)
    assert message in proc.stderr.decode() and "Traceback" not in proc.stderr.decode()
    assert not (db / "cache").exists() or [p.name for p in (db / "cache").iterdir()] == []


# The SSH banner wait ----------------------------------------------------------------


def slow_ssh_server(delay: float, max_startups: int) -> tuple[int, threading.Event]:
    """A server that, like OpenSSH on a slow guest, sends its banner ``delay`` s after a
    connection opens, and drops new connections while ``max_startups`` wait (MaxStartups)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    stop = threading.Event()
    waiting = [0]
    lock = threading.Lock()

    def serve(conn: socket.socket) -> None:
        with conn:
            with lock:
                if waiting[0] >= max_startups:
                    return  # dropped, as sshd does past MaxStartups
                waiting[0] += 1
            try:
                time.sleep(delay)
                conn.sendall(b"SSH-2.0-slow\r\n")
                time.sleep(0.2)
            except OSError:
                pass
            finally:
                with lock:
                    waiting[0] -= 1

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
        server.close()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], stop


def test_banner_wait_is_patient_with_a_slow_ssh_server() -> None:
    """Regression: a Debian guest under TCG on a loaded host sent its banner seconds after
    a connect; the wait gave each connection 0.5 s and opened new ones, so sshd hit
    MaxStartups and no banner was ever seen (no SSH within 600 s)."""
    from minivirt_core.sshwait import wait_for_banner

    port, stop = slow_ssh_server(delay=2.0, max_startups=4)
    try:
        started = time.monotonic()
        asyncio.run(wait_for_banner(port, 20))
        assert time.monotonic() - started < 6
    finally:
        stop.set()


def test_banner_wait_drops_silent_early_connections_that_a_booting_guest_never_sees() -> None:
    """Regression: QEMU's user network accepts a host connection at once and sends its SYN
    to the guest; before the guest's network is up nobody answers, and that SYN sits in the
    user network's back-off (sent again after ~3, 9, 21 s). The wait kept such connections
    patiently, so the banner was seen seconds after the guest's SSH server was ready (the
    tiny guest's boot measured 6.3 s where the server answered at ~4 s). The server below
    acts this out: connections opened before ``up`` stay silent forever, later ones get a
    banner at once."""
    from minivirt_core.sshwait import wait_for_banner

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    up = time.monotonic() + 2.0
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if time.monotonic() < up:
                held.append(conn)  # the SYN nobody answers: silent, never closed
            else:
                conn.sendall(b"SSH-2.0-guest\r\n")
                held.append(conn)
        server.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        asyncio.run(wait_for_banner(server.getsockname()[1], 30))
        assert time.monotonic() - up < 1.5  # the guest answered at `up`; the old wait: ~30 s
    finally:
        stop.set()
        for conn in held:
            conn.close()


class FakeUserNetwork:
    """QEMU's user network in front of a booting guest, acted out on two host ports: the SSH
    forward and the network probe's (forwarded to a guest port nothing listens on).

    Until ``up``, the guest's network is down: every connection stays silent (its SYN in the
    user network's back-off), and each one made to the SSH port is counted, because QEMU
    keeps sending its SYN and it reaches the guest's SSH server once the network is up, as a
    process the guest starts for nothing. From ``up``, the SSH port answers with a banner and
    the probe port is refused (closed at once), unless ``probe_refused`` is False (a guest
    firewall that drops what nothing listens for)."""

    def __init__(self, up_after: float, probe_refused: bool = True) -> None:
        self.up = time.monotonic() + up_after
        self.early_ssh_connections = 0
        self.stop = threading.Event()
        self.held: list[socket.socket] = []
        self.ssh = self._listen(self._ssh)
        self.probe = self._listen(self._probe if probe_refused else self.held.append)

    def _listen(self, handle: Callable[[socket.socket], None]) -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        server.settimeout(0.05)

        def accept() -> None:
            while not self.stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                handle(conn)
            server.close()

        threading.Thread(target=accept, daemon=True).start()
        return server.getsockname()[1]

    def _ssh(self, conn: socket.socket) -> None:
        if time.monotonic() < self.up:
            self.early_ssh_connections += 1
        else:
            conn.sendall(b"SSH-2.0-guest\r\n")
        self.held.append(conn)

    def _probe(self, conn: socket.socket) -> None:
        if time.monotonic() < self.up:
            self.held.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        for conn in self.held:
            conn.close()


def test_banner_wait_probes_the_network_not_the_ssh_server_before_the_guest_is_up() -> None:
    """Regression: the quick early probes went to the SSH port. QEMU's user network does not
    forget a connection the host dropped, so each reached the guest's sshd once its network
    came up: ~60 in one Debian boot (the journal's `kex_exchange_identification: Connection
    closed` lines), an OpenSSH process each, 15 s of the guest's CPU in the middle of
    cloud-init. With a network probe, the SSH port gets one probe every few seconds until the
    probe port is refused; the banner is still seen as soon as the guest is up."""
    from minivirt_core.sshwait import BANNER_EARLY_SSH_EVERY, wait_for_banner

    net = FakeUserNetwork(up_after=4.0)
    try:
        asyncio.run(wait_for_banner(net.ssh, 30, net_probe=net.probe))
        assert time.monotonic() - net.up < 1.0
        assert net.early_ssh_connections <= 4.0 / BANNER_EARLY_SSH_EVERY + 1, net.early_ssh_connections
    finally:
        net.close()
    before = FakeUserNetwork(up_after=4.0)  # the same guest, waited for without the probe
    try:
        asyncio.run(wait_for_banner(before.ssh, 30))
        assert before.early_ssh_connections >= 10, before.early_ssh_connections
    finally:
        before.close()


def test_banner_wait_finds_a_guest_that_drops_the_network_probe() -> None:
    """A guest whose firewall drops (not refuses) connections to a port nothing listens on
    never answers the network probe: its SSH server is still found, by the SSH-port probes
    made every few seconds meanwhile."""
    from minivirt_core.sshwait import BANNER_EARLY_SSH_EVERY, wait_for_banner

    net = FakeUserNetwork(up_after=2.0, probe_refused=False)
    try:
        asyncio.run(wait_for_banner(net.ssh, 30, net_probe=net.probe))
        assert time.monotonic() - net.up < BANNER_EARLY_SSH_EVERY + 1.0
    finally:
        net.close()
