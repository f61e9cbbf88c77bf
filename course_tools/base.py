"""What a course tool declares: its commands, typed parameters, NLU phrasings and results.

A tool is one module that builds a :class:`ToolSpec` and registers it with
``course_tools.register`` (see ``course_tools/__init__.py``). The bot's ``/help``, ``/tools``,
the ``amlbot tool`` CLI, parameter validation and the NLU's tool intents are all generated
from it. A running tool sees the world only through its :class:`ToolContext`: the bot hands
it the data dir, the data catalogue, the user's files and the tool's per-chat memory; nothing
here reads settings or the environment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class ToolParams(BaseModel):
    """Base of every tool's parameter model: typed, bounded, and strict about unknown keys."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="random seed")


P = TypeVar("P", bound=ToolParams)


class JobCancelled(Exception):
    """Raised inside a tool when its job was cancelled."""


class ToolInputError(ValueError):
    """Raised by a tool for input it cannot use (a broken photo, an unknown dataset...).

    The message is shown to the user as it is, so it should say what to do instead.
    """


class DataFiles(Protocol):
    """The registered data files: the local path of one, or an error saying how to fetch it."""

    def require(self, relpath: str) -> Path: ...


@dataclass(frozen=True)
class Resources:
    """What one run of a command needs. The Ray runner reserves it; locally, ``cpus`` caps the
    worker's threads."""

    cpus: float = 1.0
    memory_mb: int = 0  # 0: no reservation
    gpus: float = 0.0


@dataclass(frozen=True)
class InputFile:
    """A file the user sent with the request (a photo, usually), already size-checked."""

    name: str
    data: bytes
    mime_type: str | None = None


def serial_map(func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[func(item) for item in items]``: how a job fans out when no cluster is at hand."""
    return [func(item) for item in items]


@dataclass
class ToolContext(Generic[P]):
    """What a running tool gets.

    * ``params``: its parameters, validated once where the request was read (typed: a tool
      function takes ``ToolContext[ItsParams]``);
    * ``work_dir``: this job's own directory (results, checkpoints);
    * ``data_dir``: the bot's data dir, for models and caches shared between jobs;
    * ``data``: the data catalogue (``data.require("so_tags/train.tsv")``);
    * ``inputs``: the files sent with the request;
    * ``memory``: this tool's JSON-able state for this chat, saved by the bot when the job
      succeeds (what ``/remember`` learns, for example);
    * ``find_job``: the work dir of another of this user's jobs, by id (for ``/play``);
    * ``fan_out(func, items)``: ``[func(item) for item in items]``, run as Ray tasks when the
      bot runs jobs on Ray (``func`` must be a module-level function; both must pickle);
    * ``progress`` and ``cancel_event``: see :meth:`report`.
    """

    params: P
    work_dir: Path
    progress: Callable[[float, str], None] = lambda fraction, detail: None
    cancel_event: threading.Event | Any = field(default_factory=threading.Event)
    data_dir: Path | None = None
    data: DataFiles | None = None
    inputs: tuple[InputFile, ...] = ()
    memory: dict[str, Any] = field(default_factory=dict)
    find_job: Callable[[str], Path] | None = None
    fan_out: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]] = serial_map

    def report(self, fraction: float, detail: str = "") -> None:
        """Report progress in [0, 1]; raises :class:`JobCancelled` if the job was cancelled."""
        self.check_cancelled()
        self.progress(fraction, detail)

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled()

    def require(self, relpath: str) -> Path:
        """The local path of a registered data file (see :class:`DataFiles`)."""
        if self.data is None:
            raise ToolInputError(f"this tool needs the data file {relpath}, but no data "
                                 "catalogue was given to it")
        return self.data.require(relpath)

    def shared_dir(self, *parts: str) -> Path:
        """A directory under the data dir that jobs share (a model cache), created."""
        base = self.data_dir if self.data_dir is not None else self.work_dir.parent.parent
        path = base.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class ToolResult:
    """What a tool returns. Images are PNG or GIF bytes; artifacts are files in the work dir."""

    text: str
    metrics: dict[str, float] = field(default_factory=dict)
    images: list[tuple[str, bytes]] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)
    follow_up: str | None = None  # e.g. "/play rl.dqn <job id>"


@dataclass(frozen=True)
class ToolCommand(Generic[P]):
    """One thing a tool can do (``train``, ``run``, ``play``...), with its parameter model.

    ``positional`` names the parameters a bare word may fill, in order (``/remember alice``).
    ``needs_image``: the command reads a photo from the request, and is refused without one.
    """

    name: str
    func: Callable[[ToolContext[P]], ToolResult]
    params: type[P]
    help: str
    heavy: bool = True
    resources: Resources = Resources()
    positional: tuple[str, ...] = ()
    needs_image: bool = False


@dataclass(frozen=True)
class ChatCommand:
    """A slash command that starts one of the tool's commands directly.

    ``ChatCommand("remember", "remember", "Remember the face in this photo as NAME",
    usage="/remember NAME")`` makes ``/remember alice`` mean ``vision.faces remember
    name=alice`` (with ``positional=("name",)`` on that command).
    """

    name: str
    command: str
    help: str
    usage: str = ""


@dataclass(frozen=True)
class ToolSpec:
    """A course tool's declaration.

    ``cli_name``: when set, a command called ``evaluate`` is also ``amlbot eval <cli_name>``
    and a command called ``bench`` is ``amlbot bench <cli_name>``.
    """

    name: str  # "<course>.<method>", e.g. "rl.dqn"
    course: str
    summary: str
    commands: tuple[ToolCommand[Any], ...]
    examples: tuple[str, ...] = ()  # plain-English phrasings for the intent classifier
    headline_metric: str = ""
    chat_commands: tuple[ChatCommand, ...] = ()
    cli_name: str | None = None

    def command(self, name: str) -> ToolCommand[Any]:
        for command in self.commands:
            if command.name == name:
                return command
        known = ", ".join(c.name for c in self.commands)
        raise KeyError(f"{self.name} has no command {name!r} (it has: {known})")

    def default_command(self, verb: str | None = None) -> ToolCommand[Any]:
        """The command a request names only by verb: ``/train`` -> ``train``; with no verb
        (``/run``, an NLU request, ``amlbot tool run``): ``run``, else ``train``, else the
        first."""
        names = [c.name for c in self.commands]
        for wanted in ([verb] if verb else ["run", "train"]):
            if wanted in names:
                return self.command(wanted)
        if verb:
            raise KeyError(f"{self.name} has no {verb} command (it has: {', '.join(names)})")
        return self.commands[0]
