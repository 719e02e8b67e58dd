"""Every dashboard action, declared once.

An :class:`Action` says where a key works (its pane), what it is called, what it does
and whether it asks first. The key bindings of the app and of each pane, the footer,
the command palette and the ``?`` help overlay are all derived from :data:`ACTIONS`,
so they cannot drift apart.

Adding an action is one entry plus its function::

    # here, in ACTIONS:
    Action("snapshot_vm", "n", "vms", "Snapshot", "Save the selected VM's running state"),

    # and a method on the app (or on the pane's mixin, e.g. actions_vms.VmActions):
    def action_snapshot_vm(self) -> None:
        if name := self.selected("vms", "VM"):
            self.operation(f"snapshot {name}", ...)

That is all: the key works in the VMs pane, shows in its footer, in the palette and in
the help overlay. ``name`` is the method's name without ``action_``; for pane actions
and global ones the method lives on the app, for ``console`` ones on the console widget.
Set ``confirm=True`` when the function asks before it acts (the help says so),
``footer=False`` for keys that only the help and the palette need to list, and the same
``group`` for neighbours the footer shows as one item (``M-←/M-→ Tabs``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding

# Where an action's key works. Pane actions work when that pane has the focus; global
# ones everywhere but in a console (which sends keys to the VM); "tabs" ones everywhere,
# the console included; "console" ones only in a console.
PANES = ("images", "vms", "remotes", "global", "tabs", "console")
PANE_TITLES = {"images": "Images pane", "vms": "VMs pane", "remotes": "Remotes pane", "global": "Anywhere",
               "tabs": "Anywhere (even in a console)", "console": "In a console"}


@dataclass(frozen=True)
class Action:
    """One thing the dashboard does.

    ``key`` is a Textual key (``"S"``, ``"ctrl+x"``; several separated by commas, the
    first is the one shown). ``title`` is the footer's word, ``help`` the sentence of
    the palette and the help overlay.
    """

    name: str
    key: str
    pane: str
    title: str
    help: str
    confirm: bool = False
    footer: bool = True
    group: str = ""  # actions of one group show as one footer item: their keys, then the group


    def __post_init__(self) -> None:
        if self.pane not in PANES:
            raise ValueError(f"action {self.name}: unknown pane {self.pane!r} (one of {', '.join(PANES)})")

    @property
    def shown_key(self) -> str:
        """The key as the footer and the help show it."""
        return key_display(self.key.split(",")[0])

    def binding(self) -> Binding:
        """The Textual binding: on a pane it calls the app's method; a console's is its own."""
        target = self.name if self.pane in ("console", "global", "tabs") else f"app.{self.name}"
        return Binding(self.key, target, self.title, show=False, priority=self.pane in ("tabs", "console"),
                       key_display=self.shown_key)


_DISPLAY = {"ctrl+right_square_bracket": "^]", "question_mark": "?", "slash": "/", "escape": "Esc",
            "shift+pageup": "S-PgUp", "shift+pagedown": "S-PgDn", "alt+left": "M-←", "alt+right": "M-→"}


def key_display(key: str) -> str:
    """``ctrl+x`` -> ``^x``, the way terminals write keys."""
    if key in _DISPLAY:
        return _DISPLAY[key]
    if key.startswith("ctrl+"):
        return "^" + key[5:]
    return key


ACTIONS: list[Action] = [
    # Images pane
    Action("run_image", "r", "images", "Run", "Run the selected image in a throw-away VM, with its console"),
    Action("create_vm", "c", "images", "Create", "Create a VM from the selected image"),
    Action("tag_image", "t", "images", "Tag", "Tag the selected image"),
    Action("untag_image", "u", "images", "Untag", "Remove a tag of the selected image"),
    Action("push_image", "p", "images", "Push", "Push the selected image to a remote"),
    Action("save_image", "s", "images", "Save", "Save the selected image to a tar file"),
    Action("inspect_image", "i", "images", "Inspect", "Inspect the selected image: id, tags, config, VMs"),
    Action("prune", "P", "images", "Prune", "Remove images no tag and no VM uses", confirm=True),
    # VMs pane
    Action("start_vm", "s", "vms", "Start", "Start the selected VM"),
    Action("stop_vm", "S", "vms", "Stop", "Stop the selected VM (ACPI power-down, then forced)"),
    Action("kill_vm", "k", "vms", "Kill", "Kill the selected VM's QEMU"),
    Action("destroy_vm", "d", "vms", "Destroy", "Destroy the selected VM and its disk", confirm=True),
    Action("attach_console", "a", "vms", "Console", "Attach the selected VM's serial console"),
    Action("ssh_vm", "h", "vms", "SSH", "Open an SSH session to the selected VM"),
    Action("inspect_vm", "i", "vms", "Inspect", "Inspect the selected VM: config, ports, pid, paths"),
    Action("commit_vm", "C", "vms", "Commit", "Commit the selected (stopped) VM as an image"),
    Action("copy_file", "y", "vms", "Copy", "Copy a file to or from the selected VM"),
    Action("save_snapshot", "n", "vms", "Snapshot",
           "Save a named snapshot of the selected VM (with its memory while it runs; it keeps running)"),
    Action("restore_snapshot", "R", "vms", "Restore", "Bring the selected VM back to one of its snapshots",
           confirm=True),
    Action("remove_snapshot", "X", "vms", "Rm snapshot", "Delete one of the selected VM's snapshots",
           confirm=True, footer=False),
    Action("add_port", "p", "vms", "Add port",
           "Forward a port of 127.0.0.1 into the selected VM (at once if it runs, and at every start)"),
    Action("remove_port", "x", "vms", "Rm port", "Remove one of the selected VM's port forwards", footer=False),
    # Remotes pane
    Action("add_remote", "a", "remotes", "Add", "Add a remote"),
    Action("remove_remote", "d", "remotes", "Remove", "Forget the selected remote", confirm=True),
    Action("pull_image", "l", "remotes", "Pull", "Pull an image from the selected remote"),
    Action("remote_tags", "i", "remotes", "Tags",
           "List the selected remote's tags (a registry's repositories and tags, where it allows listing)"),
    # Anywhere but a console
    Action("filter", "slash", "global", "Filter", "Filter the focused pane as you type (Esc clears)"),
    Action("sort", "o", "global", "Sort", "Sort the focused pane by its next column (again: reverse)"),
    Action("build", "b", "global", "Build", "Build an image from a recipe"),
    Action("cache_file", "K", "global", "Cache file",
           "Put a file into the download cache as the download of a URL (air-gapped machines)", footer=False),
    Action("fsck", "f", "global", "fsck", "Check the database (fsck)", footer=False),
    Action("doctor", "D", "global", "Doctor", "Doctor: what this host has", footer=False),
    Action("focus('images')", "1", "global", "Images", "Focus the Images pane", footer=False),
    Action("focus('vms')", "2", "global", "VMs", "Focus the VMs pane", footer=False),
    Action("focus('remotes')", "3", "global", "Remotes", "Focus the Remotes pane", footer=False),
    Action("focus_output", "4", "global", "Output", "Focus the output tab (a console takes the keys)",
           footer=False),
    Action("close_tab", "w", "global", "Close tab", "Close the output tab shown", footer=False),
    Action("cancel_job", "ctrl+x", "global", "Cancel job", "Cancel the job whose tab is shown"),
    Action("help", "question_mark", "global", "Help", "Every key of every pane"),
    Action("quit", "q", "global", "Quit", "Quit (VMs keep running; asks if jobs are running)", confirm=True),
    # Anywhere, a console included
    Action("previous_tab", "alt+left", "tabs", "Prev tab", "Show the previous output tab", group="Tabs"),
    Action("next_tab", "alt+right", "tabs", "Next tab", "Show the next output tab", group="Tabs"),
    Action("command_palette", "ctrl+p", "tabs", "Palette", "Every action, searchable"),
    # In a console
    Action("leave", "ctrl+right_square_bracket", "console", "Leave console",
           "Give the keys back to the dashboard"),
    Action("scroll_back", "shift+pageup", "console", "Scroll back", "Scroll back through the console's history"),
    Action("scroll_forward", "shift+pagedown", "console", "Scroll fwd", "Scroll forward (typing returns live)"),
]


def for_pane(pane: str, actions: Iterable[Action] | None = None) -> list[Action]:
    """The actions of one pane, in declaration order."""
    return [a for a in (ACTIONS if actions is None else actions) if a.pane == pane]


def bindings(pane: str) -> list[Binding]:
    """The Textual bindings of one pane (read at construction, so a new entry counts)."""
    return [a.binding() for a in for_pane(pane)]


def find(name: str) -> Action | None:
    """The action called ``name``."""
    for a in ACTIONS:
        if a.name == name:
            return a
    return None
