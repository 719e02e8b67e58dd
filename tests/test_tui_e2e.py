"""`miv tui` in a real terminal (tmux): start a VM, attach its console, type, quit."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import MIV, miv, wait_until

PROMPT = re.compile(r"tiny:\S*#(?=\s|$)", re.MULTILINE)  # the tiny guest's root shell (console and SSH)


def prompt_shown(screen: str) -> bool:
    return PROMPT.search(screen) is not None

pytestmark = [pytest.mark.vm, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


class Tmux:
    """A terminal of 120x40 running bash, on a tmux server of this test's own (its socket
    in the test's folder: no other tmux user or test run is touched)."""

    def __init__(self, name: str, db: Path, size: tuple[int, int] = (120, 40)) -> None:
        self.name = name
        self.tmux = ["tmux", "-S", str(db.parent / "tmux.sock")]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]),
                        "-e", f"MINIVIRT_DB_PATH={db}", "-e", "TERM=xterm-256color", "-e", "PS1=$ ",
                        # COLUMNS/LINES (exported by whoever started the tmux server) would
                        # pin the size programs read: a resize must reach them.
                        "env", "-u", "COLUMNS", "-u", "LINES", "bash", "--norc", "--noprofile"], check=True)

    def keys(self, *keys: str, literal: bool = False) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *(["-l"] if literal else []), *keys], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True,
                              check=True).stdout

    def wait(self, text: str, timeout: float = 60) -> str:
        return self.wait_for(lambda screen: text in screen, timeout, repr(text))

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        """The screen, once ``predicate`` holds for it."""
        def check() -> str:
            screen = self.screen()
            return screen if predicate(screen) else ""

        try:
            return wait_until(check, timeout, what, 0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{self.screen()}") from None

    def resize(self, width: int, height: int) -> None:
        subprocess.run([*self.tmux, "resize-window", "-t", self.name, "-x", str(width), "-y", str(height)], check=True)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def test_tui_in_a_real_terminal(tiny_db: Path) -> None:
    miv(tiny_db, "create", "tiny", "e2e", "-m", "200")
    term = Tmux(f"miv-e2e-{time.monotonic_ns()}", tiny_db)
    try:
        term.keys(f"{MIV} tui", "Enter")
        term.wait("Images [1]", 30)
        term.wait("e2e", 10)
        term.keys("2")  # the VMs pane
        term.keys("s")  # start
        term.wait("running", 60)
        term.keys("a")  # attach the console
        term.wait("console: e2e", 10)
        term.wait("login:", 90)
        term.keys("root", literal=True)
        term.keys("Enter")
        term.wait_for(prompt_shown, 30, "the shell prompt")
        term.keys("uname -a", literal=True)
        term.keys("Enter")
        screen = term.wait("Linux tiny", 30)
        assert "uname -a" in screen
        term.keys("C-]")  # back to the dashboard: the console's key leaves the footer
        term.wait_for(lambda screen: "Leave console" not in screen, 10, "the dashboard to take the keys back")
        # SSH from the dashboard: it steps aside for a real session, then comes back.
        term.keys("h")
        term.wait_for(lambda screen: "Images [1]" not in screen and prompt_shown(screen), 30, "the SSH session")
        term.keys("echo ssh-$((20+3)) && hostname", literal=True)
        term.keys("Enter")
        term.wait("ssh-23", 30)
        term.keys("exit", literal=True)
        term.keys("Enter")
        term.wait("Images [1]", 20)
        term.keys("q")
        term.wait("$ ", 20)
        # The terminal is sane: canonical mode and echo are back, and the shell works.
        check = "clear; stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)' | tr '\\n' ' '"
        term.keys(f"{check}; echo sane-$((40+2))", "Enter")
        screen = term.wait("sane-42", 10)
        assert "icanon echo" in screen and "-icanon" not in screen and "-echo " not in screen
        # Quitting left the VM running.
        assert miv(tiny_db, "ps", "--json").stdout.count(b'"running"') == 1
    finally:
        term.close()
        miv(tiny_db, "destroy", "e2e", rc=None)


def test_cli_console_and_interactive_ssh_in_a_real_terminal(tiny_db: Path) -> None:
    miv(tiny_db, "create", "tiny", "tty", "-m", "200")
    term = Tmux(f"miv-cli-{time.monotonic_ns()}", tiny_db)
    try:
        term.keys(f"{MIV} start tty", "Enter")  # attached to the serial console
        term.wait("Ctrl-] to detach", 30)
        term.wait("login:", 90)
        term.keys("root", literal=True)
        term.keys("Enter")
        term.wait_for(prompt_shown, 30, "the shell prompt")
        term.keys("echo from-$((6*7))", literal=True)
        term.keys("Enter")
        term.wait("from-42", 20)
        term.keys("C-]")
        term.wait("[detached]", 10)
        assert b'"running"' in miv(tiny_db, "ps", "--json").stdout  # detaching leaves it running
        term.keys("clear", "Enter")
        term.keys(f"{MIV} console tty", "Enter")
        screen = term.wait("Ctrl-] to detach", 20)
        assert "from-42" in screen  # recent output first
        term.keys("C-]")
        screen = term.wait("[detached]", 10)
        assert ";1R" not in screen and "R^[" not in screen  # no stale terminal answers typed
        term.keys("clear", "Enter")
        term.keys(f"{MIV} ssh tty", "Enter")
        # The prompt below the command: the console's (from before `clear`) is no sign of SSH.
        term.wait_for(lambda screen: f"{MIV} ssh tty" in screen and prompt_shown(screen.split(f"{MIV} ssh tty")[1]),
                      30, "the SSH session's prompt")
        term.keys("tty; stty size", literal=True)
        term.keys("Enter")
        screen = term.wait("40 120", 30)  # stty's line comes after tty's: wait for the last one
        assert "/dev/pts/" in screen
        term.keys("exit 5", literal=True)
        term.keys("Enter")
        # Keys typed before `miv ssh` has returned would go to the closed session.
        term.wait_for(lambda screen: screen.rstrip().endswith("$"), 15, "the local shell's prompt")
        term.keys("echo rc=$?", literal=True)
        term.keys("Enter")
        term.wait("rc=5", 15)
    finally:
        term.close()
        miv(tiny_db, "destroy", "tty", rc=None)


def test_small_terminals_in_a_real_terminal(tmp_path: Path) -> None:
    """Regression: at 80x24 the Images pane showed one row and a horizontal scrollbar, the
    remote URL was cut with no `…`, the footer lost `q Quit`; at 60x18 no rows showed.
    Now every pane shows its rows and the important columns at 80x24, and below that one
    message says how big the terminal must be."""
    from . import demo_db

    db = demo_db.build(tmp_path).db.root
    term = Tmux(f"miv-small-{time.monotonic_ns()}", db, size=(80, 24))
    try:
        term.keys(f"{MIV} tui", "Enter")
        def laid_out(screen: str) -> bool:  # the first frame may come before the panes know their width
            return "Quit" in screen and any("b2" in line and "…" in line for line in screen.splitlines())

        screen = term.wait_for(laid_out, 30, "the dashboard at 80x24")
        lines = screen.splitlines()
        for tag in ("tiny", "alpine-3.22", "ubuntu-24.04"):  # all three images, with their sizes
            assert any(re.search(rf" {re.escape(tag)} +[0-9.]+[KMG] ", line) for line in lines), (tag, screen)
        for vm in ("web", "db"):
            assert any(f" {vm} " in line and "stopped" in line for line in lines), (vm, screen)
        assert "…" in next(line for line in lines if "b2" in line)  # the long URL is cut visibly
        footer = lines[-1]
        assert "q Quit" in footer and "? Help" in footer, footer
        assert "▁▁" not in screen and "▔▔" not in screen  # no horizontal scrollbar
        term.resize(60, 18)
        screen = term.wait("needs at least 80x24", 10)
        assert "60x18" in screen and "ubuntu-24.04" not in screen
        term.resize(80, 24)
        term.wait("ubuntu-24.04", 10)
        term.keys("q")
        term.wait("$ ", 10)
    finally:
        term.close()
