"""What a course tool declares: its commands, typed parameters, NLU phrasings and results.

A tool is one module that builds a :class:`ToolSpec` and registers it with
``@tools.register`` (see ``course_tools/__init__.py``). The bot's ``/help``, ``/tools``, the
``amlbot tool`` CLI, parameter validation and the NLU's tool intents are all generated from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class ToolParams(BaseModel):
    """Base of every tool's parameter model: typed, bounded, and strict about unknown keys."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0


class JobCancelled(Exception):
    """Raised inside a tool when its job was cancelled."""


@dataclass
class ToolContext:
    """What a running tool gets: parameters, a progress callback, a cancel check, a work dir."""

    params: ToolParams
    work_dir: Path
    progress: Callable[[float, str], None] = lambda fraction, detail: None
    cancel_event: threading.Event | Any = field(default_factory=threading.Event)

    def report(self, fraction: float, detail: str = "") -> None:
        """Report progress in [0, 1]; raises :class:`JobCancelled` if the job was cancelled."""
        self.check_cancelled()
        self.progress(fraction, detail)

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled()


@dataclass
class ToolResult:
    """What a tool returns. Images are PNG or GIF bytes; artifacts are files in the work dir."""

    text: str
    metrics: dict[str, float] = field(default_factory=dict)
    images: list[tuple[str, bytes]] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)
    follow_up: str | None = None  # e.g. "/play rl.dqn <job id>"


ToolFunc = Callable[[ToolContext], ToolResult]


@dataclass(frozen=True)
class ToolCommand:
    """One thing a tool can do (``train``, ``run``, ``play``...), with its parameter model."""

    name: str
    func: ToolFunc
    params: type[ToolParams]
    help: str
    heavy: bool = True


@dataclass(frozen=True)
class ToolSpec:
    """A course tool's declaration."""

    name: str  # "<course>.<method>", e.g. "rl.dqn"
    course: str
    summary: str
    commands: tuple[ToolCommand, ...]
    examples: tuple[str, ...] = ()  # plain-English phrasings for the intent classifier
    headline_metric: str = ""

    def command(self, name: str) -> ToolCommand:
        for command in self.commands:
            if command.name == name:
                return command
        known = ", ".join(c.name for c in self.commands)
        raise KeyError(f"{self.name} has no command {name!r} (it has: {known})")
