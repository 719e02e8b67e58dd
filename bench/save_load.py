"""`miv save X | miv load Y` of a 1 GiB image vs `tar c | tar x` of the same folder, same run.

Target: throughput ratio (tar time / miv time) >= 0.8. `miv load` also verifies
(computes the id) while it writes; tar does not.
Run: .venv/bin/python bench/save_load.py [SIZE_MIB]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from common import MIV, timed, verdict


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "config.json").write_text('{"disk": true}')
        with open(src / "disk.qcow2", "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(size_mib):
                f.write(block)
        db = Path(tmp) / "db"
        env = {"MINIVIRT_DB_PATH": str(db)}
        timed(f"tar c -C {src} config.json disk.qcow2 | {MIV} load x", env, shell=True)
        ours, base = [], []
        for i in range(3):
            out = Path(tmp) / f"out{i}"
            out.mkdir()
            base.append(timed(f"tar c -C {src} config.json disk.qcow2 | tar x -C {out}", shell=True))
            shutil.rmtree(out)
            ours.append(timed(f"{MIV} save x | {MIV} load y{i}", env, shell=True))
            os.unlink(db / "images" / f"y{i}")
        o, b = statistics.median(ours), statistics.median(base)
        mb = size_mib * 1.048576
        print(f"image: {size_mib} MiB")
        print(f"tar c | tar x        : {b:.2f} s  ({mb / b:.0f} MB/s)")
        print(f"miv save | miv load  : {o:.2f} s  ({mb / o:.0f} MB/s, id verified)")
        ratio = b / o
        print(f"throughput ratio     : {ratio:.2f}  (target >= 0.8: {verdict(ratio, 0.8, lower_is_better=False)})")


if __name__ == "__main__":
    main()
