"""The dashboard through Textual's pilot, against real databases, VMs and servers."""

from __future__ import annotations

import os
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

from .helpers import image_tar, miv

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
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, FormModal), 10, "the form")
        app.screen.query_one("#field-tag").value = "bad/tag"
        await pilot.press("enter")
        await until(pilot, lambda: "may not contain '/'" in str(app.screen.query_one("#form-error").render()), 10,
                    "the error in the form")
        assert isinstance(app.screen, FormModal) and app.screen.query_one("#field-tag").value == "bad/tag"
        await pilot.press("escape")
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
        await until(pilot, lambda: running(tiny_db, "web"), 30, "QEMU")
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
        await until(pilot, lambda: running(tiny_db, "web"), 30, "QEMU again")
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
