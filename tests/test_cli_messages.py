"""What `miv` says: messages name what the user typed, moved tags say where they moved
from, nothing claims what did not happen, one error format, one set of columns and
defaults with the dashboard (issue 10, CLI glitches 11-14 and 16)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from minivirt_core import defaults
from minivirt_core.rows import IMAGE_COLUMNS, REMOTE_COLUMNS, VM_COLUMNS

from .helpers import image_files, image_id_of, image_tar, miv, put_on_remote


def _load(db: Path, n: int, *tags: str) -> str:
    """Load test image ``n`` with ``tags``; its full id."""
    miv(db, "load", *tags, input=image_tar(n))
    return image_id_of(image_files(n))


def _ps(db: Path) -> dict[str, dict]:
    return {v["name"]: v for v in json.loads(miv(db, "ps", "-a", "--json").stdout)}


def _err(proc) -> str:
    return proc.stderr.decode()


# 11: what the user typed ------------------------------------------------------


def test_a_vm_is_shown_by_the_tag_it_was_created_from_not_the_first_tag(db: Path) -> None:
    _load(db, 0, "alpine", "tiny")  # "alpine" sorts first: it used to name every VM of this image
    created = miv(db, "create", "tiny", "web", "-m", "64")
    assert "created VM web from tiny;" in _err(created)
    assert _ps(db)["web"]["image_label"] == "tiny" and _ps(db)["web"]["image_ref"] == "tiny"
    row = miv(db, "ps", "-a").stdout.decode().splitlines()[1].split()
    assert row[:3] == ["web", "stopped", "tiny"]
    assert json.loads((db / "vms" / "web" / "config.json").read_text())["image_ref"] == "tiny"


def test_a_vm_whose_tag_moved_since_shows_the_id_it_was_created_from(db: Path) -> None:
    first = _load(db, 0, "tiny")
    miv(db, "create", "tiny", "web", "-m", "64")
    _load(db, 1, "tiny")  # tiny moves on
    assert _ps(db)["web"]["image_label"] == f"tiny@{first[:12]}"
    miv(db, "untag", "tiny")  # and a tag that is gone
    assert _ps(db)["web"]["image_label"] == f"tiny@{first[:12]}"


def test_a_vm_created_from_an_id_prefix_shows_the_short_id(db: Path) -> None:
    image_id = _load(db, 0, "tiny")
    assert "from " + image_id[:12] in _err(miv(db, "create", image_id[:8], "web", "-m", "64"))
    assert _ps(db)["web"]["image_label"] == image_id[:12]


def test_vm_configs_without_a_reference_stay_valid(db: Path) -> None:
    image_id = _load(db, 0, "b-tag", "a-tag")
    vm = db / "vms" / "old"
    vm.mkdir(parents=True)
    (vm / "config.json").write_text(json.dumps({"image": image_id, "memory": 64, "disk": True}))
    assert _ps(db)["old"]["image_label"] == "a-tag" and _ps(db)["old"]["image_ref"] is None
    (vm / "config.json").write_text(json.dumps({"image": image_id, "image_ref": ["not", "text"]}))
    assert _ps(db)["old"]["state"] == "broken"  # a malformed reference is named, not a traceback
    assert "image_ref" in _ps(db)["old"]["reason"]


def test_save_names_the_image_as_typed(db: Path, tmp_path: Path) -> None:
    _load(db, 0, "extcli", "tiny")
    proc = miv(db, "save", "tiny", "-o", str(tmp_path / "t.tar"))
    assert "saved tiny (" in _err(proc) and "extcli" not in _err(proc)


# 12: silent overwrites --------------------------------------------------------


def test_remote_add_refuses_to_replace_a_remote_without_force(db: Path, tmp_path: Path) -> None:
    miv(db, "remote", "add", "local", f"file://{tmp_path}/one")
    proc = miv(db, "remote", "add", "local", f"file://{tmp_path}/two", rc=1)
    assert _err(proc).startswith("error: a remote named 'local' exists already")
    assert "--force" in _err(proc) and "Traceback" not in _err(proc)
    assert json.loads((db / "remotes.json").read_text())["local"] == f"file://{tmp_path}/one"
    miv(db, "remote", "add", "local", f"file://{tmp_path}/one")  # the same URL again: fine
    proc = miv(db, "remote", "add", "--force", "local", f"file://{tmp_path}/two")
    assert f"replaced remote local: file://{tmp_path}/two (was file://{tmp_path}/one)" in _err(proc)
    assert json.loads((db / "remotes.json").read_text())["local"] == f"file://{tmp_path}/two"


def test_every_moved_tag_says_where_it_moved_from(db: Path, tmp_path: Path) -> None:
    old = _load(db, 0, "tiny")
    # load
    proc = miv(db, "load", "tiny", input=image_tar(1))
    one = image_id_of(image_files(1))
    assert f"tag tiny moved from {old[:12]} to {one[:12]}" in _err(proc)
    # tag
    proc = miv(db, "tag", old[:12], "tiny")
    assert f"tag tiny moved from {one[:12]} to {old[:12]}" in _err(proc)
    assert f"tagged {old[:12]} ({old[:12]}) as again" in _err(miv(db, "tag", old[:12], "again"))
    # pull (a file:// remote; the image is here already, and then one that is not)
    import gzip

    two = image_id_of(image_files(2))
    url = put_on_remote("file", tmp_path, None, two, gzip.compress(image_tar(2)), "tiny")
    miv(db, "remote", "add", "r", url)
    proc = miv(db, "pull", "r", "tiny")
    assert f"tag tiny moved from {old[:12]} to {two[:12]}" in _err(proc)
    miv(db, "tag", old[:12], "tiny")
    assert f"tag tiny moved from {old[:12]} to {two[:12]}" in _err(miv(db, "pull", "r", "tiny"))  # already here
    # commit (a VM never booted: only its disk is copied)
    miv(db, "create", "tiny", "web", "-m", "64")
    proc = miv(db, "commit", "web", "tiny")
    new = proc.stdout.decode().strip()
    assert f"tag tiny moved from {two[:12]} to {new}" in _err(proc)
    # build (a recipe that only makes a disk: no VM boots)
    recipe = tmp_path / "disk.yaml"
    recipe.write_text("steps:\n  - uses: create_disk_image\n    with: {size: 1M}\n")
    proc = miv(db, "build", str(recipe), "-t", "tiny", timeout=120)
    built = proc.stdout.decode().split()[0]
    assert f"tag tiny moved from {new} to {built}" in _err(proc)


# 13: messages that are true ---------------------------------------------------


def test_stop_and_kill_of_a_stopped_vm_say_it_was_already_stopped(db: Path) -> None:
    _load(db, 0, "tiny")
    miv(db, "create", "tiny", "web", "-m", "64")
    assert _err(miv(db, "stop", "web")) == "web was already stopped\n"
    assert _err(miv(db, "kill", "web")) == "web was already stopped\n"


# 14: one error format -----------------------------------------------------------


def test_console_of_a_stopped_vm_is_an_error_with_a_hint(db: Path) -> None:
    _load(db, 0, "tiny")
    miv(db, "create", "tiny", "web", "-m", "64")
    lines = _err(miv(db, "console", "web", rc=1)).splitlines()
    assert lines[0] == "error: VM 'web' is not running"
    assert len(lines) == 2 and "miv start web" in lines[1]


@pytest.mark.parametrize("args, message, hint", [
    (["save"], "error: missing argument 'IMAGE'", "Usage: miv save [OPTIONS] IMAGE; `miv save --help` tells more."),
    (["--bogus"], "error: no such option '--bogus'", "`miv --help` tells more."),
    (["bogus"], "error: no such command 'bogus'", "`miv --help` lists the commands."),
    (["remote", "nope"], "error: no such command 'nope'", "`miv remote --help` lists the commands."),
    (["ps", "--foo"], "error: no such option '--foo'", "Usage: miv ps [OPTIONS]; `miv ps --help` tells more."),
    (["create", "tiny", "web", "--cpus", "x"], "error: invalid value for '--cpus'", "`miv create --help`"),
    (["load", "-i", "/nonexistent/x.tar"], "error: invalid value for '-i'", "`miv load --help`"),
])
def test_usage_errors_have_the_same_format_as_every_other_error(db: Path, args: list[str], message: str,
                                                               hint: str) -> None:
    lines = _err(miv(db, *args, rc=2)).splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(message) and hint in lines[1]


def test_refusing_to_write_an_archive_to_a_terminal_has_the_error_format(db: Path) -> None:
    import pty
    import subprocess

    from .helpers import MIV

    _load(db, 0, "tiny")
    parent, child = pty.openpty()
    try:
        proc = subprocess.run([MIV, "save", "tiny"], stdout=child, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env={**os.environ, "MINIVIRT_DB_PATH": str(db)}, timeout=60)
    finally:
        os.close(child)
        os.close(parent)
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("error: refusing to write an archive to a terminal")


# 16: one set of columns and defaults ----------------------------------------------


def test_cli_tables_use_the_columns_the_dashboard_uses(db: Path, tmp_path: Path) -> None:
    from minivirt_tui.dashboard.tables import ImagesTable, RemotesTable, VmsTable

    _load(db, 0, "tiny")
    miv(db, "create", "tiny", "web", "-m", "64")
    miv(db, "remote", "add", "r", f"file://{tmp_path}")
    # The shared columns, then the CLI's WARM (how many warm states an image has).
    assert miv(db, "images").stdout.decode().splitlines()[0].split() == [*" ".join(IMAGE_COLUMNS).split(), "WARM"]
    assert miv(db, "ps", "-a").stdout.decode().splitlines()[0].split() == list(VM_COLUMNS)
    assert miv(db, "remote", "list").stdout.decode().splitlines()[0].split() == list(REMOTE_COLUMNS)
    def titles(table: type) -> tuple[str, ...]:
        return tuple(getattr(c, "title", c) for c in table.COLUMNS)

    assert titles(ImagesTable) == (*IMAGE_COLUMNS, "WARM") and titles(RemotesTable) == REMOTE_COLUMNS
    assert titles(VmsTable)[:len(VM_COLUMNS)] == VM_COLUMNS  # then the dashboard's live CPU% and RSS


def test_a_vm_created_without_settings_gets_the_core_defaults(db: Path) -> None:
    _load(db, 0, "tiny")
    miv(db, "create", "tiny", "web")
    config = json.loads((db / "vms" / "web" / "config.json").read_text())
    assert config["memory"] == defaults.MEMORY_MB and config["cpus"] == defaults.CPUS
    for command in ("create", "run"):
        help_text = " ".join(miv(db, command, "--help").stdout.decode().split())
        assert f"[default: {defaults.MEMORY_MB}]" in help_text and f"[default: {defaults.CPUS}" in help_text


async def test_the_dashboards_create_form_proposes_the_core_defaults(db: Path) -> None:
    from minivirt_core import Minivirt
    from minivirt_tui.dashboard.app import MivApp
    from minivirt_tui.dashboard.modals import FormModal

    _load(db, 0, "tiny")
    app = MivApp(Minivirt(db), refresh_interval=0.5, probe_accel=False)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.query_one("#images").row_count != 1:
            await pilot.pause(0.05)
        app.query_one("#images").focus()
        await pilot.press("c")
        while not isinstance(app.screen, FormModal):
            await pilot.pause(0.05)
        assert app.screen.query_one("#field-memory").value == str(defaults.MEMORY_MB)
        assert app.screen.query_one("#field-cpus").value == str(defaults.CPUS)
