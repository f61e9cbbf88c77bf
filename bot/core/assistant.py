"""The :class:`Assistant`: the one core every channel talks to."""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from bot.core.messages import Message, ProgressReply, Reply, TextReply, reply_text
from bot.core.nlu import Understander
from bot.core.router import Router
from bot.settings import Settings, get_settings
from bot.storage.models import Event
from bot.storage.store import Store

if TYPE_CHECKING:
    from bot.skills.base import Skill
    from nlp_core.pipeline import NLP

log = logging.getLogger(__name__)

#: Called with ``(chat_id, replies)`` for replies that arrive after ``handle`` returned.
ReplyListener = Callable[[str, Sequence[Reply]], None]

_CONTROL = {c: "\ufffd" for c in range(32) if chr(c) not in "\n\t\r"}
_CONTROL[0x7F] = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str, max_chars: int) -> tuple[str, bool]:
    """Make arbitrary input safe to route and store.

    Lone surrogates and control characters become U+FFFD (no database accepts NUL, and
    UTF-8 cannot encode a lone surrogate). Text over ``max_chars`` keeps its head and its tail
    (where a stack trace names its error); the flag says it was cut.
    """
    text = _SURROGATE.sub("\ufffd", text).translate(_CONTROL)
    if len(text) > max_chars:
        tail = max_chars // 4
        return f"{text[:max_chars - tail]}\n…\n{text[-tail:]}", True
    return text, False


