"""Accelerator choice: right on this machine with no help, and overridable."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from minivirt_core import accel
from minivirt_core.errors import InvalidInput

from .helpers import miv


def _kernel_prints_under(accel_name: str, kernel: Path, seconds: float = 8.0) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serial.log"
        proc = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", accel_name, "-m", "128", "-nodefaults", "-display", "none",
             "-no-reboot", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1", "-serial", f"file:{log}"],
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return log.exists() and b"Linux version" in log.read_bytes()


@pytest.mark.vm
def test_detection_is_right_on_this_machine(tiny_image, monkeypatch: pytest.MonkeyPatch) -> None:
    """No environment variable: the choice must be one under which a real kernel runs.

    On the machines this project is built on, /dev/kvm answers but guests hang, so
    this asserts TCG there; on a host with working KVM it asserts KVM."""
    monkeypatch.delenv("MINIVIRT_ACCEL", raising=False)
    kernel = accel.probe_kernel()
    assert kernel is not None  # the tiny build keeps one for the probe
    choice = asyncio.run(accel.choose(use_cache=False))
    kvm_works = accel.kvm_api_version() == accel.KVM_API_VERSION and _kernel_prints_under("kvm", kernel)
    assert choice.accel == ("kvm" if kvm_works else "tcg"), choice
    assert _kernel_prints_under(choice.accel, kernel)
    if os.path.exists("/dev/kvm") and not kvm_works:
        assert "KVM" in choice.reason
    # The verdict is cached machine-wide and reused.
    cached = asyncio.run(accel.choose())
    assert cached.accel == choice.accel and "(cached)" in cached.reason


@pytest.mark.parametrize("value", ["tcg", "kvm", "TCG"])
def test_override(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIVIRT_ACCEL", value)
    choice = asyncio.run(accel.choose())
    assert choice.accel == value.lower() and choice.reason == "set by MINIVIRT_ACCEL"
    assert choice.qemu_args == ["-accel", value.lower(), "-cpu", "max" if value.lower() == "tcg" else "host"]


def test_override_rejects_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIVIRT_ACCEL", "warp")
    with pytest.raises(InvalidInput, match="not one of kvm, hvf, tcg"):
        asyncio.run(accel.choose())


def test_doctor_shows_the_accelerator_and_why(db: Path) -> None:
    out = miv(db, "doctor", env={"MINIVIRT_ACCEL": "tcg"}).stdout.decode()
    assert "accelerator: tcg: set by MINIVIRT_ACCEL" in out
    env = {k: v for k, v in os.environ.items() if k != "MINIVIRT_ACCEL"}
    out = miv(db, "doctor", env=env).stdout.decode()
    line = next(x for x in out.splitlines() if "accelerator:" in x)
    assert line.split("accelerator: ")[1].split(":")[0] in ("kvm", "tcg")


@pytest.mark.vm
def test_vm_runs_under_the_override(tiny_db: Path) -> None:
    miv(tiny_db, "create", "tiny", "o", "-m", "200")
    miv(tiny_db, "start", "o", "--daemon", env={"MINIVIRT_ACCEL": "tcg"})
    try:
        run = json.loads((tiny_db / "vms" / "o" / "run.json").read_text())
        assert run["accel"] == "tcg"
        cmdline = (tiny_db / "vms" / "o" / "qemu.log").read_text()
        assert "-accel tcg -cpu max" in cmdline
    finally:
        miv(tiny_db, "destroy", "o")
