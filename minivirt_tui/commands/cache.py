"""``miv cache add``: the download cache, filled by hand on machines without internet."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import core, run
from ..render import info


@click.group()
def cache() -> None:
    """The download cache of builds (what recipes' download steps fetched)."""


@cache.command("add")
@click.argument("url")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--sha256", metavar="HEX", help="Refuse FILE unless its SHA256 is this.")
def cache_add(url: str, file: Path, sha256: str | None) -> None:
    """Put FILE into the download cache as the download of URL (for air-gapped machines:
    a recipe that downloads URL then uses FILE). Replaces what was cached for URL."""
    from minivirt_core.download import add_to_cache, shown_url
    from minivirt_core.fsutil import human_size

    cached = run(add_to_cache(url, file, core().db.cache_dir, sha256))
    info(f"cached {file} ({human_size(cached.stat().st_size)}) as {shown_url(url)}")


COMMANDS = [cache]
