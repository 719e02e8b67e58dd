"""``miv images``, ``tag``, ``untag``, ``prune``, ``fsck``, ``save``, ``load``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import BinaryIO

import click

from ..cli import core, run
from ..exitcodes import ExitCode
from ..render import ago, info, progress, table, warn


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {id, short_id, size, tags}.")
@click.option("-q", "--quiet", is_flag=True, help="Print only short ids.")
def images(as_json: bool, quiet: bool) -> None:
    """List the images of the database."""
    from minivirt_core.fsutil import human_size
    from minivirt_core.warm import states_by_image

    c = core()
    found = c.images.list()
    warm = states_by_image(c.db)
    if as_json:
        click.echo(json.dumps([{**i.as_json(), "warm_states": warm.get(i.id, 0)} for i in found], indent=2))
    elif quiet:
        click.echo("".join(f"{i.short_id}\n" for i in found), nl=False)
    else:
        table(
            ["IMAGE ID", "SIZE", "CREATED", "WARM", "TAGS"],
            [[i.short_id, human_size(i.size), ago(i.created), str(warm.get(i.id, "-")), " ".join(i.tags)]
             for i in found],
        )


@click.command()
@click.argument("image")
@click.argument("tags", nargs=-1, required=True)
def tag(image: str, tags: tuple[str, ...]) -> None:
    """Give IMAGE (a tag, id or id prefix) one or more TAGS; an existing tag moves."""
    for change in core().images.tag(image, tags):
        if change.previous_id:
            info(f"tag {change.tag} moved from {change.previous_id[:12]} to {change.image_id[:12]}")
        else:
            info(f"tagged {change.image_id[:12]} as {change.tag}")


@click.command()
@click.argument("tags", nargs=-1, required=True)
def untag(tags: tuple[str, ...]) -> None:
    """Remove TAGS. The images stay until `miv prune` finds them unused."""
    for t, image_id in zip(tags, core().images.untag(tags), strict=True):
        info(f"untagged {t} (image {image_id[:12]})")


@click.command()
@click.option("-n", "--dry-run", is_flag=True, help="Only say what would be removed.")
def prune(dry_run: bool) -> None:
    """Remove images no tag or VM uses, and leftovers of interrupted work."""
    from minivirt_core.fsutil import human_size

    report = core().images.prune(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for name in report.vms:
        info(f"{verb} orphan VM {name} (the miv process that made it is gone)")
    for image_id in report.images:
        info(f"{verb} image {image_id[:12]}")
    for path in report.warm_states:
        info(f"{verb} warm state {path.name[:12]}-{path.name[65:]} (its image is gone)")
    for path in report.leftovers:
        info(f"{verb} leftover {path.parent.name}/{path.name}")
    if not report.images and not report.leftovers and not report.vms and not report.warm_states:
        info("nothing to prune")
    else:
        info(f"{'would free' if dry_run else 'freed'} {human_size(report.freed)}")


@click.command()
def fsck() -> None:
    """Check the database: image ids, tags, VMs, qcow2 disks, leftovers."""
    from minivirt_core.fsck import fsck as check

    db = core().db
    report = run(check(db))
    for note in report.notes:
        info(f"note: {note}")
    for problem in report.problems:
        click.echo(str(problem))
    if report.ok:
        info(f"ok: {report.images_checked} image(s) checked, no problems")
    else:
        info(f"{len(report.problems)} problem(s) found")
        sys.exit(ExitCode.FAILURE)


@click.command()
@click.argument("image")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout.")
def save(image: str, output: Path | None) -> None:
    """Write IMAGE as a tar archive to stdout (or FILE). Compress with e.g. `| gzip -1`."""
    miv = core()
    resolved = miv.images.resolve(image)
    if output is None:
        if sys.stdout.isatty():
            raise click.UsageError("refusing to write an archive to a terminal: redirect stdout or use -o FILE")
        with progress(f"saving {resolved.label}") as report:
            run(miv.images.save(resolved.id, sys.stdout.buffer, report))
        return
    with progress(f"saving {resolved.label}") as report:
        run(miv.images.save_to_file(resolved.id, output, report))
    info(f"saved {resolved.label} to {output}")


@click.command()
@click.argument("tags", nargs=-1)
@click.option("-i", "--input", "input_", type=click.File("rb"), help="Read from FILE, not stdin.")
def load(tags: tuple[str, ...], input_: BinaryIO | None) -> None:
    """Import an image from a tar (or gzip'd tar) on stdin (or FILE) and tag it TAGS."""
    from minivirt_core.names import validate_tag

    for t in tags:
        validate_tag(t)
    stream = input_ if input_ is not None else sys.stdin.buffer
    if input_ is None and sys.stdin.isatty():
        raise click.UsageError(
            "stdin is a terminal: pipe an archive in (e.g. `zcat x.tgz | miv load x`) or use -i FILE"
        )
    from minivirt_core.fsutil import widen_pipe

    total = None
    try:
        total = os.fstat(stream.fileno()).st_size or None
        widen_pipe(stream.fileno())
    except (OSError, ValueError):
        pass
    with progress("loading", total) as report:
        image = run(core().images.load(stream.read, tags, report, total))
    if not tags:
        warn(f"image {image.short_id} has no tag: `miv prune` will remove it; tag it with `miv tag`")
    click.echo(image.short_id)


COMMANDS = [images, tag, untag, prune, fsck, save, load]
