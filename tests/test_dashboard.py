"""The dashboard through Textual's pilot, against real databases, VMs and servers."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from minivirt_core import Minivirt
from minivirt_tui.dashboard.app import MivApp
from minivirt_tui.dashboard.modals import ConfirmModal, FormModal, ReportModal
from minivirt_tui.dashboard.output import JobView
from minivirt_tui.dashboard.tables import Row
from minivirt_tui.dashboard.terminal import SerialTerminal

from .helpers import image_files, image_id_of, image_tar, miv, running_in_some_thread, simple_tar, wait_until

SIZE = (120, 40)


async def until(pilot, predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{what_the_app_says(pilot.app)}")
        await pilot.pause(0.1)


def what_the_app_says(app: MivApp) -> str:
    """The events log, the jobs' status lines and the notifications: why a wait failed."""
    lines = [f"screen: {type(app.screen).__name__}"]
    lines += [f"event: {line}" for line in app.screen_stack[0].query_one("#events").lines]  # under any modal
    lines += [f"job {view.title}: {view.status_text}" for view in app.query(JobView)]
    lines += [f"notification: {n.title or ''} {n.message}" for n in app._notifications]
    return "\n".join(lines)


async def fill_form(pilot, **values: str) -> None:
    """Fill a FormModal's inputs and submit it."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, FormModal), 10, "the form")
    for name, value in values.items():
        widget = app.screen.query_one(f"#field-{name}")
        widget.value = value
    await pilot.pause()
    form = app.screen
    await pilot.click("#submit")
    await until(pilot, lambda: app.screen is not form, 10, "the form to be submitted")


async def refused_in_form(pilot, key: str, message: str, **values: str) -> None:
    """Press ``key``, type ``values`` into its form and submit: the error shows in the form,
    which stays open with what was typed; then Escape."""
    app = pilot.app
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, FormModal), 10, "the form")
    for name, value in values.items():
        app.screen.query_one(f"#field-{name}").value = value
    await pilot.press("enter")
    await until(pilot, lambda: message in str(app.screen.query_one("#form-error").render()), 10,
                "the error in the form")
    assert isinstance(app.screen, FormModal)
    assert all(app.screen.query_one(f"#field-{n}").value == v for n, v in values.items())
    await pilot.press("escape")


def make_app(db: Path, **kw) -> MivApp:
    return MivApp(Minivirt(db), refresh_interval=0.5, **kw)


def running(db: Path, name: str) -> bool:
    return Minivirt(db).vms.status(name).running


async def test_image_actions(db: Path, tmp_path: Path) -> None:
    miv(db, "load", "base", input=image_tar())
    app = make_app(db, probe_accel=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.query_one("#images").row_count == 1, what="the image")
        await pilot.press("t")
        await fill_form(pilot, tag="second")
        await until(pilot, lambda: (db / "images" / "second").is_symlink(), 10, "the tag")
        # Invalid input: the error shows in the form, which stays open with what was typed.
        await refused_in_form(pilot, "t", "may not contain '/'", tag="bad/tag")
        assert app.is_running
        await pilot.press("u")
        await fill_form(pilot, tag="second")
        await until(pilot, lambda: not (db / "images" / "second").exists(), 10, "the untag")
        # Save to a file through the modal.
        await pilot.press("s")
        await fill_form(pilot, path=str(tmp_path / "saved.tar"))
        await until(pilot, lambda: (tmp_path / "saved.tar").exists(), 20, "the saved file")
        # Push to a file:// remote, then prune after untagging.
        repo = tmp_path / "repo"
        repo.mkdir()
        Minivirt(db).remotes.add("folder", f"file://{repo}")
        await until(pilot, lambda: app.query_one("#remotes").row_count == 1, 10, "the new remote")
        app.query_one("#images").focus()
        await pilot.press("p")
        await fill_form(pilot, remote="folder", tag="pushed")
        try:
            await until(pilot, lambda: (repo / "tags" / "pushed").exists(), 20, "the push")
        except AssertionError:
            print("\n".join(app.query_one("#events").lines), app.screen, [v.status_text for v in app.query(JobView)])
            raise
        miv(db, "untag", "base")
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "pruned" in "\n".join(app.query_one("#events").lines), 10, "prune")
        assert not [p for p in (db / "images").iterdir() if len(p.name) == 64]


async def test_changes_from_another_terminal_show_up(db: Path) -> None:
    app = make_app(db, probe_accel=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None, 10, "the first look at the database")
        miv(db, "load", "fromcli", input=image_tar(1))
        started = time.monotonic()
        await until(pilot, lambda: app.query_one("#images").row_count == 1, 5, "the new image")
        assert time.monotonic() - started < 2.5


@pytest.mark.vm
async def test_vm_lifecycle_and_console(tiny_db: Path, tmp_path: Path) -> None:
    app = make_app(tiny_db, probe_accel=False)
    vms = Minivirt(tiny_db).vms
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.query_one("#images").row_count == 1, what="the tiny image")
        await pilot.press("c")
        await fill_form(pilot, name="web", memory="200", cpus="1", ports="")
        await until(pilot, lambda: app.query_one("#vms").row_count == 1, 10, "the VM")
        app.query_one("#vms").focus()
        await pilot.press("s")
        # The start has finished (its run.json names the SSH port) once it says so.
        await until(pilot, lambda: "started web" in "\n".join(app.query_one("#events").lines), 60, "the start")
        port = await vms.wait_for_ssh("web", 60)
        assert port
        # Attach the console and type into it.
        await pilot.press("a")
        await until(pilot, lambda: bool(app.query(SerialTerminal)), 5, "the console tab")
        term = app.query_one(SerialTerminal)
        await until(pilot, lambda: term.attached, 10, "the console connection")
        await pilot.press("enter")
        await until(pilot, lambda: "login:" in term.text(), 30, "the login prompt")
        for key in "root":
            await pilot.press(key)
        await pilot.press("enter")
        await until(pilot, lambda: "# " in term.text().splitlines()[-1] or "#" in term.text(), 20, "a prompt")
        for key in "uname -a":
            await pilot.press(key if key != " " else "space")
        await pilot.press("enter")
        await until(pilot, lambda: "Linux tiny" in term.text(), 20, "uname's output")
        # The leave key gives focus back to the dashboard.
        await pilot.press("ctrl+right_square_bracket")
        assert app.focused is app.query_one("#vms")
        # Stop (ACPI), commit, copy, kill, destroy.
        await pilot.press("S")
        await until(pilot, lambda: not running(tiny_db, "web"), 60, "the VM to stop")
        await pilot.press("C")
        await fill_form(pilot, tag="committed")
        await until(pilot, lambda: (tiny_db / "images" / "committed").is_symlink(), 60, "the commit")
        app.query_one("#vms").focus()
        await pilot.press("s")
        await until(pilot, lambda: "\n".join(app.query_one("#events").lines).count("started web") == 2, 60,
                    "the second start")
        await vms.wait_for_ssh("web", 60)
        (tmp_path / "up.txt").write_text("hello guest\n")
        await pilot.press("y")
        await fill_form(pilot, direction="host -> VM", src=str(tmp_path / "up.txt"), dest="/root/up.txt")
        from minivirt_core import ssh

        async def guest_file() -> str:
            conn = await vms.ssh_connect("web", 60)
            try:
                return (await ssh.capture(conn, "cat /root/up.txt"))[1]
            finally:
                conn.close()

        await until(pilot, lambda: "copied" in "\n".join(app.query_one("#events").lines), 30, "the copy")
        assert await guest_file() == "hello guest\n"
        await pilot.press("k")
        await until(pilot, lambda: not running(tiny_db, "web"), 20, "the kill")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: not (tiny_db / "vms" / "web").exists(), 20, "the destroy")


@pytest.mark.vm
async def test_run_image_console_and_quit_leaves_vms_running(tiny_db: Path) -> None:
    miv(tiny_db, "create", "tiny", "keeper", "-m", "200")
    miv(tiny_db, "start", "keeper", "--daemon")
    try:
        app = make_app(tiny_db, probe_accel=False)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.query_one("#images").row_count == 1, what="the image")
            await pilot.press("r")
            await until(pilot, lambda: bool(app.query(SerialTerminal)), 30, "the run console")
            term = app.query_one(SerialTerminal)
            name = term.vm_name
            assert name.startswith("run-") and running(tiny_db, name)
            from minivirt_core import defaults  # one set of defaults: `r` runs as `miv run` does

            assert Minivirt(tiny_db).vms.status(name).config.memory_mb == defaults.MEMORY_MB
            await until(pilot, lambda: "login:" in term.text(), 60, "the guest's login prompt")
            app.query_one("#images").focus()
            await pilot.press("w")  # closing the tab destroys the throw-away VM
            await until(pilot, lambda: not (tiny_db / "vms" / name).exists(), 30, "the run VM to go")
        assert running(tiny_db, "keeper")  # quitting left it running
    finally:
        miv(tiny_db, "destroy", "keeper")


@pytest.mark.vm
async def test_failed_start_is_reported_and_the_app_goes_on(tiny_db: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        miv(tiny_db, "create", "tiny", "clash", "--port", f"{port}:22")
        app = make_app(tiny_db, probe_accel=False)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.query_one("#vms").row_count == 1, what="the VM")
            app.query_one("#vms").focus()
            await pilot.press("s")
            await until(pilot, lambda: "already in use" in "\n".join(app.query_one("#events").lines), 20,
                        "the error")
            assert app.is_running and not running(tiny_db, "clash")
            await pilot.press("D")  # the app still works: doctor's report
            await until(pilot, lambda: isinstance(app.screen, ReportModal), 30, "the doctor report")
            await pilot.press("escape")
            await pilot.press("f")
            await until(pilot, lambda: isinstance(app.screen, ReportModal), 30, "the fsck report")


@pytest.mark.vm
async def test_build_from_the_dashboard(tiny_db: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("from: tiny\nmemory: 200\nsteps:\n  - uses: run\n    with:\n      steps:\n"
                      "        - run: echo built-here > /root/mark\n"
                      "tests:\n  - run: cat /root/mark\n    expect: built-here\n")
    app = make_app(tiny_db, probe_accel=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await fill_form(pilot, recipe=str(recipe), tags="from-tui")
        await until(pilot, lambda: bool(app.query(JobView)), 5, "the build tab")
        view = app.query_one(JobView)
        await until(pilot, lambda: view.finished, 240, "the build")
        assert (tiny_db / "images" / "from-tui").is_symlink(), view.status_text
        assert "built" in view.status_text
        # Regression: the bar stayed at the last step's share (25%) with an ETA of --:--:--.
        from textual.widgets import ProgressBar, TabbedContent

        bar = view.query_one(ProgressBar)
        assert bar.percentage == 1.0 and not bar.query("#eta")
        tabs = app.query_one("#output", TabbedContent)
        assert str(tabs.get_tab(tabs.active).label) == "build r.yaml · done"


@pytest.mark.vm
@pytest.mark.s3
async def test_remotes_add_pull_remove(db: Path, tiny_db: Path, s3, monkeypatch: pytest.MonkeyPatch) -> None:
    # Publish the tiny image on SeaweedFS, then pull it from the dashboard into a fresh database.
    miv(tiny_db, "remote", "add", "sw", s3.url())
    miv(tiny_db, "push", "sw", "tiny", "tiny-dash", env=s3.env)
    fresh = tiny_db.parent / "fresh"
    app = make_app(fresh, probe_accel=False)
    progress_threads: set[int] = set()
    set_progress = JobView.set_progress

    def recording(view: JobView, done: float, total: float | None) -> None:
        progress_threads.add(threading.get_ident())
        set_progress(view, done, total)

    monkeypatch.setattr(JobView, "set_progress", recording)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#remotes").focus()
        await pilot.press("a")
        await fill_form(pilot, name="sw", url=s3.url())
        await until(pilot, lambda: app.query_one("#remotes").row_count == 1, 10, "the remote")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, FormModal), 20, "the pull form")
        select = app.screen.query_one("#field-tag")
        assert "tiny-dash" in [str(v) for _, v in select._options]  # chosen from `remote ls`
        await fill_form(pilot, tag="tiny-dash", local="pulled")
        await until(pilot, lambda: (fresh / "images" / "pulled").is_symlink(), 60, "the pull")
        # Regression: the pull's progress updated widgets from the download thread.
        assert progress_threads == {threading.get_ident()}
        app.query_one("#remotes").focus()
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: app.query_one("#remotes").row_count == 0, 10, "the removal")


async def test_job_output_drops_terminal_control_sequences(db: Path) -> None:
    """Regression: raw console bytes (ESC[6n, colours) reached the build log."""
    app = make_app(db, probe_accel=False)
    async with app.run_test(size=SIZE) as pilot:
        async def fake(view: JobView) -> str:
            view.write("\x1b[2J\x1b[Htiny login: \x1b[6n\r\n\x1b[1;32mgreen\x1b[0m\x07 done\r\n")
            return "ok"

        view = app.job("demo", fake)
        await until(pilot, lambda: view.finished, 10, "the job")
        await until(pilot, lambda: len(view.query_one("Log").lines) >= 2, 10, "the job's output")
        lines = view.query_one("Log").lines
        assert lines[:2] == ["tiny login: ", "green done"]
        assert not any("\x1b" in line or "\x07" in line for line in lines)


@pytest.mark.vm
async def test_cancelling_a_build_job(tiny_db: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "slow.yaml"
    recipe.write_text("from: tiny\nmemory: 200\nsteps:\n  - uses: run\n    with:\n      steps:\n"
                      "        - run: sleep 600\n")
    app = make_app(tiny_db, probe_accel=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await fill_form(pilot, recipe=str(recipe), tags="never")
        await until(pilot, lambda: bool(app.query(JobView)), 5, "the build tab")
        view = app.query_one(JobView)
        await until(pilot, lambda: any(n.startswith("build-") and running(tiny_db, n)
                                       for n in os.listdir(tiny_db / "vms")), 60, "the build VM")
        # Regression: ctrl+x worked only once the output area had the focus (after `4`); it
        # works whenever the job's tab is shown, here with the Images pane focused.
        assert app.focused is app.query_one("#images")
        await pilot.press("ctrl+x")
        await until(pilot, lambda: view.finished, 60, "the cancellation")
        assert view.status_text == "cancelled"
        await until(pilot, lambda: os.listdir(tiny_db / "vms") == [], 30, "the build VM to go")
        assert not (tiny_db / "images" / "never").exists()
        assert os.listdir(tiny_db / "staging") == []


async def test_table_columns_fit_their_cells_at_once(db: Path) -> None:
    """Regression: in a real terminal, columns sometimes stayed as narrow as their labels
    ("imag" for a tag) because DataTable measured new rows later, on idle. Columns are
    now sized when the rows are set, and narrow again when the content does."""
    app = make_app(db, probe_accel=False)
    async with app.run_test(size=(200, 50)):
        table = app.query_one("#remotes")
        table.set_rows([Row("a", ("a-long-remote-name", "s3", "https://example.invalid/bucket"), ("", "", ""))])
        assert [c.content_width for c in table.ordered_columns] == [18, 4, 30]
        table.set_rows([Row("b", ("b", "file", "file:///x"), ("", "", ""))])
        assert [c.content_width for c in table.ordered_columns] == [4, 4, 9]


async def test_prune_waits_for_the_lock_without_freezing_the_dashboard(db: Path) -> None:
    """Regression: the dashboard pruned on its event loop: a lock held elsewhere (another miv,
    a commit on a worker thread) froze it, and with the old per-object lock a prune walked in
    beside the holder."""
    miv(db, "load", "junk", input=image_tar(2))
    miv(db, "untag", "junk")
    app = make_app(db, probe_accel=False)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with app.miv.db.lock():
            holding.set()
            release.wait(30)

    def images() -> list[str]:
        return [p.name for p in (db / "images").iterdir() if len(p.name) == 64]

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.query_one("#images").row_count == 1, 10, "the image")
        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait()
        try:
            await pilot.press("P")  # the prune's look at what it would remove waits for the lock
            started = time.monotonic()
            await pilot.press("2")  # the dashboard still answers while the prune waits
            await until(pilot, lambda: app.focused is app.query_one("#vms"), 5, "the VMs pane")
            assert time.monotonic() - started < 5
            assert len(images()) == 1 and not isinstance(app.screen, ConfirmModal)
        finally:
            release.set()
        holder.join()
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), 10, "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "pruned 1 image" in "\n".join(app.query_one("#events").lines), 20, "the prune")
        assert images() == []


# Issue 10: glitches and habits, on the fixed demo database -------------------------------


def demo_app(home: Path, cls: type[MivApp] = MivApp) -> MivApp:
    from . import demo_db

    return cls(demo_db.build(home), refresh_interval=0.5, probe_accel=False, cursor_blink=False)


def footer(app: MivApp) -> str:
    return str(app.query_one("#keys").render())


def palette_entries(app: MivApp) -> list[str]:
    from textual.command import CommandList

    options = app.screen.query_one(CommandList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def test_palette_lists_every_action_once_with_its_key(tmp_path: Path) -> None:
    """Regression: with an empty query the palette listed only Textual's own commands, and
    `st` listed every action twice (its help text equal to its title)."""
    from minivirt_tui.dashboard import actions

    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: len(palette_entries(app)) > 10, 10, "the palette's entries")
        entries = palette_entries(app)
        for a in actions.ACTIONS:
            if a.pane == "console" or a.name == "command_palette":
                continue
            mine = [e for e in entries if e.startswith(a.help)]
            assert len(mine) == 1, (a.name, mine)
            assert f"{a.shown_key}  ·" in mine[0], mine[0]
        for key in "st":
            await pilot.press(key)
        await pilot.pause(0.5)
        shown = [e.splitlines()[0] for e in palette_entries(app)]
        assert shown and len(shown) == len(set(shown))
        assert "Start the selected VM" in shown


async def test_a_new_action_is_one_entry_plus_its_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The design's test: declare an action and write its function; nothing else. Its key
    works in its pane and it shows in the footer, the palette and the help overlay."""
    from minivirt_tui.dashboard import actions
    from minivirt_tui.dashboard.keys import HelpScreen

    said: list[str] = []

    class WithHello(MivApp):
        def action_hello(self) -> None:
            said.append(self.selected("images", "image") or "")

    monkeypatch.setattr(actions, "ACTIONS", [*actions.ACTIONS,
                                             actions.Action("hello", "z", "images", "Hello", "Say hello")])
    app = demo_app(tmp_path, WithHello)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: app.query_one("#images").row_count == 3, 10, "the images")
        assert "z Hello" in footer(app)
        await pilot.press("z")
        assert said and len(said[0]) == 64
        app.query_one("#vms").focus()
        await pilot.pause()
        assert "Hello" not in footer(app)  # an Images pane action
        await pilot.press("z")
        assert len(said) == 1
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help overlay")
        assert "z  Say hello" in str(app.screen.query_one("#help-body").render())
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: any("Say hello" in e for e in palette_entries(app)), 10, "the palette entry")


