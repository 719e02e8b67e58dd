"""The three panes: images, VMs and remotes, as tables that update in place."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.cells import cell_len
from textual.binding import Binding
from textual.widgets import DataTable

from minivirt_core.fsutil import human_size

from ..render import ago, duration, home_short, vm_state
from .state import Snapshot


class ResourceTable(DataTable[str]):
    """A row-cursor table whose rows are keyed; re-filled only when its content changes."""

    COLUMNS: Sequence[str] = ()

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.clock = clock
        self._rows: list[tuple[str, tuple[str, ...]]] = []

    def on_mount(self) -> None:
        self.add_columns(*self.COLUMNS)

    def set_rows(self, rows: list[tuple[str, tuple[str, ...]]]) -> None:
        if rows == self._rows:
            return
        selected = self.selected_key
        self._rows = rows
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        self._fit_columns()
        keys = [k for k, _ in rows]
        if selected in keys:
            self.move_cursor(row=keys.index(selected))

    def _fit_columns(self) -> None:
        """Size each column to its widest cell. DataTable measures new rows later, on idle,
        and in a real terminal that measurement was sometimes lost at start-up, leaving
        columns as narrow as their labels; it also never narrows a column again."""
        for index, column in enumerate(self.ordered_columns):
            widest = max((cell_len(cells[index]) for _, cells in self._rows), default=0)
            column.content_width = max(cell_len(str(column.label)), widest)

    @property
    def selected_key(self) -> str | None:
        if not self._rows or self.cursor_row < 0 or self.cursor_row >= len(self._rows):
            return None
        return self._rows[self.cursor_row][0]


class ImagesTable(ResourceTable):
    COLUMNS = ("IMAGE ID", "TAGS", "ARCH", "SIZE", "CREATED")
    BINDINGS = [
        Binding("r", "app.run_image", "Run"),
        Binding("c", "app.create_vm", "Create VM"),
        Binding("t", "app.tag_image", "Tag"),
        Binding("u", "app.untag_image", "Untag"),
        Binding("p", "app.push_image", "Push"),
        Binding("s", "app.save_image", "Save"),
        Binding("P", "app.prune", "Prune"),
    ]

    def update_from(self, snap: Snapshot) -> None:
        now = self.clock()
        self.set_rows([
            (i.id, (i.short_id, " ".join(i.tags) or "<none>", i.arch, human_size(i.size), ago(i.created, now)))
            for i in snap.images
        ])


class VmsTable(ResourceTable):
    COLUMNS = ("NAME", "STATE", "IMAGE", "SSH", "PORTS", "MEM", "CPUS", "UPTIME", "CPU%", "RSS")
    BINDINGS = [
        Binding("s", "app.start_vm", "Start"),
        Binding("S", "app.stop_vm", "Stop"),
        Binding("k", "app.kill_vm", "Kill"),
        Binding("d", "app.destroy_vm", "Destroy"),
        Binding("a", "app.attach_console", "Console"),
        Binding("h", "app.ssh_vm", "SSH"),
        Binding("C", "app.commit_vm", "Commit"),
        Binding("y", "app.copy_file", "Copy file"),
    ]

    def update_from(self, snap: Snapshot) -> None:
        rows: list[tuple[str, tuple[str, ...]]] = []
        for v in snap.vms:
            c = v.config
            stats = snap.stats.get(v.name)
            cpu = f"{stats.cpu_percent:.0f}" if stats and stats.cpu_percent is not None else "-"
            rss = human_size(stats.rss) if stats and stats.rss else "-"
            rows.append((v.name, (
                v.name, vm_state(v), v.image_label or "-", str(v.ssh_port or "-"),
                ",".join(str(p) for p in c.ports) if c and c.ports else "-",
                f"{c.memory_mb}M" if c else "-", str(c.cpus) if c else "-",
                duration(v.uptime) if v.uptime is not None else "-", cpu, rss,
            )))
        self.set_rows(rows)


class RemotesTable(ResourceTable):
    COLUMNS = ("NAME", "KIND", "URL")
    BINDINGS = [
        Binding("a", "app.add_remote", "Add"),
        Binding("d", "app.remove_remote", "Remove"),
        Binding("l", "app.pull_image", "Pull"),
    ]

    def update_from(self, snap: Snapshot) -> None:
        self.set_rows([(r.name, (r.name, r.kind, home_short(r.url))) for r in snap.remotes])
