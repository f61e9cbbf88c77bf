"""The :class:`ReplyBus`: replies that reach a chat after its message was answered."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from bot.core.messages import Reply, reply_text
from bot.storage.models import Event
from bot.storage.store import Store

log = logging.getLogger(__name__)

#: Called with ``(chat_id, replies)`` for replies that arrive after ``handle`` returned.
ReplyListener = Callable[[str, Sequence[Reply]], None]
L = TypeVar("L")


class Listeners(Generic[L]):
    """A thread-safe list of callbacks: :meth:`add` returns a remover, :meth:`snapshot` the
    callbacks to call now (outside the lock)."""

    def __init__(self) -> None:
        self._items: list[L] = []
        self._lock = threading.Lock()

    def add(self, listener: L) -> Callable[[], None]:
        with self._lock:
            self._items.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._items:
                    self._items.remove(listener)

        return remove

    def snapshot(self) -> list[L]:
        with self._lock:
            return list(self._items)


class ReplyBus:
    """Stores later replies (a finished job's results) and hands them to every channel."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._listeners: Listeners[ReplyListener] = Listeners()
        self._on_attach: Listeners[Callable[[], None]] = Listeners()

    def add_listener(self, listener: ReplyListener) -> Callable[[], None]:
        """Register a channel's callback for later replies; returns a remover.

        Listeners run on the notifying thread (a job pump): they must hand the replies over
        to their channel quickly and ignore chats that are not theirs. Whatever waited for a
        channel (see :meth:`on_attach`) is sent now, from a thread of its own.
        """
        remove = self._listeners.add(listener)
        hooks = self._on_attach.snapshot()
        if hooks:
            threading.Thread(target=lambda: [hook() for hook in hooks],
                             name="amlbot-attach", daemon=True).start()
        return remove

    def on_attach(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook`` each time a channel attaches: the moment to send what could not be
        delivered while none was (a job that ended while the bot was down)."""
        return self._on_attach.add(hook)

    def notify(self, chat_id: str, replies: Sequence[Reply], *, user_id: str = "",
               channel: str = "") -> int:
        """Push replies to a chat outside of ``handle``.

        The replies are stored as events and given to every listener; returns how many
        listeners took them (0: no channel is attached, the replies are only stored).
        """
        replies = list(replies)
        events = [Event(chat_id=chat_id, user_id=user_id, channel=channel[:32], type="reply",
                        text=reply_text(reply), data={"kind": reply.kind,
                                                                "later": True})
                  for reply in replies]
        try:
            self.store.append_events(events)
        except Exception:  # noqa: BLE001 - delivering matters more than logging
            log.exception("could not store later replies for chat %s", chat_id)
        listeners = self._listeners.snapshot()
        for listener in listeners:
            try:
                listener(chat_id, replies)
            except Exception:  # noqa: BLE001 - one broken channel must not starve the others
                log.exception("reply listener failed for chat %s", chat_id)
        return len(listeners)