class Assistant:
    """Turns a :class:`Message` into replies, logging every exchange to the event store.

    ``handle`` is synchronous and thread-safe: channels call it from worker threads so that
    one slow answer never holds up another chat.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        understander: Understander | None = None,
        skills: Iterable[str] | None = None,
        nlp: NLP | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or Store(self.settings.resolved_database_url)
        self.started_at = time.time()
        self._reply_listeners: list[ReplyListener] = []
        self._listeners_lock = threading.Lock()
        self.nlp_problem: str | None = None
        if nlp is None and self.settings.nlu_enabled:
            from bot.data import MissingDataError
            from nlp_core.pipeline import load_nlp

            try:
                nlp = load_nlp(self.settings)
            except MissingDataError as exc:
                # Commands still work; the NLP skills explain what is missing.
                self.nlp_problem = str(exc)
                log.warning("starting without NLP models: %s", exc)
        self.nlp = nlp
        if understander is None and nlp is not None:
            understander = nlp
        from bot.skills import build_skills

        built = build_skills(self, names=skills)
        built.extend(self._extra_skills())
        self.router = Router(
            built,
            understander,
            clarify="core.clarify",
            intent_threshold=self.settings.intent_threshold,
        )

    def _extra_skills(self) -> list[Skill]:
        """Skills named in ``AMLBOT_EXTRA_SKILLS`` as ``module:factory``."""
        extra: list[Skill] = []
        for spec in self.settings.extra_skills:
            module_name, _, attr = spec.partition(":")
            factory = getattr(importlib.import_module(module_name), attr or "Skill")
            extra.append(factory(self))
        return extra

    def set_understander(self, understander: Understander) -> None:
        """Swap in a (newly trained) NLU."""
        self.router.understander = understander

    def handle(self, message: Message) -> list[Reply]:
        """Answer one message. Never raises: failures become an apology and an error event."""
        started = time.perf_counter()
        text, truncated = clean_text(message.text or "", self.settings.max_message_chars)
        message = Message(
            chat_id=str(message.chat_id)[:64],
            user_id=str(message.user_id)[:64],
            text=text,
            channel=message.channel[:32],
            attachments=message.attachments,
            username=message.username,
        )
        error: str | None = None
        intent: str | None = None
        data: dict[str, Any] = {}
        try:
            request = self.router.parse(message)
            intent = request.intent
            if request.understanding is not None:
                data["nlu"] = request.understanding.to_dict()
            if truncated:
                request.extra["truncated"] = True
            skill = self.router.skill_for(request)
            data["skill"] = skill.name
            replies = skill.handle(request)
            if truncated:
                replies.insert(0, TextReply(
                    f"(Your message was long, so I read its first and last characters, "
                    f"{self.settings.max_message_chars:,} in all.)"
                ))
        except Exception as exc:  # noqa: BLE001 - the user gets an apology, the log the trace
            error_id = uuid.uuid4().hex[:8]
            log.exception("skill failed (error id %s)", error_id)
            error = f"{type(exc).__name__}: {exc}"[:2000]
            replies = [TextReply(
                f"Sorry, something went wrong on my side (error id {error_id}). "
                "Your message is saved; please try again or rephrase it."
            )]
        if not replies:
            replies = [TextReply("I have nothing to say to that. Try /help.")]
        latency_ms = (time.perf_counter() - started) * 1000.0
        self._record(message, replies, intent, data, latency_ms, error)
        return replies

    def _record(
        self,
        message: Message,
        replies: list[Reply],
        intent: str | None,
        data: dict[str, Any],
        latency_ms: float,
        error: str | None,
    ) -> None:
        inbound_data = dict(data)
        if message.username:
            inbound_data["username"] = message.username
        if message.attachments:
            inbound_data["attachments"] = [
                {"kind": a.kind, "bytes": len(a.data), "filename": a.filename}
                for a in message.attachments
            ]
        events = [Event(chat_id=message.chat_id, user_id=message.user_id,
                        channel=message.channel, type="message", text=message.text,
                        intent=intent, data=inbound_data or None)]
        for reply in replies:
            events.append(Event(
                chat_id=message.chat_id, user_id=message.user_id, channel=message.channel,
                type="reply", text=reply_text(reply)[:20_000], intent=intent,
                data={"kind": reply.kind} | (
                    {"progress_id": reply.handle.id} if isinstance(reply, ProgressReply) else {}
                ),
                latency_ms=latency_ms,
            ))
        if error is not None:
            events.append(Event(chat_id=message.chat_id, user_id=message.user_id,
                                channel=message.channel, type="error", text="", intent=intent,
                                error=error, latency_ms=latency_ms))
        try:
            self.store.append_events(events)
        except Exception:  # noqa: BLE001 - never fail a reply because the log is down
            log.exception("could not store events for chat %s", message.chat_id)

    def add_listener(self, listener: ReplyListener) -> Callable[[], None]:
        """Register a channel's callback for later replies (job results); returns a remover.

        Listeners run on the notifying thread (a job pump): they must hand the replies over
        to their channel quickly and ignore chats that are not theirs.
        """
        with self._listeners_lock:
            self._reply_listeners.append(listener)

        def remove() -> None:
            with self._listeners_lock:
                if listener in self._reply_listeners:
                    self._reply_listeners.remove(listener)

        return remove

    def notify(self, chat_id: str, replies: Sequence[Reply], *, user_id: str = "",
               channel: str = "") -> int:
        """Push replies to a chat outside of ``handle`` (e.g. a finished job's results).

        The replies are stored as events and given to every listener; returns how many
        listeners took them (0: no channel is attached, the replies are only stored).
        """
        replies = list(replies)
        events = [Event(chat_id=chat_id, user_id=user_id, channel=channel[:32], type="reply",
                        text=reply_text(reply)[:20_000], data={"kind": reply.kind,
                                                                "later": True})
                  for reply in replies]
        try:
            self.store.append_events(events)
        except Exception:  # noqa: BLE001 - delivering matters more than logging
            log.exception("could not store later replies for chat %s", chat_id)
        with self._listeners_lock:
            listeners = list(self._reply_listeners)
        for listener in listeners:
            try:
                listener(chat_id, replies)
            except Exception:  # noqa: BLE001 - one broken channel must not starve the others
                log.exception("reply listener failed for chat %s", chat_id)
        return len(listeners)

    def close(self) -> None:
        for skill in self.router.skills.values():
            skill.close()
        self.store.dispose()
