"""What minivirt adds to a boot: raw QEMU to the SSH banner vs `miv run tiny true`, same run.

The raw run starts QEMU by hand on a copy of the tiny image's disk with the same
devices, and stops when the guest's SSH server sends its banner. `miv run tiny true`
does everything a user waits for: create the VM, boot, wait for SSH, log in, run
`true`, destroy. Target: miv adds <= 0.5 s (`--cold`, so it boots).
Warm rows: `miv run tiny true` resuming the image's warm state (made by one run before
the timed ones) against `--cold` and raw QEMU. Targets: warm <= 1.0 s and <= 0.35x cold.
The same cold comparison for the aarch64 tiny guest (`miv run tiny-aarch64 true`), emulated
on an x86 host: minivirt adds <= 0.5 s, and the raw emulated boot reaches SSH in <= 4 s.
Medians of 5 each (3 for aarch64), interleaved, in the same run.
Also: `miv ps -a` with 50 stopped VMs, target <= 0.2 s.
Run: .venv/bin/python bench/vm_boot.py   (needs a database with the `tiny` image, or
builds one in a temporary database)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from banner import wait_for_guest_banner
from common import MIV, ROOT, median_time, timed, verdict

sys.path.insert(0, str(ROOT))

from minivirt_core.hostinfo import qemu_system_name
from minivirt_core.ports import free_port
from minivirt_core.qemu import firmware
from minivirt_core.qemu.command import Drive, drive_args, machine_args


def raw_boot(disk: Path, workdir: Path, arch: str = "x86_64") -> float:
    copy = workdir / "raw.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), str(copy)],
                   check=True)
    port = free_port()
    start = time.perf_counter()
    fw = firmware.require(arch)
    boot = [*fw.qemu_args, "-boot", "menu=on,splash-time=0"] if fw else []
    proc = subprocess.Popen(
        [qemu_system_name(arch), *machine_args(arch, "tcg"), *boot, "-m", "256", "-smp", "1", "-nodefaults",
         "-display", "none", *drive_args(Drive(str(copy)), 0, uefi=fw is not None),
         "-netdev", f"user,id=n,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n,romfile=",
         "-device", "virtio-rng-pci", "-serial", "null"],
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(wait_for_guest_banner(port, 120))  # when the guest answers, not a probe's back-off
        return time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()
        copy.unlink()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = work / "db"
        env = {"MINIVIRT_DB_PATH": str(db), "MINIVIRT_ACCEL": "tcg"}
        def runs(xs: list[float]) -> str:
            return ", ".join(f"{x:.2f}" for x in xs)

        for arch, tag in (("x86_64", "tiny"), ("aarch64", "tiny-aarch64")):
            tiny = work / tag
            subprocess.run(["bash", str(ROOT / "recipes/tiny/build-tiny.sh"), str(tiny)], check=True,
                           stdout=subprocess.DEVNULL, env={**os.environ, "MINIVIRT_ARCH": arch})
            subprocess.run(f"tar c -C {tiny} config.json disk.qcow2 | {MIV} load {tag}", shell=True, check=True,
                           env={**os.environ, **env}, stdout=subprocess.DEVNULL)
            cmd = [MIV, "run", tag, "-m", "256", "true"]
            warm_too = arch == "x86_64"  # warm starts are for x86_64 guests
            if warm_too:
                subprocess.run(cmd, check=True, env={**os.environ, **env}, stderr=subprocess.DEVNULL)  # saves one
            raw, ours, warm = [], [], []
            for _ in range(5 if warm_too else 3):
                raw.append(raw_boot(tiny / "disk.qcow2", work, arch))
                ours.append(timed([*cmd[:2], "--cold", *cmd[2:]], env))
                if warm_too:
                    warm.append(timed(cmd, env))
            r, o = statistics.median(raw), statistics.median(ours)
            print(f"{arch}: raw QEMU boot to SSH banner : {r:.2f} s  (runs: {runs(raw)})"
                  + (f"  (target <= 4 s: {verdict(r, 4.0)})" if arch == "aarch64" else ""))
            print(f"{arch}: miv run --cold {tag} true{' ' * (13 - len(tag))}: {o:.2f} s  (runs: {runs(ours)})")
            print(f"{arch}: minivirt adds               : {o - r:+.2f} s  (target <= 0.5 s: {verdict(o - r, 0.5)})")
            if warm_too:
                w = statistics.median(warm)
                print(f"{arch}: miv run {tag} true (warm)    : {w:.2f} s  (runs: {runs(warm)}; "
                      f"target <= 1.0 s: {verdict(w, 1.0)})")
                print(f"{arch}: warm / cold                 : {w / o:.2f}x  (target <= 0.35x: {verdict(w / o, 0.35)}); "
                      f"warm / raw QEMU cold: {w / r:.2f}x")

        for i in range(50):
            subprocess.run([MIV, "create", "tiny", f"vm{i:02d}", "-m", "256"], check=True, env={**os.environ, **env},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ps = median_time([MIV, "ps", "-a"], runs=9, env=env)
        print(f"miv ps -a, 50 stopped VMs   : {ps:.3f} s  (target <= 0.2 s: {verdict(ps, 0.2)})")
        shutil.rmtree(db, ignore_errors=True)


if __name__ == "__main__":
    main()
