"""Recipes: loading and validation errors, and real builds on the tiny guest."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from minivirt_core.errors import InvalidInput
from minivirt_core.recipes import load_recipe

from .helpers import MIV, ROOT, db_entries, guest_runs, miv, wait_until
from .httpserver import StaticServer


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def build_error(db: Path, recipe: Path) -> str:
    proc = miv(db, "build", str(recipe), rc=1)
    assert b"Traceback" not in proc.stderr
    return proc.stderr.decode()


# Loading -----------------------------------------------------------------------


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe: Path) -> None:
    loaded = load_recipe(recipe)
    assert loaded.steps and loaded.tests


def test_typo_in_step_kind(db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "steps:\n  - uses: create_disk_image\n    with: {size: 1G}\n  - uses: downlaod\n    with:\n"
                        "      url: http://x/y\n")
    assert ("r.yaml:4: step 2: unknown step kind 'downlaod' — did you mean 'download'?" in build_error(db, r))


def test_missing_required_key(db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "memory: 256\nsteps:\n  - uses: download\n    with:\n      filename: x.img\n")
    assert "r.yaml:4: step 1 (download): missing required key 'url' in 'with'" in build_error(db, r)


def test_unknown_key(db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "steps:\n  - uses: create_disk_image\n    with:\n      size: 1G\n      atach: {type: disk}\n")
    err = build_error(db, r)
    assert "r.yaml:5: step 1 (create_disk_image): 'with': unknown key 'atach' — did you mean 'attach'?" in err
    r = write(tmp_path, "memroy: 256\nsteps: []\n")
    assert "r.yaml:1: recipe: unknown key 'memroy' — did you mean 'memory'?" in build_error(db, r)


def test_bad_yaml(db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "steps:\n  - uses: download\n    with: {url: [1, 2\n")
    assert "r.yaml:4: invalid YAML: expected ',' or ']', but got '<stream end>'" in build_error(db, r)


def test_python_tags_are_never_executed(db: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    r = write(tmp_path, f'steps: !!python/object/apply:os.system ["touch {marker}"]\n')
    err = build_error(db, r)
    assert "r.yaml:1: the YAML tag !!python/object/apply:os.system is not allowed in a recipe" in err
    assert not marker.exists()
    assert db_entries(db) == {"images": [], "vms": [], "staging": []}
    with pytest.raises(InvalidInput):
        load_recipe(r)
    assert not marker.exists()


def _billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nsteps: *a{levels}\n"


def test_yaml_alias_bomb_fails_fast_in_bounded_memory(db: Path, tmp_path: Path) -> None:
    """Regression: a 9-level billion-laughs recipe took 35 s and 3.6 GB before failing."""
    import tracemalloc

    r = write(tmp_path, _billion_laughs())
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(InvalidInput, match=r"r.yaml:\d+: invalid YAML: this value expands to more than"):
            load_recipe(r)
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 1 and peak < 16 << 20, (seconds, peak)
    err = build_error(db, r)
    assert "expands to more than 20000 values" in err and err.count("\n") <= 2
    assert db_entries(db) == {"images": [], "vms": [], "staging": []}


@pytest.mark.parametrize("text,message", [
    ("steps: &a [*a]\n", "r.yaml:1: invalid YAML: the alias *a refers to a value that contains it"),
    ("steps:\n  - &s {uses: run, with: {steps: [*s]}}\n",
     "r.yaml:2: invalid YAML: the alias *s refers to a value that contains it"),
    ("steps: " + "[" * 100_000 + "]" * 100_000 + "\n", "r.yaml:1: invalid YAML: values are nested more than 64"),
    ("steps:\n" + "".join("  " * i + "- \n" for i in range(1, 300)),
     "invalid YAML: values are nested more than 64 levels deep"),
], ids=["recursive", "recursive-step", "deep-flow", "deep-block"])
def test_recursive_or_deep_yaml_is_a_clear_error(db: Path, tmp_path: Path, text: str, message: str) -> None:
    """Regression: these gave a RecursionError traceback."""
    r = write(tmp_path, text)
    started = time.monotonic()
    with pytest.raises(InvalidInput) as caught:
        load_recipe(r)
    assert time.monotonic() - started < 1
    assert message in str(caught.value)
    assert message in build_error(db, r)


@pytest.mark.parametrize("with_,message", [
    ("{src: /etc/passwd, dest: /root/x}", "r.yaml:5: step 2 (copy): 'src' '/etc/passwd' is an absolute path"),
    ("{src: ../../../../../../etc/passwd, dest: /root/x}",
     "r.yaml:5: step 2 (copy): 'src' '../../../../../../etc/passwd' leads outside the recipe's folder"),
    ("{src: out-link, dest: /root/x}", "r.yaml:5: step 2 (copy): 'src' 'out-link' leads outside the recipe's folder"),
    ("{url: 'file:///etc/passwd', filename: p}",
     "r.yaml:5: step 2 (download): 'url' 'file:///etc/passwd' names a file outside the recipe's folder"),
    ("{url: 'file:out-link', filename: p}", "'url' 'file:out-link' names a file outside the recipe's folder"),
    ("{size: 1M, filename: TMP/planted.qcow2}", "r.yaml:5: step 2 (create_disk_image): 'filename' "
                                                "'TMP/planted.qcow2' must be a plain file name in the build folder"),
    ("{size: 1M, filename: ../../x.qcow2}", "'filename' '../../x.qcow2' must be a plain file name"),
    ("{size: 1M, filename: config.json}", "'filename' 'config.json' is a file of the build VM itself"),
    ("{url: 'http://127.0.0.1:9/..'}", "step 2 (download): the file this download writes: '..' must be a plain"),
], ids=["src-absolute", "src-dotdot", "src-symlink", "file-url-absolute", "file-url-symlink", "filename-absolute",
        "filename-dotdot", "filename-vm-config", "download-default-name"])
def test_recipe_file_references_cannot_leave_their_folders(db: Path, tmp_path: Path, with_: str,
                                                           message: str) -> None:
    """Regression: `filename: /x` wrote anywhere and `src`/file: URLs read any host file."""
    (tmp_path / "out-link").symlink_to("/etc/passwd")
    with_, message = with_.replace("TMP", str(tmp_path)), message.replace("TMP", str(tmp_path))
    uses = "copy" if "src" in with_ else "download" if "url" in with_ else "create_disk_image"
    r = write(tmp_path, f"steps:\n  - uses: host\n    with: {{run: 'true'}}\n  - uses: {uses}\n"
                        f"    with: {with_}\n")
    err = build_error(db, r)
    assert message in err and err.count("\n") <= 2, err
    assert db_entries(db) == {"images": [], "vms": [], "staging": []}
    assert not (tmp_path / "planted.qcow2").exists()


def test_copy_source_turned_into_a_link_out_is_refused_when_it_runs(db: Path, tmp_path: Path) -> None:
    """The check is made again when the step runs: here a host step swaps the file for a link."""
    (tmp_path / "payload.txt").write_text("fine\n")
    r = write(tmp_path, "steps:\n  - uses: host\n    with:\n      run: ln -sf /etc/passwd \"$MINIVIRT_RECIPE_DIR/"
                        "payload.txt\"\n  - uses: copy\n    with:\n      src: payload.txt\n      dest: /root/p\n")
    assert load_recipe(r).steps
    err = build_error(db, r)
    assert f"step 2 (uses: copy) failed: {r}:7: 'src' 'payload.txt' leads outside the recipe's folder" in err
    assert db_entries(db) == {"images": [], "vms": [], "staging": []}


def test_placeholders_leave_other_braces_alone() -> None:
    from minivirt_core.hostinfo import host_arch
    from minivirt_core.recipes.placeholders import fill
    from minivirt_core.ssh import public_key_text

    text = '{"a": {"b": 1}} ${HOME} {arch} {vagrant_pubkey} {unknown}'
    assert fill(text) == f'{{"a": {{"b": 1}}}} ${{HOME}} {host_arch()} {public_key_text()} {{unknown}}'


def test_cloud_init_iso_is_a_real_cidata_volume(tmp_path: Path) -> None:
    import io

    import pycdlib

    from minivirt_core.cidata import write_cidata

    write_cidata(tmp_path / "ci.iso", "users: []\n")
    iso = pycdlib.PyCdlib()
    iso.open(str(tmp_path / "ci.iso"))
    try:
        assert iso.pvd.volume_identifier.rstrip() == b"cidata"
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path="/user-data")
        assert out.getvalue() == b"#cloud-config\nusers: []\n"
    finally:
        iso.close()


# Building ---------------------------------------------------------------------


@pytest.mark.vm
def test_tiny_recipe_builds_and_passes_its_tests(tiny_image) -> None:
    """The session fixture ran `miv build recipes/tiny.yaml --tag tiny` in an empty database."""
    log = tiny_image.build_log
    if log:  # absent when the image came from an older cache entry
        assert "test hostname, architecture, configured on the console: passed" in log
    assert (tiny_image.path / "disk.qcow2").stat().st_size > 1 << 20


@pytest.mark.vm
def test_failing_expect(tiny_db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "from: tiny\nmemory: 200\nsteps:\n  - uses: run\n    with:\n      steps:\n"
                        "        - run: echo hello > /root/greeting\n"
                        "tests:\n  - name: greeting\n    run: cat /root/greeting\n    expect: '^goodbye'\n")
    before = db_entries(tiny_db)["images"]
    err = build_error(tiny_db, r)
    assert "test 'greeting' failed: expected output matching /^goodbye/, got:" in err and "hello" in err
    after = db_entries(tiny_db)
    assert after["images"] == before and after["vms"] == [] and after["staging"] == []


@pytest.mark.vm
def test_failing_run_script_stops_at_the_first_failure(tiny_db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "from: tiny\nmemory: 200\nsteps:\n  - uses: run\n    with:\n      steps:\n"
                        "        - name: broken\n          run: |\n            echo before\n            false\n"
                        "            echo after-the-failure\n")
    err = build_error(tiny_db, r)
    assert "step 1 (uses: run) failed: broken exited with status 1" in err
    assert "before" in err and "after-the-failure" not in err
    assert db_entries(tiny_db)["vms"] == []
    # continue_on_error lets the build go on.
    r = write(tmp_path, "from: tiny\nmemory: 200\nsteps:\n  - uses: run\n    with:\n      steps:\n"
                        "        - run: exit 3\n          continue_on_error: true\n"
                        "        - run: echo survived > /root/s\n"
                        "tests:\n  - run: cat /root/s\n    expect: survived\n")
    miv(tiny_db, "build", str(r), "--tag", "survivor")


@pytest.mark.vm
def test_console_wait_timeout_shows_last_output(tiny_db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "from: tiny\nmemory: 200\nsteps:\n  - name: never\n    uses: run_console\n    with:\n"
                        "      steps:\n        - wait: 'login: '\n          timeout: 120\n"
                        "        - wait: 'THIS NEVER APPEARS'\n          timeout: 3\n")
    err = build_error(tiny_db, r)
    assert ("step 1 (never) failed: /THIS NEVER APPEARS/ did not appear on the console within 3 s "
            "(QEMU: the guest is running)") in err
    assert "last console output:" in err and "tiny login:" in err
    assert db_entries(tiny_db)["vms"] == [] and db_entries(tiny_db)["staging"] == []


@pytest.mark.vm
def test_a_console_wait_on_a_guest_that_printed_nothing_says_so(db: Path, tmp_path: Path) -> None:
    """Regression: a CI build's first boot of the Debian image waited 600 s for `login:` and
    failed with nothing more to go on. The error now says the console stayed silent and what
    QEMU says of the guest (an empty disk: the firmware finds nothing to boot, silently)."""
    r = write(tmp_path, "memory: 64\nsteps:\n  - uses: create_disk_image\n    with:\n      size: 1M\n"
                        "      attach: {type: disk}\n  - name: silent\n    uses: run_console\n    with:\n"
                        "      steps:\n        - wait: 'login: '\n          timeout: 3\n")
    err = build_error(db, r)
    assert ("step 2 (silent) failed: /login: / did not appear on the console within 3 s; the console "
            "printed nothing (QEMU: the guest is running; vCPU 0 ") in err, err
    assert re.search(r"vCPU 0 (halted|busy) at [RE]IP=[0-9a-f]+ CPL=0\)", err), err  # where it is
    assert "last console output" not in err


def test_a_cancelled_host_step_stops_its_whole_command(db: Path, tmp_path: Path) -> None:
    """Regression: a host step cancelled by its timeout (or Ctrl-C) killed only its bash; what
    that bash had started went on running (a Debian build's mmdebstrap, its mounts, writing
    into the build VM's folder after the build removed it). Now the whole process group gets
    SIGTERM, so traps clean up, then SIGKILL for what is left."""
    marker = tmp_path / "cleaned"
    r = write(tmp_path, "steps:\n  - name: slow\n    uses: host\n    timeout: 2\n    with:\n      run: |\n"
                        f"        bash -c 'trap \"echo cleaned > {marker}; exit 0\" TERM; sleep 4321 & wait'\n")
    err = build_error(db, r)
    assert "step 1 (slow) did not finish within 2 s" in err, err
    assert marker.read_text() == "cleaned\n"  # the command's own trap ran

    def left() -> list[str]:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if cmdline.read_bytes() == b"sleep\x004321\x00":
                    found.append(cmdline.parent.name)
            except OSError:
                pass
        return found

    assert left() == []  # nothing of it still runs
    assert db_entries(db)["vms"] == [] and db_entries(db)["staging"] == []


@pytest.mark.vm
def test_keep_on_failure_keeps_the_build_vm(tiny_db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "from: tiny\nmemory: 200\nsteps:\n  - uses: run\n    with:\n      steps:\n"
                        "        - run: exit 1\n")
    proc = miv(tiny_db, "build", str(r), "--keep-on-failure", rc=1)
    (vm,) = db_entries(tiny_db)["vms"]
    assert f"miv start {vm}" in proc.stderr.decode()
    # Kept for the user, so not an orphan of the finished build: prune leaves it.
    assert b"no problems" in miv(tiny_db, "fsck").stderr
    miv(tiny_db, "prune")
    assert db_entries(tiny_db)["vms"] == [vm]
    miv(tiny_db, "destroy", vm)


@pytest.mark.vm
def test_ctrl_c_during_build_leaves_nothing(tiny_db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "from: tiny\nmemory: 200\nsteps:\n  - uses: run\n    with:\n      steps:\n"
                        "        - run: sleep 600\n")
    before = db_entries(tiny_db)["images"]
    proc = subprocess.Popen([MIV, "build", str(r), "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "MINIVIRT_DB_PATH": str(tiny_db)})
    (vm,) = wait_until(lambda: [n for n in db_entries(tiny_db)["vms"] if (tiny_db / "vms" / n / "run.json").exists()],
                       120, "the build VM to run")
    wait_until(lambda: guest_runs(tiny_db, vm, "sleep 600"), 120, "the build's `sleep 600` in the guest")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    after = db_entries(tiny_db)
    assert after == {"images": before, "vms": [], "staging": []}


@pytest.mark.vm
def test_two_tiny_builds_at_once(db: Path) -> None:
    env = {**os.environ, "MINIVIRT_DB_PATH": str(db)}
    procs = [subprocess.Popen([MIV, "build", str(ROOT / "recipes" / "tiny.yaml"), "--tag", f"t{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for i in (1, 2)]
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    assert (db / "images" / "t1").is_symlink() and (db / "images" / "t2").is_symlink()
    assert db_entries(db)["vms"] == [] and db_entries(db)["staging"] == []


@pytest.mark.vm
def test_verbose_build_streams_the_console_live(tiny_db: Path, tmp_path: Path) -> None:
    r = write(tmp_path, "from: tiny\nmemory: 200\nsteps:\n  - uses: run_console\n    with:\n      steps:\n"
                        "        - wait: 'login: '\n          timeout: 120\n        - send: \"root\\n\"\n"
                        "        - wait: '# '\n        - send: \"sleep 5; poweroff\\n\"\n")
    proc = subprocess.Popen([MIV, "build", str(r), "-v"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MINIVIRT_DB_PATH": str(tiny_db)})
    assert proc.stdout is not None
    seen = b""
    while b"tiny login:" not in seen:
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, "the build ended before the console showed its login prompt"
        seen += chunk
    assert proc.poll() is None  # read while the build still runs: live, not at the end
    proc.communicate(timeout=300)
    assert proc.returncode == 0


# Downloads ----------------------------------------------------------------------


@pytest.fixture
def http(tmp_path: Path):
    server = StaticServer(tmp_path / "www").start()
    yield server
    server.stop()


def _download_recipe(tmp_path: Path, url: str, sha256: str | None = None) -> Path:
    extra = f"\n      sha256: '{sha256}'" if sha256 else ""
    return write(tmp_path, f"from: tiny\nsteps:\n  - uses: download\n    with:\n      url: {url}\n"
                           f"      filename: payload.bin{extra}\n")


@pytest.mark.vm
def test_download_404_fails_and_caches_nothing(tiny_db: Path, tmp_path: Path, http: StaticServer) -> None:
    err = build_error(tiny_db, _download_recipe(tmp_path, f"{http.url}/missing.img"))
    assert "HTTP 404" in err
    assert not (tiny_db / "cache").exists() or os.listdir(tiny_db / "cache") == []


@pytest.mark.vm
def test_download_cut_halfway_resumes(tiny_db: Path, tmp_path: Path, http: StaticServer) -> None:
    import hashlib

    data = os.urandom(3 << 20)
    url = http.put("big.img", data)
    http.cut_after["/big.img"] = len(data) // 2
    miv(tiny_db, "build", str(_download_recipe(tmp_path, url, hashlib.sha256(data).hexdigest())))
    ranges = [r.range for r in http.requests if r.path == "/big.img"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1][6:].rstrip("-")) > 0
    from minivirt_core.download import cache_key

    assert (tiny_db / "cache" / cache_key(url)).read_bytes() == data


@pytest.mark.vm
async def test_build_events_arrive_on_the_event_loop(tiny_db: Path, tmp_path: Path, http: StaticServer) -> None:
    """Regression: download progress reached ``on_event`` from the download thread."""
    import threading

    from minivirt_core import Minivirt
    from minivirt_core.recipes import events
    from minivirt_core.recipes.build import Builder

    url = http.put("small.img", os.urandom(1 << 20))
    seen: list[tuple[type, int]] = []
    recipe = load_recipe(_download_recipe(tmp_path, url))
    await Builder(Minivirt(tiny_db).vms, recipe, lambda e: seen.append((type(e), threading.get_ident()))).build([])
    assert events.Note in {kind for kind, _ in seen}  # the download reported progress
    assert {thread for _, thread in seen} == {threading.get_ident()}


@pytest.mark.vm
def test_download_wrong_sha256_fails(tiny_db: Path, tmp_path: Path, http: StaticServer) -> None:
    url = http.put("file.img", b"real content")
    err = build_error(tiny_db, _download_recipe(tmp_path, url, "0" * 64))
    assert "the recipe expects " + "0" * 64 in err
    assert os.listdir(tiny_db / "cache") == []


@pytest.mark.vm
def test_copy_steps_and_step_timeout(tiny_db: Path, tmp_path: Path) -> None:
    (tmp_path / "payload.txt").write_text("copied by the recipe\n")
    r = write(tmp_path, "from: tiny\nmemory: 200\ncpus: 1\nsteps:\n"
                        "  - uses: copy\n    with: {src: payload.txt, dest: /root/one.txt}\n"
                        "  - uses: run\n    with:\n      steps:\n"
                        "        - uses: copy\n          with: {src: payload.txt, dest: /root/two.txt}\n"
                        "        - run: cat /root/one.txt /root/two.txt > /root/both.txt\n"
                        "tests:\n  - run: cat /root/both.txt\n"
                        "    expect: \"copied by the recipe\\ncopied by the recipe\"\n")
    miv(tiny_db, "build", str(r), "--tag", "copied")
    r = write(tmp_path, "from: tiny\nmemory: 200\nsteps:\n  - name: too slow\n    uses: run\n    timeout: 20\n"
                        "    with:\n      steps:\n        - run: sleep 600\n", "slow.yaml")
    err = build_error(tiny_db, r)
    assert "step 1 (too slow) did not finish within 20 s" in err
    assert db_entries(tiny_db)["vms"] == []


@pytest.mark.vm
def test_verbose_build_and_logs_pass_no_terminal_queries(tiny_db: Path, tmp_path: Path) -> None:
    """Regression: `miv build -v` and `miv logs` copied the guest's terminal queries (its
    shell's ESC[6n, and here printf's) to the user's terminal, which typed its answers into
    the user's shell."""
    r = write(tmp_path, "from: tiny\nmemory: 200\nsteps:\n  - uses: run_console\n    with:\n      steps:\n"
                        "        - wait: 'login: '\n          timeout: 120\n        - send: \"root\\n\"\n"
                        "        - wait: '# '\n"
                        "        - send: \"printf '\\\\033[6n\\\\033]11;?\\\\007\\\\033[>cEND-%s\\\\n'"
                        " OF-QUERIES\\n\"\n"
                        "        - wait: END-OF-QUERIES\n"
                        "        - wait: never appears\n          timeout: 1\n")
    proc = miv(tiny_db, "build", str(r), "-v", "--keep-on-failure", rc=1)
    (vm,) = db_entries(tiny_db)["vms"]
    try:
        raw = (tiny_db / "vms" / vm / "serial.log").read_bytes()
        assert b"\x1b[6n\x1b]11;?\x07\x1b[>cEND-OF-QUERIES" in raw  # the guest did ask
        shown = miv(tiny_db, "logs", vm).stdout
        for out in (proc.stdout, shown):
            assert b"END-OF-QUERIES" in out and b"tiny login:" in out
            assert b"\x1b[6n" not in out and b"\x1b]11;?" not in out and b"\x1b[>c" not in out
    finally:
        miv(tiny_db, "destroy", vm)


def test_debian_tests_skip_with_a_reason_where_the_image_cannot_be_built(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real Debian guests' tests run by default; a machine that cannot build the image
    skips them with what is missing (not a failure), and MINIVIRT_SKIP_DEBIAN=1 leaves them out."""
    from .conftest import debian_build_unavailable

    monkeypatch.setenv("MINIVIRT_SKIP_DEBIAN", "1")
    assert "MINIVIRT_SKIP_DEBIAN=1" in (debian_build_unavailable() or "")
    monkeypatch.delenv("MINIVIRT_SKIP_DEBIAN")
    if os.geteuid() == 0:
        (tmp_path / "apt-get").symlink_to("/usr/bin/apt-get")
        monkeypatch.setenv("PATH", str(tmp_path))  # none of the builder's tools
        why = debian_build_unavailable() or ""
        assert "mmdebstrap" in why and "mkfs.ext4" in why and "scripts/setup" in why
    else:
        assert "as root" in (debian_build_unavailable() or "")
