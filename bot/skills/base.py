"""How a built-in skill is made: from the assistant's :class:`Services`, never the whole
assistant. ``bot.app`` builds the services and then the skills."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.core.bus import ReplyBus
from bot.core.router import Router
from bot.core.skill import Command, Request, Skill
from bot.jobs.policy import AccessPolicy
from bot.registry import Registry
from bot.storage.store import Store

if TYPE_CHECKING:
    from bot.generation import Generator
    from bot.jobs.manager import JobManager
    from course_tools import ToolRegistry
    from nlp_core.pipeline import NLP


@dataclass
class Services:
    """What a skill may use: the event store, the later-replies bus, the router's list of
    commands, the NLP models (or why there are none), the job manager and the tools."""

    store: Store
    bus: ReplyBus
    router: Router
    nlp: NLP | None = None
    nlp_problem: str | None = None
    jobs: JobManager | None = None
    load_tools: Callable[[], ToolRegistry] | None = None
    access: AccessPolicy = AccessPolicy()
    max_jobs_per_user: int = 3
    #: The instruction model (None: off or unusable, ``llm_problem`` says why).
    generator: Generator | None = None
    llm_problem: str | None = None
    llm_answers: str = "off"
    chitchat_backend: str = "retrieval"
    started_at: float = field(default_factory=time.time)


class BaseSkill(Skill):
    """A skill built from :class:`Services`, as every built-in skill is."""

    def __init__(self, services: Services) -> None:
        self.services = services


SkillFactory = Callable[[Services], Skill]

#: Every built-in skill, by name (``bot/skills/__init__.py`` imports their modules).
skills: Registry[SkillFactory] = Registry("skill")

__all__ = ["BaseSkill", "Command", "Request", "Services", "Skill", "SkillFactory", "skills"]
