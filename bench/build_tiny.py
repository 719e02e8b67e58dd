"""Where the time of `miv build recipes/tiny.yaml` goes, step by step, so the builder's
own overhead is visible. Target: overhead <= 5 % of the total.

The overhead is the build's wall time minus the time spent inside the steps and tests
themselves (assembling the disk, the guest booting and powering off, test VMs), as the
builder's events report them.
Run: .venv/bin/python bench/build_tiny.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

from common import ROOT

sys.path.insert(0, str(ROOT))

from minivirt_core import Minivirt
from minivirt_core.recipes import events, load_recipe
from minivirt_core.recipes.build import Builder


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        miv = Minivirt(tmp)
        miv.db.ensure()
        inside = {}
        marks: dict[str, float] = {}

        def on_event(event: object) -> None:
            now = time.perf_counter()
            if isinstance(event, events.StepStarted | events.TestStarted):
                key = event.title if isinstance(event, events.StepStarted) else f"test: {event.name}"
                marks[key] = now
            elif isinstance(event, events.StepFinished):
                inside[event.title] = now - marks[event.title]
            elif isinstance(event, events.TestPassed):
                inside[f"test: {event.name}"] = now - marks[f"test: {event.name}"]

        started = time.perf_counter()
        result = await Builder(miv.vms, load_recipe(ROOT / "recipes" / "tiny.yaml"), on_event).build(["tiny"])
        total = time.perf_counter() - started
    for title, seconds in result.step_seconds:
        print(f"  {seconds:6.2f} s  {title}")
    overhead = total - sum(inside.values())
    print(f"  {total:6.2f} s  total")
    share = overhead / total
    verdict = "meets target" if share <= 0.05 else "MISSES target"
    print(f"builder overhead (total minus time inside steps and tests): {overhead:.2f} s "
          f"= {100 * share:.1f} % (target <= 5 %: {verdict})")


if __name__ == "__main__":
    asyncio.run(main())