def test_every_binding_of_the_dashboard_is_declared_and_in_the_help() -> None:
    """`?` lists every key: the widgets' bindings beyond Textual's own are exactly the
    declared actions', and the help text shows each with its sentence."""
    from textual.app import App
    from textual.widget import Widget
    from textual.widgets import DataTable

    from minivirt_tui.dashboard import actions
    from minivirt_tui.dashboard.keys import help_text
    from minivirt_tui.dashboard.tables import ImagesTable, RemotesTable, VmsTable

    text = help_text()
    declared = {(a.key, a.binding().action) for a in actions.ACTIONS}
    widgets = [(MivApp(probe_accel=False), App), (ImagesTable(), DataTable), (VmsTable(), DataTable),
               (RemotesTable(), DataTable), (SerialTerminal("x", Path("/nonexistent")), Widget)]
    for widget, base in widgets:
        inherited = {(k, b.action) for k, b in base._merged_bindings or ()} if base._merged_bindings else set()
        ours = {(b.key, b.action) for _, b in widget._bindings if (b.key, b.action) not in inherited}
        ours |= {(k, b.action) for k, b in widget._bindings if (k, b.action) not in inherited}
        assert ours, widget
        for key, action in ours:
            assert any(action == a and key in k.split(",") for k, a in declared), (widget, key, action)
    for a in actions.ACTIONS:
        assert f"{a.shown_key:>7}  {a.help}" in text, a


