"""The composition root: the one place that reads :class:`Settings` and builds the assistant.

Everything below the bot gets what it needs from here as arguments: ``nlp_core`` a
:class:`~nlp_core.workspace.Workspace` (data dir, data catalogue, options) and the tools'
phrasings; the course tools, through jobs, their data dir and catalogue; the skills a narrow
:class:`~bot.skills.base.Services`.
"""

from __future__ import annotations

import functools
import gc
import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.core.assistant import Assistant
from bot.core.bus import ReplyBus
from bot.core.router import Router
from bot.core.skill import Skill
from bot.jobs.manager import JobManager
from bot.jobs.policy import AccessPolicy
from bot.jobs.records import JobRecords
from bot.settings import Settings, get_settings
from bot.skills import Services, build_skills
from bot.storage.store import Store
from nlp_core.nlu import Understander

# What only the NLU-on start needs (the data catalogue, the instruction model) is imported
# where it is used, so that a start without it does not pay for it.
if TYPE_CHECKING:
    from bot.generation import Generator
    from course_tools import ToolRegistry
    from nlp_core.llm import ModelSource
    from nlp_core.pipeline import NLP
    from nlp_core.workspace import Workspace

log = logging.getLogger(__name__)

#: Seconds between two retention sweeps.
RETENTION_SWEEP_EVERY = 6 * 3600.0


def workspace(settings: Settings) -> Workspace:
    """What ``nlp_core`` reads and writes, and its options, from the settings."""
    from bot.data import DataCatalogue
    from nlp_core.workspace import Workspace

    return Workspace(
        data_dir=settings.data_dir, data=DataCatalogue(settings.data_dir),
        chitchat_backend=settings.chitchat_backend, chitchat_pairs=settings.chitchat_pairs,
        thread_index_limit=settings.thread_index_limit,
        tags_use_embeddings=settings.tags_use_embeddings,
        encoder_backend=settings.encoder_backend, intent_threshold=settings.intent_threshold,
    )


def load_tools() -> ToolRegistry:
    """The course tools' registry. course_tools is imported here, when the registry is first
    needed, rather than on the start path."""
    from course_tools import load_tools as load

    return load()


def tool_examples() -> dict[str, list[str]]:
    """Each registered course tool's phrasings, for the intent model."""
    return load_tools().examples()


