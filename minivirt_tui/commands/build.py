"""``miv build``: build an image from a recipe and test it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..cli import core, run
from ..completion import recipe_files
from ..render import duration, info


class _Display:
    """Renders build events: live output with -v, else one line per step (a live line on a terminal)."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.tty = sys.stderr.isatty()
        self.current = ""
        self.step_started = time.monotonic()
        self.status: Any = None
        self.filters: dict[str, Any] = {}  # source -> QueryFilter: the guest's terminal queries never reach ours

    def __enter__(self) -> _Display:
        if self.tty and not self.verbose:
            from rich.console import Console

            self.status = Console(stderr=True).status("starting the build")
            self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(None, None, None)

    def line(self, text: str) -> None:
        if self.status is not None:
            self.status.console.print(text, highlight=False, markup=False)
        else:
            info(text)

    def tick(self) -> None:
        if self.status is not None and self.current:
            self.status.update(f"{self.current} ({duration(time.monotonic() - self.step_started)})")

    def __call__(self, event: Any) -> None:
        from minivirt_core.recipes import events as ev

        if isinstance(event, ev.Output):
            if self.verbose:
                from minivirt_core.console import QueryFilter

                # One filter per source: console, SSH and host output are separate streams.
                safe = self.filters.setdefault(event.source, QueryFilter())
                sys.stdout.buffer.write(safe.feed(event.data))
                sys.stdout.buffer.flush()
            return
        if isinstance(event, ev.BuildStarted):
            self.line(f"building {event.recipe}: {event.steps} step(s), {event.tests} test(s), VM {event.vm}")
        elif isinstance(event, ev.StepStarted):
            self.current = f"step {event.number}/{event.total}: {event.title}"
            self.step_started = time.monotonic()
            if self.status is None:
                self.line(self.current)
        elif isinstance(event, ev.StepSkipped):
            self.line(f"step {event.number}/{event.total}: {event.title} (skipped: {event.reason})")
        elif isinstance(event, ev.StepFinished):
            self.line(f"step {event.number}/{event.total}: {event.title} done in {event.seconds:.1f}s")
            self.current = ""
        elif isinstance(event, ev.Note):
            self.line(event.text)
        elif isinstance(event, ev.TestStarted):
            self.current = f"test {event.name}"
            self.step_started = time.monotonic()
            if self.status is None:
                self.line(self.current)
        elif isinstance(event, ev.TestPassed):
            self.line(f"test {event.name}: passed in {event.seconds:.1f}s")
            self.current = ""
        self.tick()


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path), shell_complete=recipe_files)
@click.option("-t", "--tag", "tags", multiple=True, help="Tag the image ({arch} becomes the architecture built).")
@click.option("--arch", type=click.Choice(["x86_64", "aarch64"]), default=None,
              help="Guest architecture to build (default: the base image's, else this host's). "
                   "Another architecture than the host's is emulated.")
@click.option("-v", "--verbose", is_flag=True, help="Stream the serial console, SSH and host output to stdout.")
@click.option("--keep-on-failure", is_flag=True, help="Keep the build VM when a step fails, to look inside.")
def build(recipe: Path, tags: tuple[str, ...], arch: str | None, verbose: bool, keep_on_failure: bool) -> None:
    """Build an image from a RECIPE (YAML), run its tests, and tag it.

    A recipe runs code on this machine: its `host` steps run bash here, as you, and its
    `run` steps run in the build VM. Never build a recipe you do not trust.
    """
    import asyncio

    from minivirt_core.fsutil import human_size
    from minivirt_core.recipes import load_recipe
    from minivirt_core.recipes.build import Builder

    loaded = load_recipe(recipe)

    async def go() -> Any:
        with _Display(verbose) as display:
            builder = Builder(core().vms, loaded, display, keep_on_failure=keep_on_failure, arch=arch)
            task = asyncio.ensure_future(builder.build(list(tags)))
            while not task.done():
                await asyncio.wait([task], timeout=1)
                display.tick()
            return task.result()

    result = run(go())
    image = result.image
    label = f" ({', '.join(image.tags)})" if image.tags else ""
    info(f"built {image.short_id}{label} in {duration(result.seconds)}")
    from minivirt_core.rows import tag_moves

    for line in tag_moves(image.moved):
        info(line)
    click.echo(f"{image.short_id} {human_size(image.size)}")


COMMANDS = [build]