async def test_filter_narrows_rows_and_escape_restores_them(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        images = app.query_one("#images")
        await until(pilot, lambda: images.row_count == 3, 10, "the images")
        await pilot.press("slash")
        for key in "alp":
            await pilot.press(key)
        await until(pilot, lambda: images.row_count == 1, 5, "the filtered rows")
        assert "alpine" in images.get_row_at(0)[1]
        assert app.query_one("#images-pane").border_title == "Images [1] /alp (1 of 3)"
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused is images and images.row_count == 1
        await pilot.press("escape")
        assert images.row_count == 3 and app.query_one("#images-pane").border_title == "Images [1]"
        # VMs by state and image; a refresh keeps the filter.
        app.query_one("#vms").focus()
        await pilot.press("slash")
        for key in "tiny":
            await pilot.press(key)
        vms = app.query_one("#vms")
        await until(pilot, lambda: vms.row_count == 1, 5, "the VMs made from tiny")
        await pilot.pause(1.2)  # two refreshes of the state
        assert vms.row_count == 1 and vms.get_row_at(0)[0] == "web"
        await pilot.press("escape")
        assert vms.row_count == 2 and app.focused is vms


async def test_sort_key_and_header_click_sort_by_column(tmp_path: Path) -> None:
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        images = app.query_one("#images")
        await until(pilot, lambda: images.row_count == 3, 10, "the images")

        def column(i: int) -> list[str]:
            return [str(images.get_row_at(r)[i]) for r in range(images.row_count)]

        def labels() -> list[str]:
            return [str(c.label) for c in images.ordered_columns]

        await pilot.press("o")  # IMAGE ID
        assert labels()[0] == "IMAGE ID ▲" and column(0) == sorted(column(0))
        await pilot.press("o")  # TAGS
        assert labels()[1] == "TAGS ▲" and column(1) == ["alpine-3.22", "tiny", "ubuntu-24.04"]
        await pilot.press("o", "o")  # ARCH, then SIZE: smallest first
        assert labels()[3] == "SIZE ▲" and column(1) == ["tiny", "alpine-3.22", "ubuntu-24.04"]
        # A click on the TAGS header sorts by tags; a second click reverses.
        x = sum(c.get_render_width(images) for c in images.ordered_columns[:1]) + 2
        await pilot.click("#images", offset=(x, 0))
        assert labels()[1] == "TAGS ▲" and column(1) == ["alpine-3.22", "tiny", "ubuntu-24.04"]
        await pilot.click("#images", offset=(x, 0))
        assert labels()[1] == "TAGS ▼" and column(1) == ["ubuntu-24.04", "tiny", "alpine-3.22"]


async def test_finished_jobs_show_a_finished_bar_and_their_outcome(tmp_path: Path) -> None:
    """Regression: after a build the bar stayed at 25% with an ETA of --:--:--; a pull of an
    image already there kept an indeterminate bar animating (a progress report queued from
    the download thread arrived after the end). The tab title says done/failed/cancelled."""
    import asyncio

    from textual.widgets import ProgressBar, TabbedContent

    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        async def build(view: JobView) -> str:
            view.set_progress(1, 4)
            return "built"

        async def pull(view: JobView) -> str:
            report = app.threadsafe(lambda: view.set_progress(0, None))
            await asyncio.to_thread(report)  # from another thread: queued, runs after the end
            return "already had it"

        async def fail(view: JobView) -> str:
            from minivirt_core.errors import InvalidInput

            raise InvalidInput("boom")

        async def forever(view: JobView) -> str:
            await asyncio.Event().wait()
            return ""

        views = [app.job(t, f) for t, f in (("build x", build), ("pull y", pull), ("broken z", fail),
                                              ("endless w", forever))]
        await until(pilot, lambda: all(v.finished for v in views[:3]) and views[3].is_mounted, 10, "the jobs")
        await pilot.press("ctrl+x")  # the endless one's tab is shown
        await until(pilot, lambda: views[3].finished, 10, "the cancellation")
        await pilot.pause(0.3)
        tabs = app.query_one("#output", TabbedContent)
        labels = {str(tabs.get_tab(p.id).label) for p in tabs.query("TabPane") if p.id != "tab-events"}
        assert labels == {"build x · done", "pull y · done", "broken z · failed", "endless w · cancelled"}
        for view in views:
            bar = view.query_one(ProgressBar)
            assert bar.total is not None and not bar.query("#eta"), view.title
        assert [v.query_one(ProgressBar).percentage for v in views[:2]] == [1.0, 1.0]


async def test_enter_submits_from_a_dropdown_and_errors_stay_in_the_form(tmp_path: Path) -> None:
    """Regression: where the first field was a dropdown (untag, push, pull, copy) Enter
    opened it instead of submitting; an invalid port closed Create and lost what was typed."""
    app = demo_app(tmp_path)
    db = app.miv.db.root
    async with app.run_test(size=SIZE) as pilot:
        images = app.query_one("#images")
        await until(pilot, lambda: images.row_count == 3, 10, "the images")
        (db / "images" / "extra").symlink_to(os.readlink(db / "images" / "tiny"))
        images.move_cursor(row=[str(images.get_row_at(r)[1]) for r in range(3)].index("tiny"))
        await until(pilot, lambda: "extra" in str(images.get_row_at(images.cursor_row)[1]), 10, "the new tag")
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, FormModal), 5, "the untag form")
        assert type(app.focused).__name__ == "Select"
        await pilot.press("enter")
        await until(pilot, lambda: not (db / "images" / "extra").exists(), 10, "the untag")
        await until(pilot, lambda: str(images.get_row_at(images.cursor_row)[1]) == "tiny", 10, "the row without it")
        # Create proposes a free name; a bad port shows in the form, which keeps the values.
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, FormModal), 5, "the create form")
        form = app.screen
        assert form.query_one("#field-name").value == "tiny-1"
        form.query_one("#field-memory").value = "300"
        form.query_one("#field-ports").value = "abc"
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.screen is form
        assert "Port forwards" in str(form.query_one("#form-error").render())
        assert form.query_one("#field-memory").value == "300" and form.query_one("#field-ports").value == "abc"
        form.query_one("#field-ports").value = "8081:80"
        await pilot.press("enter")
        await until(pilot, lambda: (db / "vms" / "tiny-1").is_dir(), 10, "the VM")