def startup_over() -> None:
    """Turn the garbage collector back on, with everything built so far frozen out of its sight.

    ``amlbot`` (:func:`bot.cli.main.run`) turns it off while it imports and builds the
    assistant: start-up makes a few hundred thousand objects that live as long as the process,
    and collecting while they are made only scans them again and again (about 35 ms of a
    0.4 s console start). Frozen, they are skipped by the collections on the answer path too.
    Called when the assistant is built, and before anything that may train for minutes. A
    no-op when the collector is on (tests, other entry points).
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def load_nlp(settings: Settings, *, quiet: bool = False) -> NLP:
    """The NLP bundle the settings ask for (trained where missing)."""
    from nlp_core.pipeline import load_nlp as load

    startup_over()  # training makes garbage for minutes: collect it
    return load(workspace(settings), tool_examples=tool_examples(), quiet=quiet)


def build_assistant(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    understander: Understander | None = None,
    skills: Iterable[str] | None = None,
    nlp: NLP | None = None,
    generator: Generator | None = None,
) -> Assistant:
    """The assistant the settings describe: storage, NLP (unless off), the instruction model
    (unless off, or ``generator`` is given), jobs and skills."""
    settings = settings or get_settings()
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StartupError(f"the data dir {settings.data_dir} cannot be created: "
                           f"{error.strerror or error}") from None
    if store is None:
        store = open_store(settings)
    nlp_problem: str | None = None
    if nlp is None and settings.nlu_enabled:
        from bot.data import MissingDataError
        from nlp_core.integrity import DamagedModelError

        try:
            nlp = load_nlp(settings)
        except MissingDataError as exc:
            # Commands still work; the NLP skills explain what is missing.
            nlp_problem = str(exc)
            log.warning("starting without NLP models: %s", exc)
        except DamagedModelError as exc:
            raise StartupError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - one clear line rather than a traceback
            log.debug("the NLP models did not load", exc_info=True)
            raise StartupError(f"the NLP models did not load: {type(exc).__name__}: {exc} "
                               "(run with --verbose for the trace)") from None
    if understander is None and nlp is not None:
        understander = nlp
    llm_problem: str | None = None
    if generator is None and nlp is not None:
        generator, llm_problem = start_llm(settings, store)
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
        max_jobs_per_user=settings.max_jobs_per_user,
        generator=generator, llm_problem=llm_problem, llm_answers=settings.llm_answers,
        chitchat_backend=settings.chitchat_backend,
    )
    for skill in [*build_skills(services, names=skills), *_extra_skills(settings, services)]:
        router.add(skill)
    on_close: list[Callable[[], None]] = [jobs.close]
    if generator is not None:
        on_close.append(generator.llm.close)
    if settings.retention_days:
        on_close.insert(0, keep_for(settings.retention_days, store, jobs.records))
    # Each message marks its answer, so that the instruction model gives way meanwhile.
    gate = generator.llm.answers_first if generator is not None else None
    assistant = Assistant(settings, router, store, bus, nlp=nlp, on_close=on_close,
                          answering=gate.answering if gate is not None else nullcontext)
    services.started_at = assistant.started_at
    return assistant


#: Seconds after the start before the instruction model begins to load: its imports hold the
#: interpreter, and the first answer after a start took 2.3 s instead of 1.5 s beside them.
LLM_LOAD_AFTER_S = 3.0


def start_llm(settings: Settings, store: Store) -> tuple[Generator | None, str | None]:
    """The instruction model, loading in the background (None, and why, when it is off or
    unusable: the bot then answers by retrieval alone, as before)."""
    if settings.llm_answers == "off" and settings.chitchat_backend != "llm":
        return None, "generated answers are off (AMLBOT_LLM_ANSWERS=off)"
    from bot.generation import Generator, llm_weights_path
    from bot.skills.nlp import CLOSE_MATCH
    from nlp_core.llm import AnswersFirst, LLMService, WeightsError, resolve_model
    from nlp_core.llm.weights import packaged_model_in_place, part_paths
    from nlp_core.threads import thread_bodies

    checked = settings.data_dir / "models" / "llm" / "checked.json"
    try:
        source: ModelSource | Callable[[], ModelSource]
        if settings.llm_model == "packaged":
            path = llm_weights_path(settings.data_dir)
            if packaged_model_in_place(path):
                # The size here; the sha256 when the file was joined (or by `amlbot llm fetch`).
                source = resolve_model(path, checked=checked)
            else:
                part_paths()  # a missing part is said now; joining waits for the loader
                log.info("the packaged model's parts are joined into %s in the background "
                         "(once, a few seconds)", path)
                source = functools.partial(_join_packaged, path, checked)
        else:
            source = resolve_model(Path(settings.llm_model).expanduser(), checked=checked)
    except WeightsError as error:
        problem = f"generated answers are off: {error}"
        log.warning("%s; the bot answers by retrieval", problem)
        return None, problem
    llm = LLMService(source, dtype=settings.llm_dtype, threads=settings.llm_threads,
                     max_new_tokens=settings.llm_max_new_tokens,
                     timeout_s=settings.llm_timeout,
                     max_queued_per_user=settings.llm_max_queued_per_user,
                     cache_dir=settings.data_dir / "models" / "llm" / "cache",
                     answers_first=AnswersFirst()).start(after_s=LLM_LOAD_AFTER_S)
    ws = workspace(settings)
    return Generator(llm, store, lambda: thread_bodies(ws), min_score=CLOSE_MATCH), None


def _join_packaged(path: Path, checked: Path) -> ModelSource:
    """The packaged model joined from its parts at ``path`` (checked by sha256), resolved."""
    from nlp_core.llm import assemble_packaged_model, resolve_model

    return resolve_model(assemble_packaged_model(path), checked=checked)


def keep_for(days: int, store: Store, records: JobRecords) -> Callable[[], None]:
    """Delete stored messages and finished jobs older than ``days``, now and every few hours
    (``AMLBOT_RETENTION_DAYS``); returns the function that stops it."""
    stop = threading.Event()

    def sweep() -> None:
        while not stop.is_set():
            cutoff = datetime.now(UTC) - timedelta(days=days)
            try:
                events, jobs = store.forget_before(cutoff), records.forget_before(cutoff)
                if events or jobs:
                    log.info("retention: deleted %d events and %d jobs older than %d days",
                             events, jobs, days)
            except Exception:  # noqa: BLE001 - try again at the next sweep
                log.exception("retention sweep failed")
            stop.wait(RETENTION_SWEEP_EVERY)

    threading.Thread(target=sweep, name="amlbot-retention", daemon=True).start()
    return stop.set


class StartupError(RuntimeError):
    """The assistant cannot start; the message says why and what to do (one line)."""


def open_store(settings: Settings) -> Store:
    """The event store, migrated; a database that cannot be used is a :class:`StartupError`,
    and one that takes no writes (read-only, locked) an ERROR in the log: the bot still
    answers, and says nothing is saved."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.settings import redact_url

    where = redact_url(settings.resolved_database_url)
    try:
        store = Store(settings.resolved_database_url)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise StartupError(f"the database {where} cannot be used: {reason}. Fix or move it "
                           "away, or point AMLBOT_DATABASE_URL at another one.") from None
    problem = store.write_problem()
    if problem:
        log.error("the database %s takes no writes (%s): conversations will not be saved "
                  "until it does", where, problem)
    return store


def _extra_skills(settings: Settings, services: Services) -> list[Skill]:
    """Skills named in ``AMLBOT_EXTRA_SKILLS`` as ``module:factory`` (called with services)."""
    extra: list[Skill] = []
    for spec in settings.extra_skills:
        module_name, _, attr = spec.partition(":")
        factory = getattr(importlib.import_module(module_name), attr or "Skill")
        extra.append(factory(services))
    return extra
