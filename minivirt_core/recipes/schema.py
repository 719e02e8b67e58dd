"""The recipe format, validated before anything runs.

Top level: ``from`` (base image), ``memory``, ``cpus``, ``steps``, ``tests`` (and
``name``/``description``, for people). A step is ``uses`` + ``with`` (+ ``name``,
``if_arch``, ``timeout``). Unknown keys are errors, and a near miss is named
("did you mean 'download'?").
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..vms import DEFAULT_CPUS, parse_memory
from . import paths
from .placeholders import fill
from .yamlsource import PathKey, Source, read

DEFAULT_BUILD_MEMORY = 1024

# uses -> (required keys of `with`, optional keys of `with`)
STEP_KINDS: dict[str, tuple[set[str], set[str]]] = {
    "create_disk_image": ({"size"}, {"filename", "attach"}),
    "download": ({"url"}, {"filename", "resize", "attach", "sha256"}),
    "cloud_init_iso": ({"cloud_config"}, {"filename", "attach"}),
    "run_console": ({"steps"}, set()),
    "run": ({"steps"}, {"wait_for_ssh"}),
    "detach": ({"filename"}, set()),
    "host": ({"run"}, {"filename", "attach"}),
    "copy": ({"src", "dest"}, {"wait_for_ssh"}),
}
STEP_KEYS = {"uses", "with", "name", "if_arch", "timeout"}
CONSOLE_KEYS = {"send", "wait", "timeout", "name", "if_arch", "uses", "with"}
CONSOLE_USES = {"ssh_poweroff", "create_disk_image", "download", "cloud_init_iso", "detach", "host"}
SSH_KEYS = {"run", "name", "if_arch", "continue_on_error", "timeout", "uses", "with"}
SSH_USES: dict[str, tuple[set[str], set[str]] | None] = {"copy": ({"src", "dest"}, set())}
TEST_KEYS = {"name", "run", "expect", "timeout"}
TOP_KEYS = {"from", "memory", "cpus", "steps", "tests", "name", "description"}
ATTACH_TYPES = ("disk", "cdrom")
ARCHES = ("x86_64", "aarch64")
STRING_KEYS = {"size", "filename", "url", "resize", "sha256", "cloud_config", "run", "src", "dest", "send", "wait",
               "expect", "name", "if_arch", "from", "description"}


def edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) that turn ``a`` into ``b``."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def suggest(word: str, choices: set[str] | list[str]) -> str:
    """`` — did you mean 'x'?`` for the nearest choice (typos, swapped letters), or nothing."""
    scored = sorted((edit_distance(word.lower(), c), c) for c in choices)
    if scored and scored[0][0] <= max(1, len(word) // 3):
        return f" — did you mean {scored[0][1]!r}?"
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return f" — did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Step:
    """One top-level step: ``uses`` a kind with its ``with`` settings."""

    number: int  # 1-based, as people count
    uses: str
    settings: dict[str, Any]
    name: str | None = None
    if_arch: str | None = None
    timeout: float | None = None
    path: PathKey = ()

    @property
    def title(self) -> str:
        return self.name or f"uses: {self.uses}"


@dataclass(frozen=True)
class Test:
    """A check run over SSH in a fresh VM of the new image."""

    name: str
    run: str
    expect: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Recipe:
    """A validated recipe."""

    path: Path
    source: Source = field(repr=False)
    base: str | None
    memory_mb: int
    cpus: int
    steps: tuple[Step, ...]
    tests: tuple[Test, ...]

    @property
    def directory(self) -> Path:
        return self.path.parent


class _Checker:
    def __init__(self, source: Source, directory: Path) -> None:
        self.source = source
        self.directory = directory  # the recipe's folder

    def fail(self, path: PathKey, message: str, hint: str | None = None) -> Exception:
        return self.source.error(path, message, hint)

    def mapping(self, value: Any, path: PathKey, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"{what} must be a mapping (key: value lines)")
        return value

    def keys(self, value: dict[str, Any], allowed: set[str], path: PathKey, where: str) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), f"{where}: unknown key {key!r}{suggest(key, allowed)}",
                                hint=f"Allowed here: {', '.join(sorted(allowed))}.")

    def scalars(self, value: dict[str, Any], path: PathKey, where: str) -> None:
        for key, item in value.items():
            if key in STRING_KEYS and item is not None and not isinstance(item, str):
                raise self.fail((*path, key), f"{where}: {key!r} must be text, not {type(item).__name__}",
                                hint=f'Quote the value: {key}: "{item}"')
            if key == "timeout" and (isinstance(item, bool) or not isinstance(item, (int, float)) or item <= 0):
                raise self.fail((*path, key), f"{where}: 'timeout' must be a positive number of seconds")
            if key == "if_arch" and item not in ARCHES:
                raise self.fail((*path, key), f"{where}: if_arch must be one of {', '.join(ARCHES)}")
            if key == "continue_on_error" and not isinstance(item, bool):
                raise self.fail((*path, key), f"{where}: 'continue_on_error' must be true or false")
            if key == "wait_for_ssh" and (isinstance(item, bool) or not isinstance(item, (int, float))):
                raise self.fail((*path, key), f"{where}: 'wait_for_ssh' must be a number of seconds")
            if key == "attach":
                attach = self.mapping(item, (*path, key), f"{where}: 'attach'")
                self.keys(attach, {"type"}, (*path, key), f"{where}: 'attach'")
                if attach.get("type") not in ATTACH_TYPES:
                    raise self.fail((*path, key), f"{where}: attach type must be one of {', '.join(ATTACH_TYPES)}")
            if key == "sha256" and isinstance(item, str) and (len(item) != 64 or not set(item.lower()) <= set(
                    "0123456789abcdef")):
                raise self.fail((*path, key), f"{where}: 'sha256' must be 64 hex digits")
            if isinstance(item, str):
                self.file_reference(key, fill(item), (*path, key), where)

    def file_reference(self, key: str, value: str, path: PathKey, where: str) -> None:
        """A ``filename`` must stay in the build folder; a ``src`` or ``file:`` URL in the
        recipe's folder (checked again when the step runs: files can change meanwhile)."""
        if key == "filename" and (problem := paths.build_file_problem(value)):
            raise self.fail(path, f"{where}: 'filename' {problem}", hint=paths.BUILD_FILE_HINT)
        if key == "src" and (problem := paths.recipe_file(self.directory, value)[1]):
            raise self.fail(path, f"{where}: 'src' {problem}", hint=paths.RECIPE_FILE_HINT)
        if key == "url" and value.startswith("file:") and (problem := paths.file_url(self.directory, value)[1]):
            raise self.fail(path, f"{where}: 'url' {problem}", hint=paths.RECIPE_FILE_HINT)

    def kind(self, uses: Any, allowed: set[str], path: PathKey, where: str) -> str:
        if not isinstance(uses, str) or not uses:
            raise self.fail(path, f"{where}: 'uses' must name a step kind")
        if uses not in allowed:
            raise self.fail(path, f"{where}: unknown step kind {uses!r}{suggest(uses, allowed)}",
                            hint=f"Step kinds here: {', '.join(sorted(allowed))}.")
        return uses

    def with_block(self, step: dict[str, Any], uses: str, spec: tuple[set[str], set[str]], path: PathKey,
                   where: str) -> dict[str, Any]:
        required, optional = spec
        settings = self.mapping(step.get("with") or {}, (*path, "with"), f"{where}: 'with'")
        self.keys(settings, required | optional, (*path, "with"), f"{where}: 'with'")
        for key in sorted(required):
            if key not in settings:
                raise self.fail((*path, "with") if "with" in step else path,
                                f"{where}: missing required key {key!r} in 'with'")
        self.scalars(settings, (*path, "with"), where)
        if uses == "download" and "filename" not in settings and isinstance(settings["url"], str):
            name = paths.download_name(fill(settings["url"]))
            if problem := paths.build_file_problem(name):
                raise self.fail((*path, "with", "url"), f"{where}: the file this download writes: {problem}",
                                hint="Give the step a 'filename'.")
        return settings

    def nested_steps(self, steps: Any, path: PathKey, outer: str, label: str, allowed: set[str],
                     uses: dict[str, tuple[set[str], set[str]] | None], needs: tuple[str, ...]) -> None:
        """Check the ``steps`` of a ``run_console`` (console steps) or ``run`` (SSH steps).

        ``uses`` maps the step kinds allowed inside to their ``with`` spec (None: no
        ``with``); a step that uses none of them needs one of the ``needs`` keys."""
        if not isinstance(steps, list) or not steps:
            raise self.fail(path, f"{outer}: 'steps' must be a non-empty list")
        for i, raw in enumerate(steps):
            p = (*path, i)
            where = f"{outer}, {label} {i + 1}"
            step = self.mapping(raw, p, where)
            self.keys(step, allowed, p, where)
            self.scalars(step, p, where)
            if "uses" in step:
                kind = self.kind(step["uses"], set(uses), (*p, "uses"), where)
                if (spec := uses[kind]) is not None:
                    self.with_block(step, kind, spec, p, f"{where} ({kind})")
            elif not any(key in step for key in needs):
                raise self.fail(p, f"{where}: needs {', '.join(repr(k) for k in needs)} or 'uses'")
            if "wait" in step:
                _check_regex(self, step["wait"], (*p, "wait"), where)