async def test_image_dialogs_name_the_image_as_selected_not_by_its_first_tag(tmp_path: Path) -> None:
    """Regression (issue 10, glitch 11): with tags `mytiny` and `tiny` on one image, the
    dialogs said `Push image mytiny` when the user had typed `tiny`, and a VM created in
    the dashboard remembered the image's id instead of the reference it was made from."""
    app = demo_app(tmp_path)
    db = app.miv.db.root
    (db / "images" / "mytiny").symlink_to(os.readlink(db / "images" / "tiny"))
    async with app.run_test(size=SIZE) as pilot:
        images = app.query_one("#images")
        await until(pilot, lambda: images.row_count == 3, 10, "the images")
        await pilot.press("slash", *"tiny", "enter")
        await until(pilot, lambda: images.row_count == 1, 5, "the filter")
        for key, title in (("p", "Push image tiny"), ("s", "Save image tiny as a tar file"),
                           ("u", "Untag image tiny"), ("t", "Tag image tiny"), ("c", "Create a VM from tiny")):
            await pilot.press(key)
            await until(pilot, lambda: isinstance(app.screen, FormModal), 5, f"the form of {key}")
            assert app.screen.title_text == title
            assert "mytiny" not in app.screen.title_text
            if key == "p":
                assert app.screen.query_one("#field-tag").value == "tiny"
            if key == "s":
                assert app.screen.query_one("#field-path").value == "tiny.tar"
            if key == "u":
                assert app.screen.query_one("#field-tag").value == "tiny"
            if key != "c":
                await pilot.press("escape")
        await pilot.press("enter")  # create tiny-1
        await until(pilot, lambda: (db / "vms" / "tiny-1").is_dir(), 10, "the VM")
        assert Minivirt(db).vms.status("tiny-1").config.image_ref == "tiny"
        await until(pilot, lambda: "created VM tiny-1 from tiny" in "\n".join(app.query_one("#events").lines), 5,
                    "the event")
        # No filter: the row shows both tags, so the title does too, and Create asks which one.
        await pilot.press("escape")
        await until(pilot, lambda: images.row_count == 3, 5, "the filter cleared")
        images.move_cursor(row=[str(images.get_row_at(r)[1]) for r in range(3)].index("mytiny tiny"))
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, FormModal), 5, "the create form")
        form = app.screen
        assert form.title_text.startswith("Create a VM from ") and form.title_text.endswith("(mytiny tiny)")
        form.query_one("#field-reference").value = "mytiny"
        form.query_one("#field-name").value = "web2"
        await pilot.press("enter")
        await until(pilot, lambda: (db / "vms" / "web2").is_dir(), 10, "the second VM")
        assert Minivirt(db).vms.status("web2").config.image_ref == "mytiny"


