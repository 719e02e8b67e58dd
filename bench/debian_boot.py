"""Boot time of a real distribution: the offline Debian 12 image, next to the tiny guest.

For the Debian image (recipes/debian-12.yaml, as the tests cache it) each run makes a
fresh overlay and a per-VM NoCloud seed (what `miv create --cloud-init` writes), starts
QEMU with minivirt's devices (2 vCPUs, 1 GiB, virtio-rng), and measures QEMU start ->
SSH banner and -> `cloud-init status --wait` done; then powers the guest off over SSH and
boots the same disk again (second boot: cloud-init already done for this instance).
The tiny guest's QEMU start -> SSH banner is measured in the same run, as the baseline.
Median of 3 each. Targets (issue 11): second boot to SSH <= 15 s, first boot cloud-init
done <= 25 s, under TCG on 2 cores.

Run: .venv/bin/python bench/debian_boot.py [DEBIAN_IMAGE_DIR [TINY_IMAGE_DIR]]
(default: the newest debian-12-* and tiny-* under ~/.cache/minivirt/test-images, which
`scripts/setup test tests/test_debian.py` makes).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CACHE, ROOT, verdict

sys.path.insert(0, str(ROOT))

from minivirt_core import ssh
from minivirt_core.cidata import write_iso
from minivirt_core.ports import free_port
from minivirt_core.seed import CloudInit, documents

RUNS = 3
WAIT = 900.0


def newest(prefix: str) -> Path:
    found = sorted((p for p in (CACHE / "test-images").glob(f"{prefix}-*") if (p / "disk.qcow2").exists()),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"no {prefix} image under {CACHE / 'test-images'}: run the tests that build it first")
    return found[-1]


def qemu(disk: Path, port: int, cpus: int, memory: int, seed: Path | None) -> subprocess.Popen[bytes]:
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", str(memory), "-smp", str(cpus),
            "-nodefaults", "-display", "none", "-drive", f"if=virtio,file={disk},format=qcow2",
            "-netdev", f"user,id=n,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n,romfile=",
            "-device", "virtio-rng-pci", "-serial", "null"]
    if seed is not None:
        argv += ["-drive", f"file={seed},format=raw,media=cdrom,readonly=on"]
    return subprocess.Popen(argv, stderr=subprocess.DEVNULL)


def overlay(base: Path, path: Path) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(path)], check=True)
    return path


async def debian_boot(disk: Path, seed: Path) -> tuple[float, float]:
    """(QEMU start -> SSH banner, -> cloud-init done); powers the guest off after."""
    port = free_port()
    start = time.perf_counter()
    proc = qemu(disk, port, 2, 1024, seed)
    try:
        await ssh.wait_for_banner(port, WAIT, alive=lambda: proc.poll() is None)
        banner = time.perf_counter() - start
        conn = await ssh.connect(port, WAIT)
        try:
            _status, out = await ssh.capture(conn, "cloud-init status --wait")
            done = time.perf_counter() - start
            if "status: done" not in out:
                raise SystemExit(f"cloud-init did not finish well: {out.strip()[-300:]}")
            await ssh.capture(conn, "systemctl poweroff")
        finally:
            conn.close()
        await asyncio.to_thread(proc.wait, 300)
        return banner, done
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def tiny_boot(disk: Path, work: Path) -> float:
    port = free_port()
    copy = overlay(disk, work / f"tiny-{port}.qcow2")
    start = time.perf_counter()
    proc = qemu(copy, port, 1, 256, None)
    try:
        await ssh.wait_for_banner(port, 120)
        return time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    debian = Path(sys.argv[1]) if len(sys.argv) > 1 else newest("debian-12")
    tiny = Path(sys.argv[2]) if len(sys.argv) > 2 else newest("tiny")
    pub = (ROOT / "minivirt_core" / "data" / "vagrant.pub").read_text().strip()
    first: list[tuple[float, float]] = []
    second: list[tuple[float, float]] = []
    tiny_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="miv-bench-debian-") as tmp:
        work = Path(tmp)
        for i in range(RUNS):
            disk = overlay(debian / "disk.qcow2", work / f"debian-{i}.qcow2")
            seed = work / f"seed-{i}.iso"
            write_iso(seed, *documents(f"bench-{i}", pub, CloudInit()))
            first.append(asyncio.run(debian_boot(disk, seed)))
            second.append(asyncio.run(debian_boot(disk, seed)))
            tiny_times.append(asyncio.run(tiny_boot(tiny / "disk.qcow2", work)))
            print(f"run {i + 1}: debian first {first[-1][0]:.1f} s to SSH, {first[-1][1]:.1f} s to cloud-init done;"
                  f" second {second[-1][0]:.1f} / {second[-1][1]:.1f} s; tiny {tiny_times[-1]:.1f} s to SSH",
                  flush=True)

    def med(values: list[tuple[float, float]], k: int) -> float:
        return statistics.median(v[k] for v in values)

    t = statistics.median(tiny_times)
    print(f"\ntiny (baseline)          QEMU start -> SSH banner   {t:6.1f} s")
    print(f"debian-12, first boot    QEMU start -> SSH banner   {med(first, 0):6.1f} s  "
          f"({med(first, 0) / t:.1f}x tiny)")
    print(f"debian-12, first boot    -> cloud-init done         {med(first, 1):6.1f} s  "
          f"{verdict(med(first, 1), 25.0)} (target <= 25 s)")
    print(f"debian-12, second boot   QEMU start -> SSH banner   {med(second, 0):6.1f} s  "
          f"{verdict(med(second, 0), 15.0)} (target <= 15 s)")
    print(f"debian-12, second boot   -> cloud-init done         {med(second, 1):6.1f} s")
    print(f"(median of {RUNS}; load average now {Path('/proc/loadavg').read_text().split()[0]})")


if __name__ == "__main__":
    main()
