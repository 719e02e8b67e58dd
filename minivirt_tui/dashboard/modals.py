"""Modal screens: a form for input, a confirmation for destructive actions, a report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static


@dataclass(frozen=True)
class Field:
    """One input of a :class:`FormModal`: free text, or a choice among ``options``."""

    name: str
    label: str
    value: str = ""
    placeholder: str = ""
    options: tuple[str, ...] = field(default_factory=tuple)
    required: bool = True
    check: Callable[[str], object] | None = None  # raises (MinivirtError, ValueError) when invalid




class FormModal(ModalScreen[dict[str, str] | None]):
    """Ask for a few values; dismisses with ``{name: value}``, or None when cancelled."""

    # Enter submits from any field, a dropdown included (unless its list is open).
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("enter", "submit", "Submit", priority=True)]

    def __init__(self, title: str, fields: list[Field], submit: str = "OK") -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.submit_label = submit
        self.cursor_blink = True

    def on_mount(self) -> None:
        for widget in self.query(Input):
            widget.cursor_blink = self.cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            for f in self.fields:
                yield Label(f.label, classes="field-label")
                if f.options:
                    yield Select([(o, o) for o in f.options], value=f.value or f.options[0], allow_blank=False,
                                 id=f"field-{f.name}")
                else:
                    yield Input(value=f.value, placeholder=f.placeholder, id=f"field-{f.name}")
            yield Label("", id="form-error", classes="form-error")
            with Horizontal(classes="buttons"):
                yield Button(self.submit_label, variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def values(self) -> dict[str, str]:
        result = {}
        for f in self.fields:
            widget = self.query_one(f"#field-{f.name}")
            value = widget.value if isinstance(widget, (Input, Select)) else ""
            result[f.name] = "" if value is Select.BLANK else str(value).strip()
        return result

    def error(self, text: str) -> None:
        """Show what is wrong; the form stays open with what was typed."""
        self.query_one("#form-error", Label).update(text)

    def _submit(self) -> None:
        values = self.values()
        missing = [f.label for f in self.fields if f.required and not values[f.name]]
        if missing:
            self.error(f"Please fill in: {', '.join(missing)}")
            return
        for f in self.fields:
            if f.check is not None and values[f.name]:
                try:
                    f.check(values[f.name])
                except Exception as e:  # MinivirtError or ValueError: the message says what is wrong
                    self.error(f"{f.label}: {getattr(e, 'message', None) or e}")
                    self.query_one(f"#field-{f.name}").focus()
                    return
        self.dismiss(values)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "submit":
            from textual.widgets._select import SelectOverlay

            focused = self.focused
            if isinstance(focused, (SelectOverlay, Button)):
                return False  # an open dropdown takes Enter to choose; a button presses itself
        return True

    def action_submit(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmModal(ModalScreen[bool]):
    """Ask before a destructive action; y/enter confirms, n/escape cancels."""

    BINDINGS = [Binding("y", "confirm", "Yes"), Binding("n,escape", "cancel", "No")]

    def __init__(self, question: str, confirm: str = "Yes", details: str = "") -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm
        self.details = details

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            if self.details:
                with VerticalScroll(classes="confirm-details"):
                    yield Static(self.details, markup=False, id="confirm-details")
            with Horizontal(classes="buttons"):
                yield Button(self.confirm_label, variant="error", id="confirm")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


def describe(value: Any, indent: int = 0) -> str:
    """A JSON-like value as indented ``key: value`` lines (the inspect view)."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(describe(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for v in value:
            if isinstance(v, (dict, list)) and v:
                body = describe(v, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {_scalar(v)}")
        return "\n".join(lines)
    return pad + _scalar(value)


def _scalar(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (dict, list)):
        return "none"
    return str(v)


class ReportModal(ModalScreen[None]):
    """A scrollable report (fsck, doctor) or an error with its details."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, body: str, error: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog report" + (" -error" if self.error else "")):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(classes="report-body"):
                yield Static(self.body, markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Close", variant="primary", id="close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