@pytest.mark.skipif(not shutil.which("docker-registry"), reason="docker-registry is installed by scripts/setup")
async def test_the_pull_form_chooses_the_architecture_of_a_multi_architecture_tag(tmp_path: Path) -> None:
    """Regression (walkthrough): the dashboard's pull had no architecture choice, so from a tag
    holding an index of two architectures only the host's could be had (`miv pull --arch` could)."""
    from minivirt_core.hostinfo import host_arch

    from .registry import Registry

    registry = Registry(tmp_path / "registry").start()
    try:
        source, fresh = tmp_path / "source", tmp_path / "fresh"
        ids = {}
        for n, arch in enumerate(("aarch64", "x86_64"), 1):
            files = image_files(n)
            files["config.json"] = json.dumps({"disk": True, "arch": arch}).encode()
            miv(source, "load", arch, input=simple_tar(files))
            ids[arch] = image_id_of(files)
        url = f"oci://{registry.host}/minivirt"
        miv(source, "remote", "add", "reg", url, "--insecure")
        for arch in ids:
            miv(source, "push", "reg", arch, "multi:v1")
        miv(fresh, "remote", "add", "reg", url, "--insecure")
        app = make_app(fresh, probe_accel=False)
        async with app.run_test(size=SIZE) as pilot:
            remotes = app.query_one("#remotes")
            await until(pilot, lambda: remotes.row_count == 1, 10, "the remote")
            remotes.focus()
            await pilot.press("l")
            await until(pilot, lambda: isinstance(app.screen, FormModal), 20, "the pull form")
            assert app.screen.query_one("#field-arch").value == host_arch()  # the default, as the CLI's
            await fill_form(pilot, tag="multi:v1", local="other-{arch}", arch="aarch64")
            await until(pilot, lambda: (fresh / "images" / "other-aarch64").is_symlink(), 60, "the pull")
        assert os.readlink(fresh / "images" / "other-aarch64") == ids["aarch64"]
    finally:
        registry.stop()


async def test_output_tabs_switch_from_anywhere_and_the_console_footer_shows_its_keys(tmp_path: Path) -> None:
    """Regression: no documented key switched output tabs (`4` focused a console that took
    every key), and in a console the footer listed `b f D w q`, which went to the VM."""
    from textual.widgets import TabbedContent

    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one("#output", TabbedContent)
        await until(pilot, lambda: app.query_one("#vms").row_count == 2, 10, "the VMs")
        term = await app.open_console("web", show_log=False)  # a stopped VM: the tab waits for it
        # (the tab's activation and the focus are messages: let them all land before a key)
        await until(pilot, lambda: tabs.active == "tab-console-web" and app.focused is term, 10, "the console")
        await pilot.pause(0.2)
        keys = footer(app)
        assert "^] Leave console" in keys and "M-←/M-→ Tabs" in keys
        for word in ("Build", "Quit", "Filter", "Start"):
            assert word not in keys, (word, keys)
        await pilot.press("alt+left")  # from inside the console
        await until(pilot, lambda: tabs.active == "tab-events" and app.focused is not term, 5, "the events tab")
        await pilot.press("alt+right")
        await until(pilot, lambda: tabs.active == "tab-console-web", 5, "the console tab again")
        app.query_one("#images").focus()
        await pilot.pause()
        await pilot.press("alt+right")  # from a pane, too; it wraps around
        await until(pilot, lambda: tabs.active == "tab-events", 5, "the events tab, wrapped around")
        assert "M-←/M-→ Tabs" in footer(app)


async def test_a_stopped_vm_console_or_ssh_says_so_and_opens_nothing(tmp_path: Path) -> None:
    """Regression: `a` on a stopped VM opened a blank tab and logged "console … attached";
    `h` flashed an error and logged "SSH session … ended"."""
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        vms = app.query_one("#vms")
        await until(pilot, lambda: vms.row_count == 2, 10, "the VMs")
        vms.focus()
        for key in ("a", "h"):
            await pilot.press(key)
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the question")
            assert "is not running. Start it" in app.screen.question
            await pilot.press("n")
            await pilot.pause(0.2)
        events = "\n".join(app.query_one("#events").lines)
        assert not app.query(SerialTerminal)
        assert "console of" not in events and "ended" not in events
        assert "attach its console: VM " in events and "open an SSH session: VM " in events


