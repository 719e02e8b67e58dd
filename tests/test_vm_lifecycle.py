"""A VM's life from name to leftovers: names that reach QEMU and ssh, settings given on the
command line or found on disk, QEMU dying at start-up, and throw-away VMs whose `miv` is
killed. QEMU is real; the tests that boot a guest carry the `vm` marker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minivirt_core import Minivirt
from minivirt_core.errors import InvalidInput
from minivirt_core.qemu.command import Drive, LaunchSpec, qemu_argv
from minivirt_core.vmconfig import parse_memory

from .helpers import MIV, db_entries, miv, qcow2_of, simple_tar, wait_until
from .test_vms import _qemu_pids

BOOT = "60"


def _env(db: Path) -> dict[str, str]:
    return {**os.environ, "MINIVIRT_DB_PATH": str(db)}


def _clear_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    """stderr of a failed `miv`: exit 1, an `error:` line, no traceback."""
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def _break_config(db: Path, name: str, **changes: object) -> None:
    path = db / "vms" / name / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


@pytest.fixture
def base_db(db: Path) -> Path:
    """A database with `base`, an image with no disk (VMs of it need no qemu-img)."""
    miv(db, "load", "base", input=simple_tar({"config.json": b"{}"}))
    return db


# Names (point 7) --------------------------------------------------------------------


def test_qemu_option_values_are_escaped() -> None:
    """QEMU splits option strings at single commas: every value minivirt puts in one has
    its commas doubled, so a name or path can never add an option."""
    from minivirt_core.qemu.command import opt_value

    assert opt_value("z,process=evil") == "z,,process=evil"
    spec = LaunchSpec("z,process=evil", 256, 1, ["-accel", "tcg"], 2222,
                      drives=[Drive("a,file=/etc/shadow.qcow2", "disk", "qcow2"), Drive("x,y.iso", "cdrom")])
    argv = qemu_argv(spec, "qemu")
    assert argv[argv.index("-name") + 1] == "miv-z,,process=evil"
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives[0].startswith("if=virtio,file=a,,file=/etc/shadow.qcow2,")
    assert drives[1].startswith("file=x,,y.iso,")


@pytest.mark.parametrize(("name", "message"), [
    ("z,process=evil", "may not contain ','"),
    ('a"b', "may not contain '\"'"),
    ("-x", "may not start with '-'"),
    ("é", "may not contain 'é'"),
    ("a b", "printable characters without spaces"),
    ("x" * 65, "longer than 64 characters"),
])
def test_vm_names_that_qemu_or_ssh_would_misread_are_refused(base_db: Path, name: str, message: str) -> None:
    err = _clear_error(miv(base_db, "create", "base", "--", name, rc=None))
    assert message in err.splitlines()[0]
    assert db_entries(base_db)["vms"] == [] and db_entries(base_db)["staging"] == []


def test_vm_names_of_letters_digits_dot_dash_underscore_are_fine(base_db: Path) -> None:
    for name in ("web", "Web-1.test_2", "9lives", "x" * 64):
        miv(base_db, "create", "base", name)
    assert len(db_entries(base_db)["vms"]) == 4


@pytest.mark.parametrize("tag", ["abcd", "CAFE", "2024", "0123456789abcdef", "f" * 64])
def test_a_tag_of_hex_digits_is_refused_so_it_never_shadows_an_image_id(base_db: Path, tag: str) -> None:
    err = _clear_error(miv(base_db, "tag", "base", tag, rc=None))
    assert "hex digits" in err
    assert len(tag) == 64 or f"v{tag}" in err  # the hint proposes a name that works
    assert not (base_db / "images" / tag).exists()


def test_tags_and_remote_names_may_not_start_with_a_dash(base_db: Path) -> None:
    assert "may not start with '-'" in _clear_error(miv(base_db, "tag", "base", "--", "-x", rc=None))
    assert "may not start with '-'" in _clear_error(
        miv(base_db, "load", "--", "-y", input=simple_tar({"config.json": b"{}"}), rc=None))
    assert "may not start with '-'" in _clear_error(
        miv(base_db, "remote", "add", "--", "-r", "file:///nowhere", rc=None))
    for tag in ("abc", "v1", "beefy", "latest"):  # short or not all hex: fine
        miv(base_db, "tag", "base", tag)


def test_vms_with_old_names_are_still_listed_and_removable(base_db: Path) -> None:
    """A database of an older minivirt may hold names the rules now refuse."""
    miv(base_db, "create", "base", "plain")
    for old in ('a"b', "z,process=evil", "-x"):
        (base_db / "vms" / old).mkdir()
        (base_db / "vms" / old / "config.json").write_text((base_db / "vms" / "plain" / "config.json").read_text())
    listed = {v["name"]: v["state"] for v in json.loads(miv(base_db, "ps", "-a", "--json").stdout)}
    assert listed == {"plain": "stopped", 'a"b': "stopped", "z,process=evil": "stopped", "-x": "stopped"}
    assert b'a"b' in miv(base_db, "ps", "-a").stdout
    assert b"no problems" in miv(base_db, "fsck").stderr
    miv(base_db, "destroy", "--", "-x", 'a"b')
    assert db_entries(base_db)["vms"] == ["plain", "z,process=evil"]


@pytest.mark.vm
def test_an_old_vm_name_with_a_comma_cannot_inject_a_qemu_option(tiny_db: Path) -> None:
    """On main, a VM named `z,process=evil` started a QEMU named `evil` (-name was not escaped)."""
    from minivirt_core.qemu import monitor

    miv(tiny_db, "create", "tiny", "z", "-m", "200")
    os.rename(tiny_db / "vms" / "z", tiny_db / "vms" / "z,process=evil")  # as an older minivirt allowed
    miv(tiny_db, "start", "z,process=evil", "--daemon")
    try:
        vm_dir = tiny_db / "vms" / "z,process=evil"
        pid = int((vm_dir / "qemu.pid").read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"-name") + 1] == b"miv-z,,process=evil"
        assert Path(f"/proc/{pid}/comm").read_text().startswith("qemu-system")  # not "evil"
        import asyncio

        name = asyncio.run(monitor.execute(vm_dir / "qmp.sock", "query-name"))
        assert name == {"name": "miv-z,process=evil"}
    finally:
        miv(tiny_db, "destroy", "z,process=evil")
    assert _qemu_pids(tiny_db) == []


# Settings given on the command line (point 16) ----------------------------------------


@pytest.mark.parametrize("args", [
    ["-m", "inf"], ["-m", "nan"], ["-m", "1e9"], ["-m", "-512"], ["-m", "٥١٢"],
    ["--disk", "-1G"], ["--disk", "0"], ["--disk", "lots"], ["--disk", "--help"],
    ["--port", "٨٠:22"], ["--port", "+80:22"], ["--port", "8_0:22"], ["--port", "80:٢٢"], ["--port", "0:22"],
], ids=lambda a: " ".join(a))
def test_bad_memory_disk_or_port_is_a_clear_error(base_db: Path, args: list[str]) -> None:
    err = _clear_error(miv(base_db, "create", "base", "x", *args, rc=None))
    what = {"-m": "invalid memory size", "--disk": "invalid disk size", "--port": "invalid port forward"}[args[0]]
    assert err.startswith(f"error: {what} ")
    assert db_entries(base_db)["vms"] == [] and db_entries(base_db)["staging"] == []


def test_size_parsing() -> None:
    from minivirt_core.vmconfig import parse_disk_size

    assert [parse_memory(v) for v in (512, "512", "512M", "2G", "2GiB", "1.5g", "4T")] == [
        512, 512, 512, 2048, 2048, 1536, 4 << 20]
    assert parse_disk_size("10G") == 10 << 30 and parse_disk_size("1048576") == 1 << 20
    for bad in ("inf", "-1", "1e3", "٢G", "+5", "5_0", True, 2.5, None, "9" * 30, "5T"):
        with pytest.raises(InvalidInput):
            parse_memory(bad)


# A malformed VM config (point 14) --------------------------------------------------------


@pytest.mark.parametrize(("change", "reason"), [
    ({"cpus": "two"}, "config.json: cpus: invalid CPU count 'two'"),
    ({"memory": "lots"}, "config.json: memory: invalid memory size 'lots'"),
    ({"ports": [{"host_port": "x"}]}, "config.json: ports: entry 1: not a port forward"),
    ({"resources": "disk"}, "config.json: resources: 'disk' is not a list"),
    ({"owner": 5}, "config.json: owner: not an owner"),
])
def test_a_malformed_vm_config_shows_that_vm_broken_and_lists_the_others(
        base_db: Path, change: dict, reason: str) -> None:
    miv(base_db, "create", "base", "good")
    miv(base_db, "create", "base", "bad")
    _break_config(base_db, "bad", **change)
    out = miv(base_db, "ps", "-a").stdout.decode()
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {"good", "bad"} and "stopped" in rows["good"]
    assert f"broken ({reason}" in rows["bad"]
    listed = {v["name"]: v for v in json.loads(miv(base_db, "ps", "-a", "--json").stdout)}
    assert listed["good"]["state"] == "stopped" and listed["good"]["cpus"] == 1
    assert listed["bad"]["state"] == "broken" and listed["bad"]["reason"].startswith(reason)
    fsck = miv(base_db, "fsck", rc=1)
    assert fsck.stdout.decode().startswith(f"vm bad: {reason}")
    err = _clear_error(miv(base_db, "start", "bad", "--daemon", rc=None))
    assert f"VM 'bad' cannot start: {reason}" in err and "miv destroy bad" in err
    miv(base_db, "destroy", "bad")
    assert b"no problems" in miv(base_db, "fsck").stderr


@pytest.mark.parametrize(("content", "reason"), [
    (b"{not json", "config.json is not valid JSON"),
    (b"[1, 2]", "config.json is not a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "config.json is not valid JSON"),
    (None, "config.json is missing"),
], ids=["not JSON", "not an object", "100000 deep", "missing"])
def test_an_unreadable_vm_config_is_a_broken_vm(base_db: Path, content: bytes | None, reason: str) -> None:
    miv(base_db, "create", "base", "bad")
    path = base_db / "vms" / "bad" / "config.json"
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    (state,) = json.loads(miv(base_db, "ps", "-a", "--json").stdout)
    assert state["state"] == "broken" and state["reason"].startswith(reason)
    assert f"vm bad: {reason}" in miv(base_db, "fsck", rc=1).stdout.decode()


async def test_dashboard_shows_a_broken_vm_with_its_reason_beside_the_others(base_db: Path) -> None:
    """On main, one malformed config emptied every pane of the dashboard, with no message."""
    from minivirt_tui.dashboard.app import MivApp

    from .test_dashboard import SIZE, until

    miv(base_db, "create", "base", "good")
    miv(base_db, "create", "base", "bad")
    _break_config(base_db, "bad", cpus="two")
    app = MivApp(Minivirt(base_db), refresh_interval=0.5, probe_accel=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one("#vms")
        await until(pilot, lambda: table.row_count == 2, 10, "both VMs")
        assert app.query_one("#images").row_count == 1
        rows = {r.cells[0]: r.cells for r in table.visible_rows()}  # (whole cells: the screen may cut them)
        good, bad = rows["good"], rows["bad"]
        assert str(table.get_row_at(list(rows).index("bad"))[1]).startswith("broken (config.json: cpus")
        assert good[1] == "stopped"
        assert bad[1] == "broken (config.json: cpus: invalid CPU count 'two': a whole number from 1 to 64)"


# QEMU dying at start-up (point 13) ---------------------------------------------------------


def _assert_nothing_runs(db: Path, name: str) -> None:
    assert _qemu_pids(db) == []
    assert not (db / "vms" / name / "qemu.pid").exists() and not (db / "vms" / name / "qmp.sock").exists()
    (state,) = [v for v in json.loads(miv(db, "ps", "-a", "--json").stdout) if v["name"] == name]
    assert state["state"] == "stopped"


@pytest.mark.vm
def test_qemu_that_cannot_get_its_memory_is_reported_at_once_with_its_reason(tiny_db: Path) -> None:
    """On main: `started big` and exit 0, then nothing running."""
    miv(tiny_db, "create", "tiny", "big", "-m", str(4 << 20))  # 4T, written so that main accepts it
    started = time.monotonic()
    err = _clear_error(miv(tiny_db, "start", "big", "--daemon", rc=None))
    seconds = time.monotonic() - started
    assert seconds < 10, seconds
    assert "QEMU failed to start: " in err and "cannot set up guest memory 'pc.ram'" in err
    assert "started" not in err
    _assert_nothing_runs(tiny_db, "big")


@pytest.mark.vm
def test_qemu_refusing_its_command_line_is_reported_at_once_with_its_reason(tiny_db: Path) -> None:
    miv(tiny_db, "create", "tiny", "bad", "-m", "200")
    # A qcow2 minivirt lets through (right magic, no backing file) whose cluster size QEMU refuses.
    broken = bytearray(qcow2_of())
    broken[20:24] = (99).to_bytes(4, "big")
    (tiny_db / "vms" / "bad" / "broken.qcow2").write_bytes(broken)
    _break_config(tiny_db, "bad", resources=[{"type": "disk", "filename": "broken.qcow2"}])
    started = time.monotonic()
    err = _clear_error(miv(tiny_db, "start", "bad", "--daemon", rc=None))
    assert time.monotonic() - started < 10
    assert "QEMU failed to start: " in err and "broken.qcow2" in err
    _assert_nothing_runs(tiny_db, "bad")


def test_qemu_missing_is_a_clear_error(base_db: Path, tmp_path: Path) -> None:
    miv(base_db, "create", "base", "v")
    err = _clear_error(miv(base_db, "start", "v", "--daemon", rc=None, env={"PATH": str(tmp_path / "empty")}))
    assert "qemu-system-x86_64 is not installed" in err and "apt-get install qemu-system-x86" in err
    _assert_nothing_runs(base_db, "v")


# Throw-away VMs and their owner (point 10) ---------------------------------------------------


def test_an_owner_is_a_process_and_its_start_time() -> None:
    from minivirt_core.owners import Owner, process_start_time

    me = Owner.current()
    assert me.pid == os.getpid() and me.started == process_start_time(os.getpid()) and me.alive()
    assert not Owner(me.pid, (me.started or 0) + 1).alive()  # same pid, another process: a reused pid
    child = subprocess.Popen(["true"])
    child.wait()
    assert not Owner(child.pid, None).alive()


def test_a_throwaway_vm_whose_owner_died_is_an_orphan_that_prune_removes(base_db: Path) -> None:
    code = ("import asyncio, sys; from minivirt_core import Minivirt\n"
            "asyncio.run(Minivirt(sys.argv[1]).vms.create('base', 'run-dead', throwaway=True))\n")
    subprocess.run([sys.executable, "-c", code, str(base_db)], check=True)
    miv(base_db, "create", "base", "kept")
    owner = json.loads((base_db / "vms" / "run-dead" / "config.json").read_text())["owner"]
    assert owner["pid"] > 0 and owner["started"] > 0
    assert miv(base_db, "fsck", rc=1).stdout.decode() == (
        f"vm run-dead: an orphan: the miv process that made it (pid {owner['pid']}) is gone; "
        "`miv prune` removes it\n")
    assert b"would remove orphan VM run-dead" in miv(base_db, "prune", "-n").stderr
    assert db_entries(base_db)["vms"] == ["kept", "run-dead"]
    assert b"removed orphan VM run-dead" in miv(base_db, "prune").stderr
    assert db_entries(base_db)["vms"] == ["kept"] and db_entries(base_db)["staging"] == []
    assert b"no problems" in miv(base_db, "fsck").stderr


@pytest.mark.vm
def test_run_killed_by_sigterm_then_sighup_leaves_no_vm(tiny_db: Path) -> None:
    """On main, SIGTERM or SIGHUP ended `miv run` at once and its VM kept running."""
    proc = subprocess.Popen([MIV, "run", "tiny", "-m", "200", "sleep", "60"], env=_env(tiny_db),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(db_entries(tiny_db)["vms"]) == 1, 60, "the run VM")
        (name,) = db_entries(tiny_db)["vms"]

        def guest_sleeps() -> bool:
            return miv(tiny_db, "ssh", name, "pidof sleep", rc=None).returncode == 0

        wait_until(guest_sleeps, 180, "the command to run in the guest")
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGHUP)  # a second signal must not cut the cleanup short
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    # Both are pending at once, and the kernel may hand over SIGHUP first: either one counts.
    assert proc.returncode in (128 + signal.SIGTERM, 128 + signal.SIGHUP), err.decode()
    assert f"terminated by {signal.Signals(proc.returncode - 128).name}" in err.decode()
    assert b"Traceback" not in err
    assert db_entries(tiny_db)["vms"] == [] and _qemu_pids(tiny_db) == []
    assert b"no problems" in miv(tiny_db, "fsck").stderr


@pytest.mark.vm
def test_build_killed_by_sigkill_leaves_an_orphan_that_fsck_reports_and_prune_removes(
        tiny_db: Path, tmp_path: Path) -> None:
    """On main, the build VM kept running, `fsck` called the database ok and `prune` left it."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("from: tiny\nmemory: 200\nsteps:\n  - uses: run\n    with:\n      steps:\n"
                      "        - run: sleep 600\n")
    proc = subprocess.Popen([MIV, "build", str(recipe)], env=_env(tiny_db), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def build_vm_runs() -> bool:
            vms = db_entries(tiny_db)["vms"]
            return len(vms) == 1 and (tiny_db / "vms" / vms[0] / "run.json").exists() and bool(_qemu_pids(tiny_db))

        wait_until(build_vm_runs, 120, "the build VM to run")
    finally:
        proc.kill()
        proc.wait()
    (name,) = db_entries(tiny_db)["vms"]
    assert name.startswith("build-")
    (qemu,) = _qemu_pids(tiny_db)
    fsck = miv(tiny_db, "fsck", rc=1)
    assert (f"vm {name}: an orphan: the miv process that made it (pid {proc.pid}) is gone, "
            f"and its QEMU (pid {qemu}) still runs; `miv prune` removes it") in fsck.stdout.decode()
    pruned = miv(tiny_db, "prune").stderr.decode()
    assert f"removed orphan VM {name}" in pruned
    assert _qemu_pids(tiny_db) == [] and db_entries(tiny_db)["vms"] == [] and db_entries(tiny_db)["staging"] == []
    assert b"no problems" in miv(tiny_db, "fsck").stderr
