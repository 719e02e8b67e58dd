"""Start-up of the CLI: `miv --help` and `miv images` on an empty database.

Target: `miv --help` <= 0.15 s (median). Baseline in the same run: `python -c pass`.
Run: .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import sys
import tempfile

from common import MIV, median_time, verdict


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MINIVIRT_DB_PATH": tmp}
        python = median_time([sys.executable, "-c", "pass"], runs=11)
        helptime = median_time([MIV, "--help"], runs=11, env=env)
        images = median_time([MIV, "images"], runs=11, env=env)
    print(f"python -c pass : {python:.3f} s (baseline)")
    print(f"miv --help     : {helptime:.3f} s ({helptime / python:.1f}x python; target <= 0.15 s: "
          f"{verdict(helptime, 0.15)})")
    print(f"miv images     : {images:.3f} s ({images / python:.1f}x python)")


if __name__ == "__main__":
    main()