async def test_small_terminals(tmp_path: Path) -> None:
    """Regression: at 80x24 the Images pane showed one row and a horizontal scrollbar, the
    URL was cut with no …, the footer lost `q Quit`; at 60x18 no rows showed."""
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.query_one("#images").row_count == 3, 10, "the images")
        await pilot.pause(0.2)
        for table in app.query("DataTable"):
            assert table.size.height - 1 >= 3, table.id  # the header, then at least 3 rows
            assert table.virtual_size.width <= table.size.width, table.id  # no horizontal scrollbar
        assert "q Quit" in footer(app) and "M-←/M-→ Tabs" in footer(app)
        urls = [str(app.query_one("#remotes").get_row_at(r)[-1]) for r in range(2)]
        assert any(u.endswith("…") for u in urls), urls
        assert "needs at least" not in str(app.query_one("#too-small").render())
        await pilot.resize_terminal(60, 18)
        await pilot.pause(0.2)
        message = app.query_one("#too-small")
        assert message.display and message.region.height > 0
        assert "minivirt needs at least 80x24" in str(message.render())
        assert app.query_one("#images").region.height == 0


async def test_a_form_taller_than_an_80x24_terminal_scrolls_to_its_buttons(tmp_path: Path) -> None:
    """Regression (walkthrough): at 80x24 the pull form (tag, local tag, architecture) was cut
    below its last field: its Pull and Cancel buttons could not be seen or clicked."""
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        remotes = app.query_one("#remotes")
        await until(pilot, lambda: remotes.row_count == 2, 10, "the remotes")
        remotes.focus()
        await pilot.press("down", "l")  # the folder remote: free-text tag, local tag, architecture
        await until(pilot, lambda: isinstance(app.screen, FormModal), 10, "the pull form")
        form = app.screen
        for button in ("#cancel", "#submit"):
            form.query_one(button).focus()
            await pilot.pause(0.2)
            region = form.query_one(button).region
            assert region.height > 0 and region.y >= 0 and region.bottom <= 24, (button, region)
        await pilot.click("#cancel")
        await until(pilot, lambda: app.screen is not form, 5, "the form to close")


async def test_quitting_with_a_running_job_asks(tmp_path: Path) -> None:
    """Regression: `q` during a build quit at once and cancelled it."""
    import asyncio

    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        async def endless(view: JobView) -> str:
            await asyncio.Event().wait()
            return ""

        app.job("build slow.yaml", endless)
        await pilot.pause(0.2)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the question")
        assert "build slow.yaml" in app.screen.details
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.is_running and not app.query_one(JobView).finished
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the question")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, 5, "the app to quit")


async def test_prune_confirmation_lists_what_goes_and_the_space_freed(db: Path) -> None:
    from minivirt_core.fsutil import human_size

    miv(db, "load", "keep", input=image_tar(1))
    miv(db, "load", "junk", input=image_tar(2))
    junk = os.readlink(db / "images" / "junk")
    miv(db, "untag", "junk")
    app = make_app(db, probe_accel=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.query_one("#images").row_count == 2, 10, "the images")
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), 10, "the confirmation")
        plan = Minivirt(db).images.prune(dry_run=True)
        assert f"frees {human_size(plan.freed)}" in app.screen.question
        assert f"image {junk[:12]}" in app.screen.details
        assert os.readlink(db / "images" / "keep")[:12] not in app.screen.details
        await pilot.press("n")
        assert (db / "images" / junk).is_dir()


async def test_footer_and_events_wording(tmp_path: Path) -> None:
    """Regression: the footer showed `^ppalette` (no space)."""
    app = demo_app(tmp_path)
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.pause(0.2)
        assert "^p Palette" in footer(app) and "^ppalette" not in footer(app)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.vm
async def test_console_attach_keeps_the_whole_serial_log_and_inspect_shows_pid_and_ports(tiny_db: Path) -> None:
    """Regression: on a fresh VM `a` showed a blank tab though serial.log held `tiny
    login:`; re-attaching after a login lost the login line, the password echo and the
    motd, and with a longer log rows in the middle were missing from the scrollback (the
    log's tail was laid out at 80x24, then pyte's resize dropped the top rows). Now the
    pane's scrollback + screen is the serial log, line for line. Also: one event per
    attach, and `i` shows the VM's real QEMU pid and ports."""
    from minivirt_core.console import strip_queries
    from minivirt_tui.dashboard.output import plain_text

    port = _free_port()
    miv(tiny_db, "create", "tiny", "logged", "-m", "200", "--port", f"{port}:80")
    log = tiny_db / "vms" / "logged" / "serial.log"
    try:
        miv(tiny_db, "start", "logged", "--daemon")
        wait_until(lambda: log.exists() and b"login:" in log.read_bytes(), 120, "the login prompt in serial.log")
        app = make_app(tiny_db, probe_accel=False)
        async with app.run_test(size=SIZE) as pilot:
            vms = app.query_one("#vms")
            await until(pilot, lambda: vms.row_count == 1, 10, "the VM")
            vms.focus()
            await pilot.press("a")
            await until(pilot, lambda: bool(app.query(SerialTerminal)), 10, "the console tab")
            term = app.query_one(SerialTerminal)
            await until(pilot, lambda: term.attached, 20, "the console connection")
            assert "tiny login:" in term.text()  # a fresh VM: the prompt is there at once
            term.send(b"root\r")
            await until(pilot, lambda: "#" in term.text(), 30, "the shell prompt")
            term.send(b"seq 1 80; echo seq-$((40+2))\r")
            await until(pilot, lambda: "seq-42" in term.text(), 30, "seq's output")
            await pilot.press("ctrl+right_square_bracket")
            await pilot.press("w")  # close the console tab, then attach again
            await until(pilot, lambda: not app.query(SerialTerminal), 10, "the tab to close")
            await pilot.press("a")
            await until(pilot, lambda: bool(app.query(SerialTerminal)), 10, "the console tab again")
            term = app.query_one(SerialTerminal)
            await until(pilot, lambda: term.attached, 20, "the console connection again")
            await pilot.pause(0.5)

            def lines(text: list[str]) -> list[str]:
                return [line.rstrip() for line in text if line.strip()]

            expected = lines(plain_text(strip_queries(log.read_bytes()).decode(errors="replace")).split("\n"))
            shown = lines(term.history_text() + term.text().splitlines())
            assert shown == expected
            assert "seq-42" in term.text() and "80" in term.history_text() + term.text().splitlines()
            events = [e for e in app.query_one("#events").lines if "console of logged" in e]
            assert len(events) == 2 and all("attached (Ctrl-]" in e for e in events), events  # one per attach
            # The inspect view: the real QEMU pid and the ports.
            await pilot.press("ctrl+right_square_bracket")
            await pilot.press("i")
            await until(pilot, lambda: isinstance(app.screen, ReportModal), 20, "the inspect view")
            body = str(app.screen.query_one(".report-body Static").render())
            status = Minivirt(tiny_db).vms.status("logged")
            assert status.pid and f"pid: {status.pid}" in body
            assert f"ssh_port: {status.ssh_port}" in body and f"host_port: {port}" in body
            assert "qemu-system" in body  # its command line
    finally:
        miv(tiny_db, "destroy", "logged", rc=None)


