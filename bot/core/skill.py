"""What the router routes to: a :class:`Skill`, the :class:`Command` it declares, and the
:class:`Request` it answers. How a skill is built is the skills' business (``bot.skills``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.core.messages import Message, Reply
from nlp_core.nlu import Understanding


@dataclass(frozen=True)
class Command:
    """A slash command a skill answers, with the line ``/help`` shows for it."""

    name: str
    help: str
    usage: str = ""
    heavy: bool = False


@dataclass
class Request:
    """A message after routing: the parsed command or the NLU's understanding of free text."""

    message: Message
    text: str
    command: str | None = None
    args: str = ""
    understanding: Understanding | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def intent(self) -> str | None:
        if self.command is not None:
            return f"command:{self.command}"
        return self.understanding.intent if self.understanding else None


class Skill(ABC):
    """One capability of the assistant.

    A skill declares the slash ``commands`` it answers and the NLU ``intents`` it serves
    (``"chitchat"``, ``"programming"``, ``"tool:*"``...). It must be safe to call from several
    threads.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    commands: tuple[Command, ...] = ()
    intents: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def handle(self, request: Request) -> list[Reply]:
        """Answer ``request``; raising is allowed (the assistant turns it into an apology)."""

    def late_commands(self) -> tuple[Command, ...]:
        """Commands that are costly to list (they need a registry loaded). The router asks for
        them only when a command is not among the declared ones, or for ``/help``."""
        return ()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, pools) when the assistant shuts down."""
