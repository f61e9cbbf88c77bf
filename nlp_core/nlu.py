"""The NLU contract: what the NLP pipeline makes of a message (intent, entities, slots...).

It lives with its producer; the bot's router and skills read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Entity:
    """A span of the text with a label (``LANGUAGE``, ``LIBRARY``, ``ERROR``, ``person``...)."""

    text: str
    label: str
    start: int
    end: int


@dataclass(frozen=True)
class Understanding:
    """What the NLU made of a message.

    ``intent`` is ``chitchat``, ``programming``, ``tool:<name>`` or ``unknown``.
    """

    intent: str
    confidence: float = 1.0
    alternatives: tuple[tuple[str, float], ...] = ()
    language: str | None = None
    #: probability of ``language`` (the tag model's, 0 when no language was predicted)
    language_confidence: float = 0.0
    tags: tuple[str, ...] = ()
    entities: tuple[Entity, ...] = ()
    slots: dict[str, Any] = field(default_factory=dict)
    #: a course tool the text is close to although the intent is not that tool
    suggested_tool: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "language": self.language,
            "language_confidence": round(self.language_confidence, 4),
            "tags": list(self.tags),
            "entities": [e.__dict__ for e in self.entities],
            "slots": self.slots,
            "suggested_tool": self.suggested_tool,
        }


class Understander(Protocol):
    """Anything that turns text into an :class:`Understanding`."""

    def understand(self, text: str) -> Understanding: ...


class NoUnderstanding:
    """The understander used when no NLU is loaded: every text goes to the fallback."""

    def understand(self, text: str) -> Understanding:
        return Understanding(intent="unknown", confidence=0.0)