async def test_tables_fast_fill_equals_add_rows(tmp_path: Path) -> None:
    """The tables fill themselves without DataTable.add_rows (10x faster for 1000 rows, for
    `/`): the result must be the same table, cursor and rendering included."""
    from textual.widgets import DataTable

    rows = [(f"{i:012x}", f"tag-{i}", "x86_64", f"{i}K", f"{i} hours ago", "-") for i in range(300)]
    app = demo_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        ours = app.query_one("#images")
        reference = DataTable()
        await app.screen.mount(reference)
        await pilot.pause(0.2)
        ours.clear()
        ours._add_all(rows)
        reference.add_columns(*[str(c.label) for c in ours.ordered_columns])
        reference.add_rows(rows)
        await pilot.pause(0.2)
        assert ours.row_count == reference.row_count == 300
        assert [ours.get_row_at(i) for i in range(300)] == [reference.get_row_at(i) for i in range(300)]
        assert [r.height for r in ours.rows.values()] == [r.height for r in reference.rows.values()]
        assert ours.virtual_size.height == reference.virtual_size.height
        ours.move_cursor(row=299)
        assert ours.cursor_row == 299


def test_the_tiny_builder_names_what_it_made(tmp_path: Path) -> None:
    """Regression: the tiny builder's last line (shown in the dashboard's build tab) read
    `24M in assembled`: a word was missing. Runs the script's own last line."""
    import subprocess

    script = Path(__file__).parents[1] / "recipes" / "tiny" / "build-tiny.sh"
    last = next(line for line in reversed(script.read_text().splitlines()) if line.startswith("echo "))
    (tmp_path / "assembled").mkdir()
    (tmp_path / "assembled" / "disk.qcow2").write_bytes(b"x" * 100_000)
    out = subprocess.run(["bash", "-c", f"arch=x86_64; kver=6.1.0-56-cloud-amd64; out=assembled; {last}"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert re.fullmatch(r"build-tiny: x86_64, kernel 6\.1\.0-56-cloud-amd64, disk assembled/disk\.qcow2 "
                        r"\([0-9.]+K on disk\)\n", out), out


# Issue 13 in the dashboard: snapshots and port forwards of a VM -------------------------


@pytest.mark.vm
@pytest.mark.slow
async def test_snapshots_and_port_forwards_of_a_running_vm_from_the_dashboard(running_vm: Path) -> None:
    """n saves a live snapshot that the inspect view lists; p forwards a port that reaches a
    guest listener at once; x removes it; R restores the snapshot; X deletes it."""
    from minivirt_core.ports import free_port

    from .test_ports_vm import LISTEN
    from .test_ports_vm import _greeting as greeting

    db = running_vm
    app = make_app(db, probe_accel=False)

    def events() -> str:
        return "\n".join(app.query_one("#events").lines)

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.query_one("#vms").row_count == 1, 10, "the VM")
        app.query_one("#vms").focus()
        await pilot.press("n")
        await fill_form(pilot, snapshot="before")
        await until(pilot, lambda: "saved snapshot before of v (disk and memory)" in events(), 120, "the snapshot")
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, ReportModal), 20, "the inspect view")
        body = str(app.screen.body)
        assert "snapshots:" in body and "name: before" in body and "memory: yes" in body, body
        await pilot.press("escape")

        host = free_port()
        miv(db, "ssh", "v", LISTEN.format(port=80))
        await pilot.press("p")
        await fill_form(pilot, forward=f"{host}:80")
        await until(pilot, lambda: f"v: 127.0.0.1:{host} -> guest port 80, now and at every start" in events(),
                    30, "the forward")
        assert wait_until(lambda: greeting(host), 30, "the guest listener") == b"hello-from-guest\n"
        await pilot.press("x")
        await fill_form(pilot, forward=f"{host}:80")
        await until(pilot, lambda: f"no longer forwards 127.0.0.1:{host}" in events(), 30, "the removal")
        assert greeting(host) == b""

        miv(db, "ssh", "v", "echo after > /root/after")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, FormModal), 20, "the list of snapshots")
        await pilot.press("enter")
        await until(pilot, lambda: "restored v to snapshot before, running" in events(), 120, "the restore")
        assert miv(db, "ssh", "v", "ls /root/after 2>/dev/null || echo gone").stdout == b"gone\n"
        await pilot.press("X")
        await until(pilot, lambda: isinstance(app.screen, FormModal), 20, "the list of snapshots")
        await pilot.press("enter")
        await until(pilot, lambda: "removed snapshot before of v" in events(), 60, "the deletion")
        # A snapshot name QEMU's monitor would misread is refused in the form.
        await refused_in_form(pilot, "n", "invalid snapshot name", snapshot="x;quit")
    assert running(db, "v")


# Issue 12 in the dashboard: an OCI registry as a remote ---------------------------------


async def cancelled_with_the_registry_paused(pilot, registry, title: str, **values: str) -> JobView:
    """Submit the open form with the (real) registry paused by SIGSTOP, so that the transfer's
    thread waits on its socket; cancel the job with ctrl+x; then let the registry go on."""
    import signal

    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, FormModal), 20, "the form")
    registry._proc.send_signal(signal.SIGSTOP)
    try:
        await fill_form(pilot, **values)
        await until(pilot, lambda: any(v.title == title for v in app.query(JobView)), 10, "the job")
        (view,) = [v for v in app.query(JobView) if v.title == title]
        await until(pilot, lambda: app.shown_job() is view, 10, "its tab")
        await pilot.press("ctrl+x")
        await until(pilot, lambda: view.outcome == "cancelled", 20, "the cancellation")
    finally:
        registry._proc.send_signal(signal.SIGCONT)
    return view


