"""Helpers for the benchmarks: timing commands, the original minivirt, fake databases."""

from __future__ import annotations

import compileall
import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MIV = str(Path(sys.executable).parent / "miv")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minivirt"


def compile_bytecode(src: Path) -> None:
    """Byte-compile a checkout's packages (quietly), as pip does for an installed package: with
    PYTHONDONTWRITEBYTECODE set (as here) every timed `miv` would otherwise compile its modules."""
    for package in ("minivirt_core", "minivirt_tui"):
        compileall.compile_dir(str(src / package), quiet=1)


compile_bytecode(ROOT)  # every benchmark times miv as installed


def timed(cmd: list[str] | str, env: dict[str, str] | None = None, shell: bool = False) -> float:
    """Wall time of one run of ``cmd`` (output discarded); fails loudly if it fails."""
    start = time.perf_counter()
    subprocess.run(cmd, shell=shell, check=True, env={**os.environ, **(env or {})},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


class Run(NamedTuple):
    """One timed run of a command: wall seconds, peak RSS (KiB), CPU seconds (user + system)."""

    seconds: float
    rss: int
    cpu: float


def run_timed(cmd: str, env: dict[str, str]) -> Run:
    """Wall time, peak RSS and CPU time of the command, via GNU time."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M %U %S", "bash", "-c", cmd], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    seconds, rss, user, system = out.stderr.strip().splitlines()[-1].split()
    return Run(float(seconds), int(rss), float(user) + float(system))


def half_random_image(work: Path, size_mib: int) -> Path:
    """An image folder (``work/src``) whose disk is a real qcow2 of ``size_mib`` MiB, half
    random, half zeros (a disk image is partly compressible); the zeros are written out
    (``-S 0``) like the data. (load takes nothing but a real qcow2.)"""
    src = work / "src"
    src.mkdir()
    (src / "config.json").write_text('{"disk": true}')
    with open(work / "disk.raw", "wb") as f:
        for i in range(size_mib):
            f.write(os.urandom(1 << 20) if i % 2 == 0 else bytes(1 << 20))
    subprocess.run(["qemu-img", "convert", "-q", "-S", "0", "-f", "raw", "-O", "qcow2", str(work / "disk.raw"),
                    str(src / "disk.qcow2")], check=True)
    (work / "disk.raw").unlink()
    return src


def median_time(cmd: list[str] | str, runs: int, env: dict[str, str] | None = None, shell: bool = False,
                warmup: int = 1) -> float:
    for _ in range(warmup):
        timed(cmd, env, shell)
    return statistics.median(timed(cmd, env, shell) for _ in range(runs))


def original_miv() -> str:
    """The original minivirt (PyPI minivirt==0.1) in the benchmarks' own venv."""
    venv = CACHE / "venv-minivirt-0.1"
    exe = venv / "bin" / "miv"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "minivirt==0.1"], check=True)
    return str(exe)


def make_db(root: Path, count: int, disk_bytes: int = 4096) -> Path:
    """A database of ``count`` valid images (real ids) with one tag each."""
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(count):
        files = {"config.json": b'{"disk": true}', "disk.qcow2": i.to_bytes(8, "big") * (disk_bytes // 8)}
        lines = "".join(f"{n}:{hashlib.sha256(files[n]).hexdigest()}\n" for n in sorted(files))
        image_id = hashlib.sha256(lines.encode()).hexdigest()
        d = images / image_id
        d.mkdir()
        for name, data in files.items():
            (d / name).write_bytes(data)
        (images / f"image-{i:05d}").symlink_to(image_id)
    return root


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    return "meets target" if ok else "MISSES target"
