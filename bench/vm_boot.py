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
`--debian [DIR]`: the Debian rows too (the offline Debian 12 image of recipes/debian-12.yaml, by
default the newest one the tests cached): warm `miv run debian-12 true` against its `--cold`
run, medians of 3 each, interleaved (target: warm <= 0.1x cold).
miv's Python code is byte-compiled first, as an installed miv is (with PYTHONDONTWRITEBYTECODE
set, every run would compile ~40 modules again: ~0.15 s on a quiet machine).

Run: .venv/bin/python bench/vm_boot.py [--baseline DIR] [--runs N] [--no-aarch64] [--tiny DIR] [--debian [DIR]]
(builds the tiny images in a temporary database). ``--baseline DIR``: a checkout of other
code (e.g. `git worktree add /tmp/old main`) whose `miv` runs interleaved with this one's,
each in its own database, for an A/B in the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CACHE, MIV, ROOT, compile_bytecode, timed, verdict

sys.path.insert(0, str(ROOT))

from minivirt_core.hostinfo import qemu_system_name
from minivirt_core.ports import NET_PROBE_GUEST_PORT, free_ports
from minivirt_core.qemu import firmware
from minivirt_core.qemu.command import Drive, drive_args, machine_args
from minivirt_core.sshwait import wait_for_banner


