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

    def __init__(self, name: str, db: Path) -> None:
        self.name = name
        self.tmux = ["tmux", "-S", str(db.parent / "tmux.sock")]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", name, "-x", "120", "-y", "40",
                        "-e", f"MINIVIRT_DB_PATH={db}", "-e", "TERM=xterm-256color", "-e", "PS1=$ ",
                        "bash", "--norc", "--noprofile"], check=True)

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
        screen = term.wait("/dev/pts/", 30)
        assert "40 120" in screen
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
