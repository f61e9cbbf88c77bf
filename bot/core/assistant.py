"""The :class:`Assistant`: the one core every channel talks to."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.core.bus import ReplyBus, ReplyListener
from bot.core.messages import Message, ProgressReply, Reply, TextReply, reply_text
from bot.core.router import Router
from bot.settings import Settings
from bot.storage.models import Event
from bot.storage.store import Store
from nlp_core.nlu import Understander

if TYPE_CHECKING:
    from nlp_core.pipeline import NLP

log = logging.getLogger(__name__)

#: Exchanges kept in memory while the database refuses writes (the oldest go first after).
UNSAVED_MAX = 10_000

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


@dataclass
class Assistant:
    """Turns a :class:`Message` into replies, logging every exchange to the event store.

    ``handle`` is synchronous and thread-safe: channels call it from worker threads so that
    one slow answer never holds up another chat.
    """

    settings: Settings
    router: Router
    store: Store
    bus: ReplyBus
    #: The NLP models the skills answer with (None: commands only).
    nlp: NLP | None = None
    #: Called by :meth:`close`, after the skills (the job manager's shutdown, say).
    on_close: list[Callable[[], None]] = field(default_factory=list)
    #: Marks each answer while it is computed (the instruction model gives way meanwhile).
    answering: Callable[[], AbstractContextManager[object]] = nullcontext
    started_at: float = field(default_factory=time.time)
    #: Why the last exchange could not be stored (None: storage works).
    storage_error: str | None = None
    _unsaved: deque[list[Event]] = field(
        default_factory=lambda: deque(maxlen=UNSAVED_MAX), repr=False)
    _unsaved_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_understander(self, understander: Understander) -> None:
        """Swap in a (newly trained) NLU."""
        self.router.understander = understander

    def handle(self, message: Message) -> list[Reply]:
        """Answer one message. Never raises: failures become an apology and an error event."""
        with self.answering():
            return self._handle(message)

    def _handle(self, message: Message) -> list[Reply]:
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
                "Please try again or rephrase it."
            )]
        if not replies:
            replies = [TextReply("I have nothing to say to that. Try /help.")]
        latency_ms = (time.perf_counter() - started) * 1000.0
        if not (error is None and request.extra.get("unrecorded")):
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
                type="reply", text=reply_text(reply), intent=intent,
                data={"kind": reply.kind} | (
                    {"progress_id": reply.handle.id} if isinstance(reply, ProgressReply) else {}
                ),
                latency_ms=latency_ms,
            ))
        if error is not None:
            events.append(Event(chat_id=message.chat_id, user_id=message.user_id,
                                channel=message.channel, type="error", text="", intent=intent,
                                error=error, latency_ms=latency_ms))
        self.save(events)

    def save(self, events: list[Event]) -> bool:
        """Store ``events`` (after any that could not be stored before); never raises.

        While the database refuses writes (locked, read-only, full), exchanges wait in memory
        (up to :data:`UNSAVED_MAX` of them) and are stored once it takes writes again;
        :attr:`storage_error` says why, for ``amlbot health``.
        """
        with self._unsaved_lock:
            self._unsaved.append(events)
            try:
                while self._unsaved:
                    self.store.append_events(self._unsaved[0])
                    self._unsaved.popleft()
            except Exception as exc:  # noqa: BLE001 - never fail a reply because the log is down
                self.storage_error = f"{type(exc).__name__}: {exc}"[:500]
                log.error("could not store events (%d exchanges wait to be stored): %s",
                          len(self._unsaved), self.storage_error)
                return False
            self.storage_error = None
            return True

    def add_listener(self, listener: ReplyListener) -> Callable[[], None]:
        """Register a channel's callback for later replies (job results); returns a remover."""
        return self.bus.add_listener(listener)

    def notify(self, chat_id: str, replies: Sequence[Reply], *, user_id: str = "",
               channel: str = "") -> int:
        """Push replies to a chat outside of ``handle`` (see :meth:`ReplyBus.notify`)."""
        return self.bus.notify(chat_id, replies, user_id=user_id, channel=channel)

    def close(self) -> None:
        for skill in self.router.skills.values():
            skill.close()
        for hook in self.on_close:
            hook()
        self.store.dispose()