def raw_boot(disk: Path, workdir: Path, arch: str = "x86_64") -> float:
    copy = workdir / "raw.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), str(copy)],
                   check=True)
    port, probe = free_ports(2)
    start = time.perf_counter()
    fw = firmware.require(arch)
    boot = [*fw.qemu_args, "-boot", "menu=on,splash-time=0"] if fw else []
    proc = subprocess.Popen(
        [qemu_system_name(arch), *machine_args(arch, "tcg"), *boot, "-m", "256", "-smp", "1", "-nodefaults",
         "-display", "none", *drive_args(Drive(str(copy)), 0, uefi=fw is not None),
         "-netdev", f"user,id=n,hostfwd=tcp:127.0.0.1:{port}-:22,hostfwd=tcp:127.0.0.1:{probe}-:{NET_PROBE_GUEST_PORT}",
         "-device", "virtio-net-pci,netdev=n,romfile=", "-device", "virtio-rng-pci", "-serial", "null"],
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(wait_for_banner(port, 120, net_probe=probe))  # miv's wait: only what miv adds differs
        return time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()
        copy.unlink()


def newest_debian() -> Path:
    """The newest Debian image the tests cached (`scripts/setup test tests/test_debian.py`)."""
    found = sorted((p for p in (CACHE / "test-images").glob("debian-12-*") if p.is_dir()),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit("no cached Debian image: build it with `scripts/setup test "
                 "tests/test_debian.py -k systemctl`, or give --debian DIR")
    return found[-1]


def debian_rows(image: Path, envs: dict[str, dict[str, str]], work: Path, runs: int = 3) -> None:
    """Warm `miv run debian-12 true` against its cold boot, interleaved, medians of ``runs``."""
    from minivirt_core.imageid import compute_id

    image_id = compute_id(image)
    cmd = [MIV, "run", "--wait-for-ssh", "900", "debian-12", "true"]
    for env in envs.values():
        images = Path(env["MINIVIRT_DB_PATH"]) / "images"
        (images / image_id).mkdir(parents=True)
        for name in ("config.json", "disk.qcow2"):  # linked, not loaded: images are read-only
            os.link(image / name, images / image_id / name)
        (images / "debian-12").symlink_to(image_id)
        subprocess.run(cmd, check=True, env={**os.environ, **env}, stderr=subprocess.DEVNULL)  # saves one
    cold: dict[str, list[float]] = {label: [] for label in envs}
    warm: dict[str, list[float]] = {label: [] for label in envs}
    for _ in range(runs):
        for label, env in envs.items():
            cold[label].append(timed([*cmd[:2], "--cold", *cmd[2:]], env))
            warm[label].append(timed(cmd, env))
    for label in envs:
        c, w = statistics.median(cold[label]), statistics.median(warm[label])
        code = "" if len(envs) == 1 else f"[{label}] "
        print(f"debian-12 ({image.name}): {code}miv run --cold debian-12 true : {c:.2f} s  "
              f"(runs: {', '.join(f'{x:.2f}' for x in cold[label])})")
        print(f"debian-12: {code}miv run debian-12 true (warm)  : {w:.2f} s  "
              f"(runs: {', '.join(f'{x:.2f}' for x in warm[label])})")
        print(f"debian-12: {code}warm / cold                    : {w / c:.3f}x  "
              f"(target <= 0.1x: {verdict(w / c, 0.1)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of other code to compare, interleaved")
    parser.add_argument("--runs", type=int, default=5, help="runs of each x86_64 row (aarch64: 3 unless fewer)")
    parser.add_argument("--no-aarch64", action="store_true", help="leave out the aarch64 rows")
    parser.add_argument("--tiny", type=Path, help="a tiny x86_64 image folder made already (config.json, "
                        "disk.qcow2; e.g. the tests' cached one) instead of building one")
    parser.add_argument("--debian", type=Path, nargs="?", const=Path(), metavar="DIR",
                        help="add the Debian rows (DIR: a Debian image folder; default: the newest cached one)")
    parser.add_argument("--only-debian", action="store_true", help="the Debian rows only")
    args = parser.parse_args()
    codes = {"this": ROOT}
    if args.baseline is not None:
        compile_bytecode(args.baseline.resolve())
        codes["base"] = args.baseline.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        envs = {label: {"MINIVIRT_DB_PATH": str(work / f"db-{label}"), "MINIVIRT_ACCEL": "tcg",
                        **({"PYTHONPATH": str(src)} if label != "this" else {})}
                for label, src in codes.items()}

        def runs(xs: list[float]) -> str:
            return ", ".join(f"{x:.2f}" for x in xs)

        if args.debian is not None or args.only_debian:
            debian_rows(args.debian if args.debian not in (None, Path()) else newest_debian(), envs, work)
            if args.only_debian:
                return
        arches = (("x86_64", "tiny"),) if args.no_aarch64 else (("x86_64", "tiny"), ("aarch64", "tiny-aarch64"))
        for arch, tag in arches:
            tiny = work / tag
            if arch == "x86_64" and args.tiny is not None:
                tiny.mkdir()
                for name in ("config.json", "disk.qcow2"):
                    shutil.copyfile(args.tiny / name, tiny / name)
            else:
                subprocess.run(["bash", str(ROOT / "recipes/tiny/build-tiny.sh"), str(tiny)], check=True,
                               stdout=subprocess.DEVNULL, env={**os.environ, "MINIVIRT_ARCH": arch})
            cmd = [MIV, "run", tag, "-m", "256", "true"]
            warm_too = arch == "x86_64"  # warm starts are for x86_64 guests
            for env in envs.values():
                subprocess.run(f"tar c -C {tiny} config.json disk.qcow2 | {MIV} load {tag}", shell=True,
                               check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
                if warm_too:
                    subprocess.run(cmd, check=True, env={**os.environ, **env}, stderr=subprocess.DEVNULL)  # saves one
            raw: list[float] = []
            ours: dict[str, list[float]] = {label: [] for label in envs}
            warm: dict[str, list[float]] = {label: [] for label in envs}
            for _ in range(args.runs if warm_too else min(args.runs, 3)):
                raw.append(raw_boot(tiny / "disk.qcow2", work, arch))
                for label, env in envs.items():
                    ours[label].append(timed([*cmd[:2], "--cold", *cmd[2:]], env))
                    if warm_too:
                        warm[label].append(timed(cmd, env))
            r = statistics.median(raw)
            print(f"{arch}: raw QEMU boot to SSH banner : {r:.2f} s  (runs: {runs(raw)})"
                  + (f"  (target <= 4 s: {verdict(r, 4.0)})" if arch == "aarch64" else ""))
            for label in envs:
                o = statistics.median(ours[label])
                code = "" if len(envs) == 1 else f"[{label}] "
                print(f"{arch}: {code}miv run --cold {tag} true{' ' * (13 - len(tag))}: {o:.2f} s  "
                      f"(runs: {runs(ours[label])})")
                print(f"{arch}: {code}minivirt adds               : {o - r:+.2f} s  "
                      f"(target <= 0.5 s: {verdict(o - r, 0.5)})")
                if warm_too:
                    w = statistics.median(warm[label])
                    print(f"{arch}: {code}miv run {tag} true (warm)    : {w:.2f} s  (runs: {runs(warm[label])}; "
                          f"target <= 1.0 s: {verdict(w, 1.0)})")
                    print(f"{arch}: {code}warm / cold                 : {w / o:.2f}x  "
                          f"(target <= 0.35x: {verdict(w / o, 0.35)}); warm / raw QEMU cold: {w / r:.2f}x")

        for env in envs.values():
            for i in range(50):
                subprocess.run([MIV, "create", "tiny", f"vm{i:02d}", "-m", "256"], check=True,
                               env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times: dict[str, list[float]] = {label: [] for label in envs}
        for _ in range(9):  # interleaved too
            for label, env in envs.items():
                times[label].append(timed([MIV, "ps", "-a"], env))
        for label in envs:
            ps = statistics.median(times[label])
            code = "" if len(envs) == 1 else f"[{label}] "
            print(f"{code}miv ps -a, 50 stopped VMs   : {ps:.3f} s  (target <= 0.2 s: {verdict(ps, 0.2)})")
        for env in envs.values():
            shutil.rmtree(env["MINIVIRT_DB_PATH"], ignore_errors=True)


if __name__ == "__main__":
    main()
