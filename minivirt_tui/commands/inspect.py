"""``miv inspect``: everything about a VM or an image, like ``docker inspect``."""

from __future__ import annotations

import json
from typing import Any

import click

from ..cli import core, run
from ..completion import vm_names_and_image_refs


def _which(name: str, kind: str | None) -> str:
    """``vm`` or ``image``: what NAME names. A name that is both a VM and an image
    reference is ambiguous unless ``--type`` says which."""
    from minivirt_core.errors import Conflict, MinivirtError, NotFound
    from minivirt_core.inspect import vm_exists

    miv = core()
    if kind is not None:
        return kind
    is_vm = vm_exists(miv.db, name)
    try:
        miv.images.resolve(name)
        is_image = True
    except NotFound:
        is_image = False
    except MinivirtError:  # e.g. a dangling tag: an image reference all the same
        is_image = True
    if is_vm and is_image:
        raise Conflict(f"{name!r} names both a VM and an image",
                       hint=f"Say which: `miv inspect --type vm {name}` or `miv inspect --type image {name}`.")
    if not is_vm and not is_image:
        raise NotFound(f"no VM or image named {name!r}",
                       hint="`miv ps -a` lists the VMs, `miv images` the images.")
    return "vm" if is_vm else "image"


def _show(value: Any, indent: int = 0) -> None:
    """A nested dict as aligned ``key: value`` lines (lists of scalars on one line)."""
    pad = "  " * indent
    width = max((len(str(k)) for k in value), default=0)
    for key, item in value.items():
        if isinstance(item, dict):
            click.echo(f"{pad}{key}:")
            _show(item, indent + 1)
        elif isinstance(item, list) and any(isinstance(i, dict) for i in item):
            click.echo(f"{pad}{key}:")
            for entry in item:
                click.echo(f"{pad}  - " + ", ".join(f"{k}={v}" for k, v in entry.items()))
        else:
            if isinstance(item, list):
                text = " ".join(str(i) for i in item) or "-"
            elif item is None or item == "":
                text = "-"
            else:
                text = str(item)
            click.echo(f"{pad}{str(key) + ':':<{width + 1}} {text}")


@click.command()
@click.argument("name", shell_complete=vm_names_and_image_refs)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the same fields).")
@click.option("--type", "kind", type=click.Choice(["vm", "image"]),
              help="What NAME names, when it is both a VM and an image reference.")
def inspect(name: str, as_json: bool, kind: str | None) -> None:
    """Show everything about VM or image NAME (a VM name, or an image tag, id or id prefix).

    For a VM: its config, image (the reference it was created from, and the id), ports,
    disk and overlay size, SSH command, log paths, and while it runs QEMU's pid and command
    line. For an image: id, tags, size, config, when it was built, the VMs that use it.
    A NAME that is both a VM and an image reference needs --type.
    """
    from minivirt_core.inspect import inspect_image, inspect_vm

    db = core().db
    which = _which(name, kind)
    data = run(inspect_vm(db, name) if which == "vm" else inspect_image(db, name))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    _show(_for_people(data))


def _for_people(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON made readable: sizes in K/M/G, times as dates, an argv as a shell line."""
    import shlex

    from minivirt_core.fsutil import human_size
    from minivirt_core.rows import duration

    shown: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("created", "started", "config"):  # shown as *_iso; a VM's config field by field
            continue
        if key.endswith("_iso"):
            key = key[:-4]
        if isinstance(value, dict):
            value = _for_people(value)
        elif key.endswith("size") and isinstance(value, int):
            value = human_size(value)
        elif key == "uptime" and isinstance(value, float):
            value = duration(value)
        elif key == "command_line" and value:
            value = shlex.join(value)
        shown[key] = value
    return shown


COMMANDS = [inspect]
