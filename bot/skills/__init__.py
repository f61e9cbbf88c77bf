"""The skill registry. Every built-in skill module is imported here, and only here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from bot.registry import Registry
from bot.skills.base import Command, Request, Skill

if TYPE_CHECKING:
    from bot.core.assistant import Assistant

skills: Registry[type[Skill]] = Registry("skill")


def _register_builtins() -> None:
    from bot.skills import basic, nlp, tools  # noqa: F401


def build_skills(assistant: Assistant, names: Iterable[str] | None = None) -> list[Skill]:
    """Instantiate the registered skills (all of them, or just ``names``)."""
    _register_builtins()
    wanted = list(names) if names is not None else skills.names()
    return [skills.get(name)(assistant) for name in wanted]


__all__ = ["Command", "Request", "Skill", "build_skills", "skills"]
