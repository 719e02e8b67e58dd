"""Safe YAML with line numbers: values plus a map from their path to the line they are on.

Only YAML's standard tags are accepted; any other tag (``!!python/object/apply`` and
friends) is an error found while composing, so nothing is ever constructed from it.
Aliases are counted while composing, before anything is expanded: a document that would
expand to more than :data:`MAX_VALUES` values (a "billion laughs" file), nests deeper
than :data:`MAX_DEPTH`, or refers to itself is an error at once, in time and memory
proportional to the file's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidInput

SAFE_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:timestamp",
}

PathKey = tuple[Any, ...]

MAX_DEPTH = 64  # nesting levels; the shipped recipes use fewer than 10
MAX_VALUES = 20_000  # scalars, lists and mappings once aliases are expanded; recipes have hundreds


class Source:
    """A parsed YAML document: its data and where each value came from."""

    def __init__(self, filename: str, data: Any, lines: dict[PathKey, int]) -> None:
        self.filename = filename
        self.data = data
        self.lines = lines

    def line(self, path: PathKey) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def error(self, path: PathKey, message: str, hint: str | None = None) -> InvalidInput:
        return InvalidInput(f"{self.filename}:{self.line(path)}: {message}", hint=hint)


def _convert(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], filename: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)  # a key's own line wins over its value's
    if node.tag not in SAFE_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise InvalidInput(
            f"{filename}:{node.start_mark.line + 1}: the YAML tag {tag} is not allowed in a recipe",
            hint="Recipes are plain data: strings, numbers, lists and mappings.",
        )
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, (*path, "<key>"), lines, filename)
            if not isinstance(key, str):
                raise InvalidInput(f"{filename}:{key_node.start_mark.line + 1}: keys must be strings, not {key!r}")
            if key in result:
                raise InvalidInput(f"{filename}:{key_node.start_mark.line + 1}: the key {key!r} appears twice")
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, (*path, key), lines, filename)
        lines.pop((*path, "<key>"), None)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, filename) for i, item in enumerate(node.value)]
    return yaml.SafeLoader.construct_object(_SCALARS, node)  # type: ignore[arg-type]


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing under :data:`MAX_DEPTH` and :data:`MAX_VALUES`.

    Each node's expanded size (itself plus its children's, an alias counting as the
    whole node it names) is known as soon as it is composed, so an explosion is caught
    at the first node that crosses the limit, before any value is built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open: list[str | None] = []  # the anchors of the nodes being composed (depth = its length)
        self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self._open:
            raise yaml.composer.ComposerError(
                None, None, f"the alias *{event.anchor} refers to a value that contains it", event.start_mark)
        if len(self._open) >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"values are nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self._open.append(getattr(event, "anchor", None))
        try:
            node: yaml.Node = super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._open.pop()
        if id(node) in self._sizes:
            return node  # an alias: counted by its parent
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        size = 1 + sum(self._sizes[id(child)] for child in children)
        if size > MAX_VALUES:
            raise yaml.composer.ComposerError(
                None, None, f"this value expands to more than {MAX_VALUES} values (through YAML aliases?); "
                "a recipe is much smaller", node.start_mark)
        self._sizes[id(node)] = size
        return node


class _ScalarConstructor(yaml.SafeLoader):
    def __init__(self) -> None:  # no stream: only used to construct scalar nodes
        yaml.constructor.SafeConstructor.__init__(self)


_SCALARS = _ScalarConstructor()


def parse(text: str, filename: str) -> Source:
    """Parse ``text``; a syntax error or an unsafe tag becomes :class:`InvalidInput` with the line."""
    try:
        node = yaml.compose(text, Loader=_BoundedLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise InvalidInput(f"{filename}:{line}: invalid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise InvalidInput(f"{filename}: invalid YAML: {e}") from e
    lines: dict[PathKey, int] = {}
    if node is None:
        return Source(filename, None, {(): 1})
    return Source(filename, _convert(node, (), lines, filename), lines)


def read(path: Path) -> Source:
    """Parse the YAML file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise InvalidInput(f"{path}: no such recipe file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read the recipe: {e}") from e
    return parse(text, str(path))
