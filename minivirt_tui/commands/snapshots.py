"""``miv snapshot save/ls/restore/rm``: named snapshots of a VM."""

from __future__ import annotations

import json

import click

from ..cli import core, run
from ..render import ago, info, table


@click.group()
def snapshot() -> None:
    """Named snapshots of a VM: live with its memory while it runs, of its disk when stopped."""


@snapshot.command("save")
@click.argument("name")
@click.argument("snapshot_name", metavar="[SNAPSHOT]", required=False)
def snapshot_save(name: str, snapshot_name: str | None) -> None:
    """Snapshot VM NAME (a running VM keeps running); SNAPSHOT defaults to the time."""
    from minivirt_core import snapshots

    s = run(snapshots.save(core().vms, name, snapshot_name))
    info(f"saved snapshot {s.name} of {name} ({'disk and memory' if s.memory else 'disk only'})")


@snapshot.command("ls")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def snapshot_ls(name: str, as_json: bool) -> None:
    """List the snapshots of VM NAME."""
    from minivirt_core import snapshots

    found = run(snapshots.list_snapshots(core().vms, name))
    if as_json:
        click.echo(json.dumps([s.as_json() for s in found], indent=2))
    elif found:
        table(["NAME", "CREATED", "HOLDS"],
              [[s.name, ago(s.created), "disk and memory" if s.memory else "disk"] for s in found])
    else:
        info(f"{name} has no snapshots; make one with `miv snapshot save {name} [NAME]`")


@snapshot.command("restore")
@click.argument("name")
@click.argument("snapshot_name", metavar="SNAPSHOT")
def snapshot_restore(name: str, snapshot_name: str) -> None:
    """Bring VM NAME back to SNAPSHOT (running from where it was, if it holds memory)."""
    from minivirt_core import snapshots

    s = run(snapshots.restore(core().vms, name, snapshot_name))
    info(f"restored {name} to snapshot {s.name}" + (", running" if s.memory else ""))


@snapshot.command("rm")
@click.argument("name")
@click.argument("snapshot_name", metavar="SNAPSHOT")
def snapshot_rm(name: str, snapshot_name: str) -> None:
    """Delete SNAPSHOT of VM NAME."""
    from minivirt_core import snapshots

    s = run(snapshots.remove(core().vms, name, snapshot_name))
    info(f"removed snapshot {s.name} of {name}")


COMMANDS = [snapshot]
