"""The skill registry. Every built-in skill module is imported here, and only here."""

from __future__ import annotations

from collections.abc import Iterable

from bot.skills.base import BaseSkill, Command, Request, Services, Skill, skills


def _register_builtins() -> None:
    from bot.skills import basic, nlp, privacy, tools  # noqa: F401


def build_skills(services: Services, names: Iterable[str] | None = None) -> list[Skill]:
    """Instantiate the registered skills (all of them, or just ``names``)."""
    _register_builtins()
    wanted = list(names) if names is not None else skills.names()
    return [skills.get(name)(services) for name in wanted]


__all__ = ["BaseSkill", "Command", "Request", "Services", "Skill", "build_skills", "skills"]
