"""The core imports no UI library; `miv images` stays light."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import minivirt_core

from .helpers import MIV, image_tar

UI = ("textual", "rich", "click")


def test_core_imports_no_ui_library() -> None:
    modules = [m.name for m in pkgutil.walk_packages(minivirt_core.__path__, "minivirt_core.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {UI!r} or m.startswith('minivirt_tui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"minivirt_core imported: {out}"
    assert len(modules) > 10


def _imported_by(args: list[str], db: Path, stdin: bytes | None = None) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", MIV, *args], input=stdin, capture_output=True,
                          env={**os.environ, "MINIVIRT_DB_PATH": str(db)}, check=True)
    names = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_miv_images_and_help_import_no_heavy_library(db: Path) -> None:
    subprocess.run([MIV, "load", "t"], input=image_tar(), check=True,
                   env={**os.environ, "MINIVIRT_DB_PATH": str(db)}, capture_output=True)
    for args in (["images"], ["--help"], ["images", "--json"]):
        imported = _imported_by(args, db)
        assert "click" in imported  # the measurement itself works
        heavy = imported & {"textual", "boto3", "botocore", "asyncssh", "qemu", "httpx", "rich", "yaml", "asyncio"}
        assert not heavy, f"miv {' '.join(args)} imported {sorted(heavy)}"


def test_cli_tui_imports_textual_lazily(db: Path) -> None:
    """`miv tui --help` (like every other command) runs without importing Textual: only
    running the dashboard does. Regression: this test only looked at the help's text."""
    imported = _imported_by(["tui", "--help"], db)
    assert "click" in imported  # the measurement itself works
    assert not imported & {"textual", "rich", "asyncio"}, sorted(imported & {"textual", "rich", "asyncio"})
    proc = subprocess.run([MIV, "tui", "--help"], capture_output=True, env={**os.environ, "MINIVIRT_DB_PATH": str(db)})
    assert proc.returncode == 0 and b"dashboard" in proc.stdout
