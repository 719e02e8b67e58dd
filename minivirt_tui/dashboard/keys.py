"""Views derived from :mod:`.actions`: the footer, the command palette and the ``?`` overlay."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from . import actions
from .actions import Action

# The footer's order: the context's own keys first, then what works anywhere; switching
# tabs, help and quit are always shown, at the end, whatever the width.
PINNED = ("previous_tab", "next_tab", "help", "quit")


def footer_actions(context: str) -> list[Action]:
    """What the footer lists where the focus is (``context``: a pane, ``console`` or ``output``)."""
    if context == "console":
        own = actions.for_pane("console") + actions.for_pane("tabs")
        return [a for a in own if a.footer]
    own = actions.for_pane(context) if context in ("images", "vms", "remotes") else []
    return [a for a in own + actions.for_pane("global") + actions.for_pane("tabs") if a.footer]


def footer_text(items: list[Action], width: int) -> Text:
    """The footer line: as many keys as fit, then ``…``; pinned keys always."""
    pinned = sorted((a for a in items if a.name in PINNED), key=lambda a: PINNED.index(a.name))
    rest = [a for a in items if a.name not in PINNED]

    def parts(group: list[Action]) -> list[Text]:
        out: list[Text] = []
        for i, a in enumerate(group):
            prev = group[i - 1] if i else None
            if prev is not None and a.group and a.group == prev.group:
                out[-1] = Text.assemble((f" {prev.shown_key}/{a.shown_key} ", "bold reverse"), f"{a.group} ")
            else:
                out.append(Text.assemble((f" {a.shown_key} ", "bold reverse"), f"{a.title} "))
        return out

    tail = Text().join(parts(pinned))
    room = width - tail.cell_len
    line = Text()
    pieces = parts(rest)
    for i, piece in enumerate(pieces):
        more = i + 1 < len(pieces)
        if line.cell_len + piece.cell_len + (2 if more else 0) > room:
            line.append(" …")
            break
        line.append_text(piece)
    pad = max(0, width - line.cell_len - tail.cell_len)
    return Text.assemble(line, " " * pad, tail)


class KeysBar(Static):
    """The footer: the keys that work where the focus is, from the declared actions."""

    DEFAULT_CSS = "KeysBar { height: 1; dock: bottom; background: $footer-background; }"

    def __init__(self, context: Callable[[], str], available: Callable[[Action], bool], id: str | None = None):
        super().__init__(id=id)
        self.context = context
        self.available = available

    def on_mount(self) -> None:
        self.watch(self.screen, "focused", lambda _: self.update_keys(), init=False)

    def on_resize(self) -> None:
        self.update_keys()

    def items(self) -> list[Action]:
        return [a for a in footer_actions(self.context()) if self.available(a)]

    def update_keys(self) -> None:
        if self.is_mounted:
            self.update(footer_text(self.items(), self.size.width))


class MivCommands(Provider):
    """Every dashboard action in the command palette, once, with its key; all of them
    with an empty query."""

    def _entries(self) -> list[tuple[str, str, Action]]:
        return [(a.help, f"{a.shown_key}  ·  {actions.PANE_TITLES[a.pane]}", a)
                for a in actions.ACTIONS if a.pane != "console" and a.name != "command_palette"]

    def _run(self, a: Action) -> Callable[[], object]:
        target = a.name if a.pane in ("global", "tabs") else f"app.{a.name}"
        return lambda: self.app.run_action(target)

    async def discover(self) -> Hits:
        for text, help, a in self._entries():
            yield DiscoveryHit(text, self._run(a), help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, help, a in self._entries():
            if (score := matcher.match(f"{text} {a.title}")) > 0:
                yield Hit(score, matcher.highlight(text), self._run(a), help=help)


def help_text() -> str:
    """Every key of every pane, by pane (what the ``?`` overlay shows)."""
    lines = []
    for pane in ("images", "vms", "remotes", "global", "tabs", "console"):
        lines.append(actions.PANE_TITLES[pane])
        for a in actions.for_pane(pane):
            asks = "  (asks first)" if a.confirm else ""
            lines.append(f"  {a.shown_key:>7}  {a.help}{asks}")
        lines.append("")
    lines.append("In a table: ↑ ↓ PgUp PgDn Home End move, a click on a header sorts by it.")
    lines.append("In the filter: type to narrow, Enter keeps the filter, Esc clears it.")
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    """The ``?`` overlay."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog report"):
            yield Label("Keys", classes="dialog-title")
            with VerticalScroll(classes="report-body"):
                yield Static(help_text(), markup=False, id="help-body")

    def action_close(self) -> None:
        self.dismiss(None)
