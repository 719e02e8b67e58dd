"""Shell completion (bash, zsh, fish, through click) of what the database holds: VM names,
image references, remote names, and recipe files.

Each function reads only folder listings or ``remotes.json``: a TAB must answer at once,
and never creates the database.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click
    from click.shell_completion import CompletionItem

SHELLS = ("bash", "zsh", "fish")


def _db() -> Any:
    from minivirt_core.database import Database

    return Database()  # $MINIVIRT_DB_PATH etc.; not ensured: a TAB never creates it


def _items(words: list[str], incomplete: str, help: str | None = None) -> list[CompletionItem]:
    from click.shell_completion import CompletionItem

    return [CompletionItem(w, help=help) for w in sorted(set(words)) if w.startswith(incomplete)]


def _listing(folder: Any) -> list[os.DirEntry[str]]:
    try:
        return [e for e in os.scandir(folder) if not e.name.startswith(".")]
    except OSError:
        return []


def vm_name_list() -> list[str]:
    """The names of the database's VMs."""
    return [e.name for e in _listing(_db().vms_dir) if e.is_dir(follow_symlinks=False)]


def image_ref_list() -> list[str]:
    """The tags of the database's images, then their short ids."""
    from minivirt_core.images import SHORT_ID
    from minivirt_core.names import is_image_id

    entries = _listing(_db().images_dir)
    tags = [e.name for e in entries if e.is_symlink()]
    ids = [e.name[:SHORT_ID] for e in entries if is_image_id(e.name)]
    return tags + ids


def vm_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete a VM name."""
    return _items(vm_name_list(), incomplete, "VM")


def image_refs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete an image reference: a tag or a short id."""
    return _items(image_ref_list(), incomplete, "image")


def vm_names_and_image_refs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete what ``miv inspect`` takes: a VM name or an image reference."""
    return vm_names(ctx, param, incomplete) + image_refs(ctx, param, incomplete)


def copy_paths(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete an argument of ``miv cp``: ``VM:`` for each VM, and the host's files (the
    shell completes those). A path inside a VM is not completed (that would need the VM)."""
    from click.shell_completion import CompletionItem

    if ":" in incomplete:
        return []
    vms = [CompletionItem(f"{n}:", help="VM") for n in sorted(vm_name_list()) if n.startswith(incomplete)]
    return [*vms, CompletionItem(incomplete, type="file")]


def tags(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete an existing tag (``miv untag``)."""
    return _items([e.name for e in _listing(_db().images_dir) if e.is_symlink()], incomplete, "tag")


def remote_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete the name of a configured remote."""
    from minivirt_core.database import read_json

    raw = read_json(_db().remotes_file)
    return _items([k for k in raw if isinstance(k, str)] if isinstance(raw, dict) else [], incomplete, "remote")


def recipe_files(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete a recipe: ``*.yaml``/``*.yml`` files, and folders to descend into."""
    from click.shell_completion import CompletionItem

    folder, _, start = incomplete.rpartition("/")
    base = os.path.expanduser(folder + "/" if folder else ".")
    prefix = folder + "/" if folder else ""
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return []
    items = []
    for entry in entries:
        if not entry.name.startswith(start) or (entry.name.startswith(".") and not start.startswith(".")):
            continue
        if entry.is_dir():
            items.append(CompletionItem(prefix + entry.name + "/", type="plain"))
        elif entry.name.endswith((".yaml", ".yml")):
            items.append(CompletionItem(prefix + entry.name, type="plain", help="recipe"))
    return items


def script(shell: str, prog_name: str = "miv") -> str:
    """The completion script ``eval``'d by ``shell`` (what ``miv completion SHELL`` prints)."""
    import click
    from click.shell_completion import get_completion_class

    from .cli import main

    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"unknown shell {shell!r}")
    complete_var = "_" + prog_name.replace("-", "_").upper() + "_COMPLETE"
    return str(cls(main, {}, prog_name, complete_var).source())
