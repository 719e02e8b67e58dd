"""What a build reports while it runs: plain event objects the front ends render."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildStarted:
    recipe: str
    steps: int
    tests: int
    vm: str


@dataclass(frozen=True)
class StepStarted:
    number: int
    total: int
    title: str


@dataclass(frozen=True)
class StepSkipped:
    number: int
    total: int
    title: str
    reason: str


@dataclass(frozen=True)
class StepFinished:
    number: int
    total: int
    title: str
    seconds: float


@dataclass(frozen=True)
class Output:
    """Bytes from the build: ``source`` is ``console``, ``ssh`` or ``host``."""

    source: str
    data: bytes


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class TestStarted:
    name: str


@dataclass(frozen=True)
class TestPassed:
    name: str
    seconds: float


@dataclass(frozen=True)
class BuildFinished:
    image_id: str
    seconds: float
    tags: tuple[str, ...]


BuildEvent = (BuildStarted | StepStarted | StepSkipped | StepFinished | Output | Note | TestStarted | TestPassed
              | BuildFinished)
