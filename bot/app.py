"""The composition root: the one place that reads :class:`Settings` and builds the assistant.

Everything below the bot gets what it needs from here as arguments: ``nlp_core`` a
:class:`~nlp_core.workspace.Workspace` (data dir, data catalogue, options) and the tools'
phrasings; the course tools, through jobs, their data dir and catalogue; the skills a narrow
:class:`~bot.skills.base.Services`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from bot.core.assistant import Assistant
from bot.core.bus import ReplyBus
from bot.core.router import Router
from bot.core.skill import Skill
from bot.data import DataCatalogue, MissingDataError
from bot.jobs.manager import JobManager
from bot.jobs.policy import AccessPolicy
from bot.settings import Settings, get_settings
from bot.skills import Services, build_skills
from bot.storage.store import Store
from nlp_core.nlu import Understander

if TYPE_CHECKING:
    from nlp_core.pipeline import NLP
    from nlp_core.workspace import Workspace

log = logging.getLogger(__name__)


def workspace(settings: Settings) -> Workspace:
    """What ``nlp_core`` reads and writes, and its options, from the settings."""
    from nlp_core.workspace import Workspace

    return Workspace(
        data_dir=settings.data_dir, data=DataCatalogue(settings.data_dir),
        chitchat_backend=settings.chitchat_backend, chitchat_pairs=settings.chitchat_pairs,
        thread_index_limit=settings.thread_index_limit,
        tags_use_embeddings=settings.tags_use_embeddings,
        encoder_backend=settings.encoder_backend, intent_threshold=settings.intent_threshold,
    )


def tool_examples() -> dict[str, list[str]]:
    """Each registered course tool's phrasings, for the intent model."""
    from course_tools import load_tools

    return load_tools().examples()


def load_nlp(settings: Settings, *, quiet: bool = False) -> NLP:
    """The NLP bundle the settings ask for (trained where missing)."""
    from nlp_core.pipeline import load_nlp as load

    return load(workspace(settings), tool_examples=tool_examples(), quiet=quiet)


def build_assistant(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    understander: Understander | None = None,
    skills: Iterable[str] | None = None,
    nlp: NLP | None = None,
) -> Assistant:
    """The assistant the settings describe: storage, NLP (unless off), jobs and skills."""
    from course_tools import load_tools

    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = store or Store(settings.resolved_database_url)
    nlp_problem: str | None = None
    if nlp is None and settings.nlu_enabled:
        try:
            nlp = load_nlp(settings)
        except MissingDataError as exc:
            # Commands still work; the NLP skills explain what is missing.
            nlp_problem = str(exc)
            log.warning("starting without NLP models: %s", exc)
    if understander is None and nlp is not None:
        understander = nlp
    router = Router(understander=understander, clarify="core.clarify",
                    intent_threshold=settings.intent_threshold)
    bus = ReplyBus(store)
    jobs = JobManager(settings, store)
    services = Services(
        store=store, bus=bus, router=router, nlp=nlp, nlp_problem=nlp_problem, jobs=jobs,
        load_tools=load_tools,
        access=AccessPolicy(admins=frozenset(settings.admins),
                            heavy_commands_open=settings.heavy_commands_open,
                            user_job_quota=settings.user_job_quota),
        max_concurrent_jobs=settings.max_concurrent_jobs,
    )
    for skill in [*build_skills(services, names=skills), *_extra_skills(settings, services)]:
        router.add(skill)
    assistant = Assistant(settings, router, store, bus, nlp=nlp, on_close=[jobs.close])
    services.started_at = assistant.started_at
    return assistant


def _extra_skills(settings: Settings, services: Services) -> list[Skill]:
    """Skills named in ``AMLBOT_EXTRA_SKILLS`` as ``module:factory`` (called with services)."""
    extra: list[Skill] = []
    for spec in settings.extra_skills:
        module_name, _, attr = spec.partition(":")
        factory = getattr(importlib.import_module(module_name), attr or "Skill")
        extra.append(factory(services))
    return extra
