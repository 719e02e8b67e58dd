"""`miv logs -n/--tail` and `--since` on serial logs written here (the VM is never booted:
tests/test_cli_vm.py does that), and shell completion (issue 10)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .helpers import image_tar, miv


@pytest.fixture
def vm(db: Path) -> Path:
    """A VM ``web`` (never started); its folder."""
    miv(db, "load", "tiny", input=image_tar(0))
    miv(db, "create", "tiny", "web", "-m", "64")
    return db / "vms" / "web"


TAIL_CASES = [  # (log, N, what `miv logs -n N` prints)
    (b"a\nb\nc\n", 2, b"b\nc\n"),
    (b"a\nb\nc", 2, b"b\nc"),  # a last line without its newline is a line
    (b"a\nb\nc\n", 0, b""),
    (b"a\nb\nc\n", 9, b"a\nb\nc\n"),
    (b"".join(b"line %d\n" % i for i in range(50000)), 3, b"line 49997\nline 49998\nline 49999\n"),  # > 64 KiB
    (b"x" * 200000 + b"\nlast\n", 2, b"x" * 200000 + b"\nlast\n"),  # a line longer than a read
]


def test_logs_tail_prints_the_last_n_lines(db: Path, vm: Path) -> None:
    for log, n, expected in TAIL_CASES:
        (vm / "serial.log").write_bytes(log)
        out = miv(db, "logs", "web", "-n", str(n)).stdout
        assert out == expected, (log[-40:], n, out[-80:])


def test_logs_since_reads_from_the_boot_running_at_that_time(db: Path, vm: Path) -> None:
    now = time.time()
    (vm / "serial.log").write_bytes(b"boot one\nboot two\nboot three\n")
    (vm / "serial-boots").write_text(f"{now - 3000} 0 start\n{now - 2000} 9 stop\n{now - 1000} 9 start\n"
                                     "garbage line\n")
    assert miv(db, "logs", "web", "--since", "1h").stdout == b"boot one\nboot two\nboot three\n"
    assert miv(db, "logs", "web", "--since", "40m").stdout == b"boot one\nboot two\nboot three\n"  # boot one ran
    assert miv(db, "logs", "web", "--since", "25m").stdout == b"boot two\nboot three\n"  # it had stopped
    assert miv(db, "logs", "web", "--since", "10m").stdout == b"boot two\nboot three\n"  # boot two runs
    os.utime(vm / "serial.log", (now - 600, now - 600))
    assert miv(db, "logs", "web", "--since", "5m").stdout == b""  # not a byte written since
    assert miv(db, "logs", "web", "--since", "20m", "-n", "1").stdout == b"boot three\n"


def test_logs_since_refuses_a_time_it_cannot_read(db: Path, vm: Path) -> None:
    lines = miv(db, "logs", "web", "--since", "yesterday", rc=1).stderr.decode().splitlines()
    assert lines[0] == "error: invalid time 'yesterday': write e.g. 10m, 2h, 3d, or 2026-11-27T02:00"


# Shell completion ---------------------------------------------------------------


def _complete(db: Path, shell: str, words: str) -> str:
    """What completing the last word of ``words`` offers, asked as ``shell``'s script asks."""
    # fish passes the word being completed itself; bash and zsh its index
    cword = words.split(" ")[-1] if shell == "fish" else str(len(words.split(" ")) - 1)
    env = {"_MIV_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": cword}
    return miv(db, env=env).stdout.decode()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_offers_the_vm_created_in_the_test(db: Path, vm: Path, shell: str) -> None:
    miv(db, "create", "tiny", "db-server", "-m", "64")
    out = _complete(db, shell, "miv start ")
    assert "web" in out and "db-server" in out
    out = _complete(db, shell, "miv stop db")
    assert "db-server" in out and "web" not in out


def test_completion_offers_image_references_remotes_and_recipes(db: Path, vm: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    miv(db, "remote", "add", "shared", f"file://{tmp_path}")
    assert "tiny" in _complete(db, "bash", "miv run ti")
    assert "shared" in _complete(db, "bash", "miv pull sh")
    assert "web" in _complete(db, "bash", "miv inspect w") and "tiny" in _complete(db, "bash", "miv inspect t")
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "alpine.yaml").write_text("steps: []\n")
    (tmp_path / "recipes" / "notes.txt").write_text("")
    monkeypatch.chdir(tmp_path)
    out = _complete(db, "bash", "miv build recipes/")
    assert "recipes/alpine.yaml" in out and "notes.txt" not in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_cp_completion_offers_vm_names_with_a_colon_and_host_files(db: Path, shell: str) -> None:
    (db / "vms" / "web-cp").mkdir(parents=True)  # a VM folder is all completion reads
    offered = "web-cp\\:" if shell == "zsh" else "web-cp:"  # zsh's format escapes the colon
    out = _complete(db, shell, "miv cp we")
    assert offered in out
    assert "file" in out  # and the shell completes the host's files
    assert offered not in _complete(db, shell, "miv cp x")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script_the_readme_enables(db: Path, shell: str) -> None:
    script = miv(db, "completion", shell).stdout.decode()
    assert "_MIV_COMPLETE" in script and f"{shell}_complete" in script
