"""`miv images` on databases of 200 and 1000 images: ours vs the original minivirt, same run.

Targets: <= 0.15 s (200) and <= 0.3 s (1000), median wall time.
Run: .venv/bin/python bench/images_list.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import MIV, make_db, median_time, original_miv, verdict

TARGETS = {200: 0.15, 1000: 0.3}


def main() -> None:
    orig = original_miv()
    print(f"{'images':>6} {'ours (s)':>9} {'original (s)':>13} {'speed-up':>9}  target")
    for count, target in TARGETS.items():
        with tempfile.TemporaryDirectory() as tmp:
            db = make_db(Path(tmp) / "db", count)
            env = {"MINIVIRT_DB_PATH": str(db)}
            ours = median_time([MIV, "images"], runs=7, env=env)
            theirs = median_time([orig, "images"], runs=3 if count <= 200 else 1, env=env, warmup=0)
            print(f"{count:>6} {ours:>9.3f} {theirs:>13.2f} {theirs / ours:>8.0f}x  "
                  f"<= {target} s: {verdict(ours, target)}")


if __name__ == "__main__":
    main()