@pytest.mark.skipif(not __import__("shutil").which("docker-registry"), reason="scripts/setup installs docker-registry")
async def test_oci_remote_add_push_list_pull_and_cancel_from_the_dashboard(
        db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a real local registry: add it (plain HTTP), push as a job, list its tags,
    pull back as a job with progress; a cancelled push stops uploading (the tag never
    appears), rather than finishing unseen after its tab said cancelled."""
    from .helpers import db_entries, image_files, image_id_of, simple_tar
    from .registry import Registry

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # never the user's
    files = image_files(0)
    image_id = image_id_of(files)
    miv(db, "load", "t", input=simple_tar(files))
    big = image_files(1)
    miv(db, "load", "big", input=simple_tar(big))
    registry = Registry(tmp_path / "registry").start()
    app = make_app(db, probe_accel=False)

    def events() -> str:
        return "\n".join(app.query_one("#events").lines)

    try:
        async with app.run_test(size=SIZE) as pilot:
            images = app.query_one("#images")
            await until(pilot, lambda: images.row_count == 2, 10, "the images")
            await pilot.press("3", "a")
            await fill_form(pilot, name="reg", url=f"oci://{registry.host}/minivirt", insecure="yes: plain HTTP")
            await until(pilot, lambda: app.query_one("#remotes").row_count == 1, 10, "the remote")
            assert "oci" in str(app.query_one("#remotes").get_row_at(0))

            images.focus()
            images.move_cursor(row=[str(images.get_row_at(r)[1]) for r in range(2)].index("t"))
            await pilot.press("p")
            await fill_form(pilot, remote="reg", tag="disk:v1")
            await until(pilot, lambda: "pushed t to reg as disk:v1" in events(), 60, "the push")
            await pilot.press("3", "i")
            await until(pilot, lambda: isinstance(app.screen, ReportModal), 20, "the tags")
            assert str(app.screen.body).split() == ["disk:v1"]
            await pilot.press("escape")

            miv(db, "untag", "t")
            miv(db, "prune", "-y")  # so that the pull downloads it again
            await pilot.press("l")
            await until(pilot, lambda: isinstance(app.screen, FormModal), 20, "the pull form")
            assert app.screen.query_one("#field-tag").value == "disk:v1"  # chosen from the registry's tags
            await fill_form(pilot, local="back")
            await until(pilot, lambda: f"pulled {image_id[:12]} from reg as back" in events(), 60, "the pull")
            (pull_view,) = [v for v in app.query(JobView) if v.title == "pull disk:v1"]
            assert pull_view.outcome == "done" and pull_view._progress and pull_view._progress[1]

            images.focus()
            await until(pilot, lambda: images.row_count == 2, 10, "the pulled image")
            images.move_cursor(row=[str(images.get_row_at(r)[1]) for r in range(2)].index("big"))
            await pilot.press("p")
            await cancelled_with_the_registry_paused(pilot, registry, "push cancelled", remote="reg",
                                                     tag="cancelled")
            await until(pilot, lambda: not running_in_some_thread("_push"), 60, "the upload thread to end")
        assert miv(db, "remote", "ls", "reg").stdout.decode().split() == ["disk:v1"]  # no "cancelled:latest"

        # A cancelled pull imports nothing and leaves no staging folder.
        miv(db, "push", "reg", "big", "big:v1")
        miv(db, "untag", "big")
        miv(db, "prune", "-y")
        app = make_app(db, probe_accel=False)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.query_one("#remotes").row_count == 1, 10, "the remote")
            await pilot.press("3", "l")
            await cancelled_with_the_registry_paused(pilot, registry, "pull big:v1", tag="big:v1", local="big-back")
            await until(pilot, lambda: not running_in_some_thread("_resolve"), 60, "the pull's thread to end")
        assert not (db / "images" / "big-back").exists() and not (db / "images" / image_id_of(big)).exists()
        assert db_entries(db)["staging"] == []
    finally:
        registry.stop()


# Issue 11 in the dashboard: the twin of `miv cache add` ---------------------------------


async def test_cache_file_puts_a_file_where_a_download_of_its_url_finds_it(db: Path, tmp_path: Path) -> None:
    """K: a file into the download cache under a URL (verified against a sha256); a wrong
    sha256 fails the job and caches nothing."""
    import asyncio
    import hashlib

    from minivirt_core.download import cache_key, fetch

    url = "https://cloud.example.invalid/images/disk.qcow2"  # its host does not even resolve
    src = tmp_path / "disk.qcow2"
    src.write_bytes(b"offline image\n" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    app = make_app(db, probe_accel=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("K")
        await fill_form(pilot, url=url, file=str(src), sha256="0" * 64)
        await until(pilot, lambda: any(v.outcome == "failed" for v in app.query(JobView)), 20, "the failure")
        assert "sha256 is" in "\n".join(app.query_one("#events").lines)
        assert [p.name for p in (db / "cache").iterdir()] == []
        await refused_in_form(pilot, "K", "is not a file", url=url, file=str(tmp_path / "missing"))
        await pilot.press("K")
        await fill_form(pilot, url=url, file=str(src), sha256=digest)
        await until(pilot, lambda: "cached " in "\n".join(app.query_one("#events").lines), 20, "the cached file")
    cached = db / "cache" / cache_key(url)
    assert cached.read_bytes() == src.read_bytes()
    assert await asyncio.wait_for(fetch(url, db / "cache", sha256=digest), 30) == cached


async def test_images_pane_shows_warm_states_like_miv_images(tmp_path: Path) -> None:
    """The Images pane's WARM column counts an image's warm states as `miv images` does,
    and follows a change of the warm folder at the next refresh."""
    from minivirt_core.warm import warm_dir

    app = demo_app(tmp_path)
    db = app.miv.db
    tiny = os.readlink(db.images_dir / "tiny")
    async with app.run_test(size=(160, 40)) as pilot:
        images = app.query_one("#images")
        await until(pilot, lambda: images.row_count == 3, 10, "the images")
        titles = [str(c.label) for c in images.ordered_columns]
        assert titles[-1] == "WARM"

        def warm_of(tag: str) -> str:
            rows = [images.get_row_at(r) for r in range(images.row_count)]
            return next(str(r[-1]) for r in rows if tag in str(r[1]))

        assert warm_of("tiny") == "-"
        for key in ("0123456789abcdef", "fedcba9876543210"):  # what a warm state's folder is called
            (warm_dir(db) / f"{tiny}-{key}").mkdir(parents=True)
        await until(pilot, lambda: warm_of("tiny") == "2", 10, "the warm count")
        assert warm_of("ubuntu") == "-"
    listed = miv(db.root, "images", "--json").stdout
    import json

    assert {i["tags"][0]: i["warm_states"] for i in json.loads(listed)}["tiny"] == 2


async def test_a_cancelled_save_stops_writing(db: Path, tmp_path: Path) -> None:
    """Regression: cancelling a save only stopped waiting for it; its thread wrote the whole
    archive anyway. Saved into a FIFO nobody reads yet, the save waits; once cancelled, the
    reader gets a cut archive, not the whole of it."""
    import asyncio

    from .helpers import image_files, qcow2_of, simple_tar

    files = image_files(0, disk=qcow2_of(os.urandom(16 << 20)))
    miv(db, "load", "big", input=simple_tar(files))
    full = tmp_path / "full.tar"
    miv(db, "save", "big", "-o", str(full))
    fifo = tmp_path / "out.tar"
    os.mkfifo(fifo)
    app = make_app(db, probe_accel=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.query_one("#images").row_count == 1, 10, "the image")
        await pilot.press("s")
        await fill_form(pilot, path=str(fifo))
        await until(pilot, lambda: any(v.title == "save out.tar" for v in app.query(JobView)), 10, "the job")
        (view,) = [v for v in app.query(JobView) if v.title == "save out.tar"]
        await until(pilot, lambda: app.shown_job() is view, 10, "its tab")
        await pilot.press("ctrl+x")
        await until(pilot, lambda: view.outcome == "cancelled", 20, "the cancellation")
        got = await asyncio.wait_for(asyncio.to_thread(fifo.read_bytes), 60)
    assert 0 < len(got) < full.stat().st_size, (len(got), full.stat().st_size)