def _check_regex(checker: _Checker, pattern: str, path: PathKey, where: str) -> None:
    import re

    try:
        re.compile(pattern)
    except re.error as e:
        raise checker.fail(path, f"{where}: {pattern!r} is not a valid regular expression: {e}") from e


def validate(source: Source, path: Path) -> Recipe:
    """Check a parsed recipe completely; raise :class:`InvalidInput` at the first problem."""
    c = _Checker(source, path.parent)
    top = c.mapping(source.data, (), "a recipe")
    c.keys(top, TOP_KEYS, (), "recipe")
    c.scalars({k: v for k, v in top.items() if k in ("from", "name", "description")}, (), "recipe")
    try:
        memory = parse_memory(top.get("memory", DEFAULT_BUILD_MEMORY))
    except Exception as e:
        raise c.fail(("memory",), f"recipe: {e}") from e
    cpus = top.get("cpus", DEFAULT_CPUS)
    if isinstance(cpus, bool) or not isinstance(cpus, int) or not 1 <= cpus <= 64:
        raise c.fail(("cpus",), "recipe: 'cpus' must be a whole number from 1 to 64")
    raw_steps = top.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise c.fail(("steps",), "recipe: 'steps' must be a non-empty list")
    steps = []
    for i, raw in enumerate(raw_steps):
        p: PathKey = ("steps", i)
        step = c.mapping(raw, p, f"step {i + 1}")
        uses_name = step.get("uses")
        where = f"step {i + 1}" + (f" ({uses_name})" if isinstance(uses_name, str) else "")
        c.keys(step, STEP_KEYS, p, where)
        if "uses" not in step:
            raise c.fail(p, f"{where}: missing required key 'uses'")
        uses = c.kind(step["uses"], set(STEP_KINDS), (*p, "uses"), f"step {i + 1}")
        c.scalars({k: v for k, v in step.items() if k != "with"}, p, where)
        settings = c.with_block(step, uses, STEP_KINDS[uses], p, where)
        if uses == "run_console":
            inner = {kind: (None if kind == "ssh_poweroff" else STEP_KINDS[kind]) for kind in CONSOLE_USES}
            c.nested_steps(settings["steps"], (*p, "with", "steps"), where, "console step", CONSOLE_KEYS, inner,
                           ("send", "wait"))
        elif uses == "run":
            c.nested_steps(settings["steps"], (*p, "with", "steps"), where, "SSH step", SSH_KEYS, dict(SSH_USES),
                           ("run",))
        steps.append(Step(i + 1, uses, settings, step.get("name"), step.get("if_arch"), step.get("timeout"), p))
    tests = []
    raw_tests = top.get("tests") or []
    if not isinstance(raw_tests, list):
        raise c.fail(("tests",), "recipe: 'tests' must be a list")
    for i, raw in enumerate(raw_tests):
        p = ("tests", i)
        test = c.mapping(raw, p, f"test {i + 1}")
        c.keys(test, TEST_KEYS, p, f"test {i + 1}")
        c.scalars(test, p, f"test {i + 1}")
        if "run" not in test:
            raise c.fail(p, f"test {i + 1}: missing required key 'run'")
        if "expect" in test:
            _check_regex(c, test["expect"], (*p, "expect"), f"test {i + 1}")
        tests.append(Test(test.get("name") or f"test {i + 1}", test["run"], test.get("expect"), test.get("timeout")))
    return Recipe(path, source, top.get("from"), memory, cpus, tuple(steps), tuple(tests))


def load_recipe(path: Path | str) -> Recipe:
    """Read and validate the recipe at ``path``."""
    path = Path(path)
    return validate(read(path), path.absolute())
