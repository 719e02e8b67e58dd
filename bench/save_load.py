"""`miv save X | miv load Y` of a 1 GiB image vs `tar c | tar x` of the same folder, same run.

Target: throughput ratio (tar time / miv time) >= 0.9, medians of 5 runs each, alternating.
`miv load` also verifies as it writes (computes the id, checks every member against the
image rules); tar does neither. The image is a real one: a qcow2 of random data.
Run: .venv/bin/python bench/save_load.py [SIZE_MIB] [RUNS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import MIV, timed, verdict

TARGET = 0.9


def make_image(src: Path, size_mib: int) -> None:
    """config.json and a qcow2 disk holding ``size_mib`` MiB of random data."""
    src.mkdir()
    (src / "config.json").write_text('{"disk": true}')
    raw = src.parent / "raw"
    with open(raw, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(size_mib):
            f.write(block[i % 4096:] + block[: i % 4096])  # no two MiB alike
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(src / "disk.qcow2")],
                   check=True)
    raw.unlink()


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        src = Path(tmp) / "src"
        make_image(src, size_mib)
        db = Path(tmp) / "db"
        env = {"MINIVIRT_DB_PATH": str(db)}
        timed(f"tar c -C {src} config.json disk.qcow2 | {MIV} load x", env, shell=True)
        ours, base = [], []
        for i in range(runs):
            # Each run starts with nothing dirty in the page cache, so neither side pays for
            # the write-back of the run before it.
            out = Path(tmp) / f"out{i}"
            out.mkdir()
            os.sync()
            base.append(timed(f"tar c -C {src} config.json disk.qcow2 | tar x -C {out}", shell=True))
            shutil.rmtree(out)
            os.sync()
            ours.append(timed(f"{MIV} save x | {MIV} load y{i}", env, shell=True))
            timed([MIV, "untag", f"y{i}"], env)
            timed([MIV, "prune"], env)  # (x is tagged: it stays)
        o, b = statistics.median(ours), statistics.median(base)
        mb = (src / "disk.qcow2").stat().st_size / 1e6
        print(f"image: {size_mib} MiB of data ({mb:.0f} MB qcow2), {runs} runs each")
        print(f"tar c | tar x        : {b:.2f} s  ({mb / b:.0f} MB/s)  runs: {' '.join(f'{t:.2f}' for t in base)}")
        print(f"miv save | miv load  : {o:.2f} s  ({mb / o:.0f} MB/s, id verified)  "
              f"runs: {' '.join(f'{t:.2f}' for t in ours)}")
        ratio = b / o
        print(f"throughput ratio     : {ratio:.2f}  (target >= {TARGET}: "
              f"{verdict(ratio, TARGET, lower_is_better=False)})")


if __name__ == "__main__":
    main()
