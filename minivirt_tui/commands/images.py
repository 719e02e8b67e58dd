"""``miv images``, ``tag``, ``untag``, ``prune``, ``fsck``, ``save``, ``load``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from ..cli import core, run
from ..completion import image_refs
from ..completion import tags as tag_names
from ..exitcodes import ExitCode
from ..render import info, progress, table, warn

if TYPE_CHECKING:
    from minivirt_core.images import PruneReport


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {id, short_id, size, tags, created, arch} (created: seconds since 1970).")
@click.option("-q", "--quiet", is_flag=True, help="Print only short ids.")
def images(as_json: bool, quiet: bool) -> None:
    """List the images of the database."""
    from minivirt_core.rows import IMAGE_COLUMNS, WARM_COLUMN, image_row, warm_cell
    from minivirt_core.warm import states_by_image

    c = core()
    found = c.images.list()
    warm = states_by_image(c.db)
    if as_json:
        click.echo(json.dumps([{**i.as_json(), "warm_states": warm.get(i.id, 0)} for i in found], indent=2))
    elif quiet:
        click.echo("".join(f"{i.short_id}\n" for i in found), nl=False)
    else:
        # The shared columns, then how many warm states each image has (`miv run` resumes those).
        table((*IMAGE_COLUMNS, WARM_COLUMN), [(*image_row(i), warm_cell(warm.get(i.id))) for i in found])


@click.command()
@click.argument("image", shell_complete=image_refs)
@click.argument("tags", nargs=-1, required=True)
def tag(image: str, tags: tuple[str, ...]) -> None:
    """Give IMAGE (a tag, id or id prefix) one or more TAGS; an existing tag moves."""
    from minivirt_core.rows import tag_moves

    for change in core().images.tag(image, tags):
        if change.previous_id:
            (line,) = tag_moves([change])
            info(line)
        else:
            info(f"tagged {image} ({change.image_id[:12]}) as {change.tag}")


@click.command()
@click.argument("tags", nargs=-1, required=True, shell_complete=tag_names)
def untag(tags: tuple[str, ...]) -> None:
    """Remove TAGS. The images stay until `miv prune` finds them unused."""
    for t, image_id in zip(tags, core().images.untag(tags), strict=True):
        info(f"untagged {t} (image {image_id[:12]})")


@click.command()
@click.option("-n", "--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask first (on a terminal, prune lists and asks).")
def prune(dry_run: bool, yes: bool) -> None:
    """Remove images no tag or VM uses, and leftovers of interrupted work.

    On a terminal it lists what it would remove and the space that frees, and asks
    first (-y: don't ask); with stdin not a terminal it goes ahead, as in scripts."""
    from minivirt_core.fsutil import human_size

    images = core().images
    if dry_run or yes or not sys.stdin.isatty():
        report = images.prune(dry_run=dry_run)
        _prune_report(report, "would remove" if dry_run else "removed")
        if not report.empty:
            info(f"{'would free' if dry_run else 'freed'} {human_size(report.freed)}")
        return
    plan = images.prune(dry_run=True)
    if plan.empty:
        info("nothing to prune")
        return
    _prune_report(plan, "will remove")
    if not click.confirm(f"Remove them, freeing {human_size(plan.freed)}?", default=False, err=True):
        info("nothing removed")
        return
    report = images.prune(listed=plan)
    info(f"removed {len(report.images)} image(s), {len(report.vms)} orphan VM(s), {len(report.leftovers)} "
         f"leftover(s): freed {human_size(report.freed)}")


def _prune_report(report: PruneReport, verb: str) -> None:
    from minivirt_core.fsutil import human_size

    def size(item: object) -> str:
        return f" ({human_size(report.sizes[item])})" if item in report.sizes else ""

    for name in report.vms:
        info(f"{verb} orphan VM {name} (the miv process that made it is gone)")
    for image_id in report.images:
        info(f"{verb} image {image_id[:12]}{size(image_id)}")
    for path in report.warm_states:
        info(f"{verb} warm state {path.name[:12]}-{path.name[65:]} (its image is gone){size(path)}")
    for path in report.leftovers:
        info(f"{verb} leftover {path.parent.name}/{path.name}{size(path)}")
    if report.empty:
        info("nothing to prune")


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
@click.argument("image", shell_complete=image_refs)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout.")
def save(image: str, output: Path | None) -> None:
    """Write IMAGE as a tar archive to stdout (or FILE). Compress with e.g. `| gzip -1`."""
    miv = core()
    resolved = miv.images.resolve(image)
    if output is None:
        if sys.stdout.isatty():
            raise click.UsageError("refusing to write an archive to a terminal: redirect stdout or use -o FILE")
        with progress(f"saving {image}") as report:
            run(miv.images.save(resolved.id, sys.stdout.buffer, report))
        return
    with progress(f"saving {image}") as report:
        run(miv.images.save_to_file(resolved.id, output, report))
    info(f"saved {image} ({resolved.short_id}) to {output}")


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
    from minivirt_core.rows import tag_moves

    for line in tag_moves(image.moved):
        info(line)
    if not tags:
        warn(f"image {image.short_id} has no tag: `miv prune` will remove it; tag it with `miv tag`")
    click.echo(image.short_id)


COMMANDS = [images, tag, untag, prune, fsck, save, load]
