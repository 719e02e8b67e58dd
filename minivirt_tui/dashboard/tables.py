"""The three panes: images, VMs and remotes, as tables that update in place.

Each table can be filtered (``/``: rows whose text holds every typed word), sorted (a
key cycles the column, a click on a header sorts by it; the header shows ``▲``/``▼``),
and fits its width: optional columns go first, then the flexible one is cut with ``…``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from rich.cells import cell_len
from textual import events
from textual.binding import BindingsMap
from textual.widgets import DataTable

from minivirt_core.fsutil import human_size
from minivirt_core.rows import (
    IMAGE_COLUMNS,
    REMOTE_COLUMNS,
    VM_COLUMNS,
    WARM_COLUMN,
    image_row,
    remote_row,
    vm_row,
    warm_cell,
)

from . import actions
from .state import Snapshot


@dataclass(frozen=True)
class Column:
    """A table column: ``drop`` > 0 may be hidden when narrow (highest first); a ``flex``
    column is cut with ``…`` to fit."""

    title: str
    drop: int = 0
    flex: bool = False


@dataclass(frozen=True)
class Row:
    """A row: its key (an image id, a VM name), its cells, what it sorts by per column."""

    key: str
    cells: tuple[str, ...]
    sort: tuple[Any, ...]

    @cached_property
    def text(self) -> str:
        """What a filter looks in: the key and every cell, lowercase."""
        return (self.key + " " + " ".join(self.cells)).lower()

    def matches(self, words: Sequence[str]) -> bool:
        text = self.text
        return all(w in text for w in words)


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, ending with ``…`` when cut."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    out, used = [], 0
    for ch in text:
        w = cell_len(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


class ResourceTable(DataTable[str]):
    """A row-cursor table whose rows are keyed; re-filled only when what it shows changes."""

    COLUMNS: Sequence[Column] = ()
    PANE = ""  # the actions' pane whose keys work here
    TITLE = ""

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.clock = clock
        self._bindings = BindingsMap.merge([self._bindings, BindingsMap(actions.bindings(self.PANE))])
        self._all: list[Row] = []
        self._rows: list[tuple[str, tuple[str, ...]]] = []  # what is shown: (key, cells)
        self._shown_columns: tuple[str, ...] | None = None
        self._natural: list[int] | None = None  # widest cell per column, over all rows
        self.filter_text = ""
        self.sort_column: int | None = None
        self.sort_reverse = False

    def on_mount(self) -> None:
        self._show()

    # Content -------------------------------------------------------------------

    def set_rows(self, rows: list[Row]) -> None:
        """All rows (filter and sort are applied here)."""
        if rows == self._all:
            return
        self._all = rows
        self._natural = None
        self._show()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._show()

    def sort_by(self, column: int, reverse: bool | None = None) -> None:
        """Sort by ``column``; sorting again by the same column reverses the order."""
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self._show()

    def cycle_sort(self) -> None:
        """The next column (after the last one, the same columns in reverse order)."""
        if self.sort_column is None:
            self.sort_by(0, False)
        elif self.sort_column + 1 < len(self.COLUMNS):
            self.sort_by(self.sort_column + 1, self.sort_reverse)
        else:
            self.sort_by(0, not self.sort_reverse)

    def visible_rows(self) -> list[Row]:
        words = self.filter_text.lower().split()
        rows = [r for r in self._all if r.matches(words)] if words else list(self._all)
        if self.sort_column is not None:
            i = self.sort_column
            rows.sort(key=lambda r: (r.sort[i] is None, r.sort[i] if r.sort[i] is not None else 0),
                      reverse=self.sort_reverse)
        return rows

    @property
    def total(self) -> int:
        return len(self._all)

    # Showing --------------------------------------------------------------------

    def _layout(self) -> tuple[list[int], dict[int, int]]:
        """Which columns show, and the width the flexible one is cut to (if any)."""
        if self._natural is None:  # over every row, not the filtered ones: columns stay put as you type
            self._natural = [max([cell_len(c.title) + 2] + [cell_len(r.cells[i]) for r in self._all])
                             for i, c in enumerate(self.COLUMNS)]
        natural = self._natural
        shown = list(range(len(self.COLUMNS)))
        width = self.scrollable_content_region.width if self.is_mounted else 0
        if width <= 0:
            return shown, {}
        pad = 2 * self.cell_padding
        flex = next((i for i, c in enumerate(self.COLUMNS) if c.flex), None)
        flex_min = min(natural[flex], 12) if flex is not None else 0

        def needed() -> int:
            return sum(natural[i] + pad for i in shown if i != flex) + (flex_min + pad if flex is not None else 0)

        for i in sorted((i for i, c in enumerate(self.COLUMNS) if c.drop), key=lambda i: -self.COLUMNS[i].drop):
            if needed() <= width:
                break
            shown.remove(i)
        cuts: dict[int, int] = {}
        if flex is not None:
            room = width - sum(natural[i] + pad for i in shown if i != flex) - pad
            if room < natural[flex]:
                cuts[flex] = max(room, 3)
        return shown, cuts

    def _label(self, index: int) -> str:
        title = self.COLUMNS[index].title
        if index == self.sort_column:
            title += " ▼" if self.sort_reverse else " ▲"
        return title

    def _show(self) -> None:
        if not self.is_mounted:
            return
        rows = self.visible_rows()
        shown, cuts = self._layout()
        columns = tuple(self._label(i) for i in shown)
        view = [(r.key, tuple(cut(r.cells[i], cuts[i]) if i in cuts else r.cells[i] for i in shown)) for r in rows]
        if view != self._rows or columns != self._shown_columns:
            selected = self.selected_key
            self._rows = view
            if columns != self._shown_columns:
                self.clear(columns=True)
                self.add_columns(*columns)
                self._shown_columns = columns
            else:
                self.clear()
            self._add_all([cells for _, cells in view])
            self._fit_columns()
            keys = [k for k, _ in view]
            if selected in keys:
                self.move_cursor(row=keys.index(selected))
        self._update_title()

    def _add_all(self, rows: list[tuple[str, ...]]) -> None:
        """``add_rows``, in a tenth of its time for 1000 rows: DataTable's ``add_row`` sets
        the cursor (a reactive with watchers) once per row; here it is set once. Rows are
        looked up by index (positional keys). Falls back to ``add_rows`` if the table's
        internals are not the ones this was written against."""
        try:
            from textual.widgets._data_table import Row as TableRow
            from textual.widgets._data_table import RowKey

            locations, data, table_rows, new_rows = self._row_locations, self._data, self.rows, self._new_rows
        except (ImportError, AttributeError):
            self.add_rows(rows)
            return
        if table_rows or not isinstance(table_rows, dict):
            self.add_rows(rows)
            return
        keys = [c.key for c in self.ordered_columns]
        for index, cells in enumerate(rows):
            key = RowKey(None)
            locations[key] = index
            data[key] = dict(zip(keys, cells, strict=True))
            table_rows[key] = TableRow(key, 1, None, False)
            new_rows.add(key)
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if rows and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self._update_count += 1
        self.check_idle()

    def _fit_columns(self) -> None:
        """Size each column to its widest cell. DataTable measures new rows later, on idle,
        and in a real terminal that measurement was sometimes lost at start-up, leaving
        columns as narrow as their labels; it also never narrows a column again."""
        for index, column in enumerate(self.ordered_columns):
            widest = max((cell_len(cells[index]) for _, cells in self._rows), default=0)
            column.content_width = max(cell_len(str(column.label)), widest)

    def _update_title(self) -> None:
        if self.parent is None or not self.TITLE:
            return
        title = self.TITLE
        if self.filter_text:
            title += f" /{self.filter_text} ({len(self._rows)} of {self.total})"
        self.parent.border_title = title  # type: ignore[attr-defined]

    def on_resize(self, event: events.Resize) -> None:
        self._show()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        label = str(event.label)
        for index in range(len(self.COLUMNS)):
            if self._label(index) == label:
                self.sort_by(index)
                return

    def select(self, key: str) -> None:
        """Move the cursor to the row of ``key`` (if it is shown)."""
        keys = [k for k, _ in self._rows]
        if key in keys:
            self.move_cursor(row=keys.index(key))

    @property
    def selected_key(self) -> str | None:
        if not self._rows or self.cursor_row < 0 or self.cursor_row >= len(self._rows):
            return None
        return self._rows[self.cursor_row][0]


class ImagesTable(ResourceTable):
    PANE = "images"
    TITLE = "Images [1]"
    # The CLI's columns (minivirt_core.rows), and how each fits a narrow pane.
    COLUMNS = tuple(Column(t, **fit) for t, fit in zip((*IMAGE_COLUMNS, WARM_COLUMN), (  # type: ignore[arg-type]
        {}, {"flex": True}, {"drop": 3}, {"drop": 1}, {"drop": 2}, {"drop": 4}), strict=True))

    def update_from(self, snap: Snapshot) -> None:
        now = self.clock()
        self.set_rows([Row(i.id, (*image_row(i, now), warm_cell(snap.warm.get(i.id))),
                           (i.id, " ".join(i.tags), i.arch, i.size, -i.created, snap.warm.get(i.id, 0)))
                       for i in snap.images])


class VmsTable(ResourceTable):
    PANE = "vms"
    TITLE = "VMs [2]"
    # The CLI's columns, then live figures; narrow panes drop the least needed first.
    COLUMNS = tuple(Column(t, **fit) for t, fit in zip((*VM_COLUMNS, "CPU%", "RSS"), (  # type: ignore[arg-type]
        {}, {"flex": True}, {}, {"drop": 3}, {"drop": 4}, {"drop": 5}, {"drop": 7}, {"drop": 6},
        {"drop": 8}, {"drop": 9}), strict=True))

    def update_from(self, snap: Snapshot) -> None:
        rows: list[Row] = []
        for v in snap.vms:
            c = v.config
            stats = snap.stats.get(v.name)
            cpu = stats.cpu_percent if stats else None
            rss = stats.rss if stats else None
            cells = (*vm_row(v), f"{cpu:.0f}" if cpu is not None else "-", human_size(rss) if rss else "-")
            rows.append(Row(v.name, cells, (
                v.name, cells[1], v.image_label or "", v.ssh_port, cells[4], c.memory_mb if c else None,
                c.cpus if c else None, v.uptime, cpu, rss)))
        self.set_rows(rows)


class RemotesTable(ResourceTable):
    PANE = "remotes"
    TITLE = "Remotes [3]"
    COLUMNS = tuple(Column(t, **fit) for t, fit in zip(REMOTE_COLUMNS, (  # type: ignore[arg-type]
        {}, {"drop": 1}, {"flex": True}), strict=True))

    def update_from(self, snap: Snapshot) -> None:
        self.set_rows([Row(r.name, remote_row(r), (r.name, r.kind, r.url)) for r in snap.remotes])
