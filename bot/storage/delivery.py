"""The Telegram channel's durable state: the inbox of updates, the outbox of replies, the
messages that show progress, and heartbeats. Every query of the delivery path is here.

An update is stored (owned by the process that received it) before Telegram is told it
arrived; its replies are stored in the same transaction that marks it done; a sender then
delivers the outbox in order, chat by chat. A process whose owner died (``kill -9``) leaves
pending rows behind, which a live process adopts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, false, func, or_, select, update

from bot.storage.models import Event, utcnow
from bot.storage.store import Store, clean_db_json, clean_db_text, dialect_insert
from bot.storage.telegram_models import Heartbeat, OutboxMessage, ProgressMessage, TelegramUpdate

#: Outbox states of a message not yet sent (``sending``: a try is in flight).
UNSENT = ("pending", "sending")
#: Keys of an update whose value is a message with a ``chat``.
_MESSAGE_KEYS = ("message", "edited_message", "channel_post", "edited_channel_post",
                 "business_message", "edited_business_message")


@dataclass(frozen=True)
class OutItem:
    """One message to send, before it is stored: ``kind`` is text, photo, animation,
    document, progress (a message later edited) or edit (of a progress message)."""

    kind: str
    text: str = ""
    filename: str | None = None
    data: bytes | None = None
    progress_id: str | None = None
    #: Index of the reply (in its batch) this message carries, to link it to its event.
    reply: int | None = None


@dataclass(frozen=True)
class Outgoing:
    """A stored message waiting to be sent."""

    id: int
    chat_id: int
    kind: str
    text: str
    filename: str | None
    data: bytes | None
    progress_id: str | None
    attempts: int


@dataclass(frozen=True)
class PendingUpdate:
    """A stored update this process has yet to answer."""

    update_id: int
    chat_id: int | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class OutboxStats:
    """How far behind the outbox is."""

    pending: int
    oldest_pending_at: datetime | None
    failed: int
    uncertain: int = 0


@dataclass(frozen=True)
class Adopted:
    """What a live process took over from dead ones."""

    updates: int
    messages: int
    #: Messages that were being sent when their process died: not sent again.
    uncertain: list[int]


@dataclass(frozen=True)
class Beat:
    """A process's last heartbeat."""

    name: str
    component: str
    started_at: datetime
    beat_at: datetime
    data: dict[str, Any]


def aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def update_chat_id(payload: Mapping[str, Any]) -> int | None:
    """The chat an update belongs to (None for kinds without one)."""
    for key in _MESSAGE_KEYS:
        message = payload.get(key)
        if isinstance(message, Mapping):
            chat = message.get("chat")
            if isinstance(chat, Mapping) and isinstance(chat.get("id"), int):
                return int(chat["id"])
    return None


class DeliveryStore:
    """The inbox, outbox, progress messages and heartbeats of one bot process (``owner``)."""

    def __init__(self, store: Store, owner: str) -> None:
        self.store = store
        self.owner = owner

    # --- the inbox -----------------------------------------------------------------------

    def receive(self, payloads: Sequence[Mapping[str, Any]]) -> list[PendingUpdate]:
        """Store updates in one transaction (owned by this process); returns the new ones.

        An update already stored (Telegram sent it again, maybe to another process) is left
        alone. When this returns, the updates may be confirmed to Telegram.
        """
        fresh: list[PendingUpdate] = []
        now = utcnow()
        with self.store.session() as session:
            insert = dialect_insert(session)
            for raw in payloads:
                payload = clean_db_json(dict(raw))
                update_id = int(payload["update_id"])
                chat_id = update_chat_id(payload)
                values = {"update_id": update_id, "chat_id": chat_id, "payload": payload,
                          "status": "pending", "owner": self.owner, "received_at": now}
                if insert is None:
                    if session.get(TelegramUpdate, update_id) is not None:
                        continue
                    session.add(TelegramUpdate(**values))
                    session.flush()
                else:
                    stored = session.execute(
                        insert(TelegramUpdate).values(**values)
                        .on_conflict_do_nothing(index_elements=["update_id"])
                        .returning(TelegramUpdate.update_id)
                    ).first()
                    if stored is None:  # stored before
                        continue
                fresh.append(PendingUpdate(update_id, chat_id, payload))
        return fresh

    def next_offset(self) -> int | None:
        """The ``getUpdates`` offset that confirms every stored update (None: none stored)."""
        with self.store.session() as session:
            newest = session.scalar(select(func.max(TelegramUpdate.update_id)))
        return None if newest is None else int(newest) + 1

    def pending_updates(self, limit: int = 1000) -> list[PendingUpdate]:
        """This process's unanswered updates, oldest first."""
        with self.store.session() as session:
            rows = session.execute(
                select(TelegramUpdate.update_id, TelegramUpdate.chat_id, TelegramUpdate.payload)
                .where(TelegramUpdate.status == "pending", TelegramUpdate.owner == self.owner)
                .order_by(TelegramUpdate.update_id).limit(limit)
            ).all()
        return [PendingUpdate(int(u), None if c is None else int(c), dict(p)) for u, c, p in rows]

    def finish_update(self, update_id: int, chat_id: int | None, items: Sequence[OutItem],
                      events: Sequence[Event] = ()) -> bool:
        """Mark an update answered and store its replies (and log events) in one transaction.

        Returns False, storing nothing, when the update is no longer this process's to answer
        (already answered, or adopted by another process that took this one for dead).
        """
        with self.store.session() as session:
            marked = session.execute(
                update(TelegramUpdate)
                .where(TelegramUpdate.update_id == update_id,
                       TelegramUpdate.owner == self.owner,
                       TelegramUpdate.status == "pending")
                .values(status="done", done_at=utcnow())
            )
            if marked.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if events:
                self.store.add_events(session, events)
            if chat_id is not None and items:
                replies = [event.id for event in events if event.type == "reply"]
                self._add_items(session, chat_id, items, update_id=update_id, events=replies)
        return True

    def fail_update(self, update_id: int, error: str) -> None:
        """Give up on an update that cannot be handled (unreadable, say)."""
        with self.store.session() as session:
            session.execute(
                update(TelegramUpdate)
                .where(TelegramUpdate.update_id == update_id, TelegramUpdate.status == "pending")
                .values(status="failed", done_at=utcnow(), error=clean_db_text(error)[:2000])
            )

    # --- the outbox ----------------------------------------------------------------------

    def enqueue(self, chat_id: int, items: Sequence[OutItem]) -> list[int]:
        """Store messages to send that answer no update (a finished job's results)."""
        with self.store.session() as session:
            return self._add_items(session, chat_id, items, update_id=None, events=[])

    def _add_items(self, session: Any, chat_id: int, items: Sequence[OutItem], *,
                   update_id: int | None, events: Sequence[int]) -> list[int]:
        now = utcnow()
        rows = [
            OutboxMessage(
                chat_id=chat_id, owner=self.owner, update_id=update_id,
                event_id=(events[item.reply] if item.reply is not None
                          and item.reply < len(events) else None),
                kind=item.kind, text=clean_db_text(item.text), filename=item.filename,
                data=item.data, progress_id=item.progress_id, status="pending", attempts=0,
                created_at=now,
            )
            for item in items
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]

    def pending_chats(self) -> list[int]:
        """Chats with messages this process has yet to send."""
        with self.store.session() as session:
            chats = session.scalars(
                select(OutboxMessage.chat_id).distinct()
                .where(OutboxMessage.status == "pending", OutboxMessage.owner == self.owner)
            ).all()
        return [int(chat) for chat in chats]

    def next_messages(self, chat_id: int, limit: int = 10) -> list[Outgoing]:
        """A chat's next messages to send, in order."""
        with self.store.session() as session:
            rows = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.chat_id == chat_id, OutboxMessage.status == "pending",
                       OutboxMessage.owner == self.owner)
                .order_by(OutboxMessage.id).limit(limit)
            ).all()
        return [Outgoing(row.id, int(row.chat_id), row.kind, row.text, row.filename, row.data,
                         row.progress_id, row.attempts) for row in rows]

    def mark_sent(self, row_id: int, message_id: int | None) -> None:
        """Record a delivered message, log it as a ``delivered`` event, and, for a progress
        message or an edit of one, remember the message that now shows its handle."""
        now = utcnow()
        with self.store.session() as session:
            row = session.get(OutboxMessage, row_id)
            if row is None or row.status == "sent":
                return
            row.status, row.sent_at, row.message_id = "sent", now, message_id
            if row.kind in ("progress", "edit") and row.progress_id and message_id is not None:
                self._remember_progress(session, row.progress_id, int(row.chat_id), message_id)
            session.add(_delivery_event(row, "delivered", now))

    def mark_failed(self, row_id: int, error: str) -> None:
        """Give up on one message Telegram refuses (logged as an ``undelivered`` event)."""
        with self.store.session() as session:
            row = session.get(OutboxMessage, row_id)
            if row is None or row.status not in UNSENT:
                return
            self._fail(session, row, error)

    def fail_chat(self, chat_id: int, error: str) -> int:
        """Give up on every pending message of a chat (it blocked the bot); returns how many."""
        with self.store.session() as session:
            rows = session.scalars(
                select(OutboxMessage).where(OutboxMessage.chat_id == chat_id,
                                            OutboxMessage.status.in_(UNSENT))
            ).all()
            for row in rows:
                self._fail(session, row, error)
            return len(rows)

    def _fail(self, session: Any, row: OutboxMessage, error: str) -> None:
        row.status, row.error = "failed", clean_db_text(error)[:2000]
        session.add(_delivery_event(row, "undelivered", utcnow(), error=row.error))

    def mark_sending(self, row_id: int) -> bool:
        """Record that a message's request is about to be complete at Telegram (all but its
        last byte is written) and its answer is awaited (False: it was not pending, or not ours).

        A message left ``sending`` by a process that died has most likely reached Telegram,
        which offers no way to ask: see :meth:`adopt`."""
        with self.store.session() as session:
            result = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.owner == self.owner,
                       OutboxMessage.status == "pending")
                .values(status="sending", attempts=OutboxMessage.attempts + 1)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def note_attempt(self, row_id: int, error: str) -> None:
        """A try failed and Telegram did not take the message: it is pending again."""
        with self.store.session() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.status == "sending")
                .values(status="pending", error=clean_db_text(error)[:2000])
            )

    def remember_progress(self, progress_id: str, chat_id: int, message_id: int) -> None:
        """Remember which message shows ``progress_id`` (an edit may have replaced it)."""
        with self.store.session() as session:
            self._remember_progress(session, progress_id, chat_id, message_id)

    def _remember_progress(self, session: Any, progress_id: str, chat_id: int,
                           message_id: int) -> None:
        known = session.get(ProgressMessage, progress_id)
        if known is None:
            session.add(ProgressMessage(progress_id=progress_id, chat_id=chat_id,
                                        message_id=message_id, updated_at=utcnow()))
        else:
            known.chat_id, known.message_id, known.updated_at = chat_id, message_id, utcnow()

    def progress_message(self, progress_id: str) -> tuple[int, int] | None:
        """``(chat id, message id)`` of the message showing ``progress_id``, if known."""
        with self.store.session() as session:
            known = session.get(ProgressMessage, progress_id)
            return None if known is None else (int(known.chat_id), int(known.message_id))

    def outbox_stats(self) -> OutboxStats:
        """Unsent messages (all processes), the oldest one's time, refused and uncertain ones."""
        with self.store.session() as session:
            pending, oldest = session.execute(
                select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at))
                .where(OutboxMessage.status.in_(UNSENT))
            ).one()
            ended = dict(session.execute(
                select(OutboxMessage.status, func.count(OutboxMessage.id))
                .where(OutboxMessage.status.in_(("failed", "uncertain")))
                .group_by(OutboxMessage.status)
            ).tuples().all())
        return OutboxStats(int(pending or 0), aware(oldest) if oldest else None,
                           int(ended.get("failed", 0)), int(ended.get("uncertain", 0)))

    # --- processes -----------------------------------------------------------------------

    def owners_with_work(self) -> set[str | None]:
        """The owners of unfinished updates and messages (None: rows with no owner)."""
        with self.store.session() as session:
            inbox = session.scalars(select(TelegramUpdate.owner).distinct()
                                    .where(TelegramUpdate.status == "pending")).all()
            outbox = session.scalars(select(OutboxMessage.owner).distinct()
                                     .where(OutboxMessage.status.in_(UNSENT))).all()
        return set(inbox) | set(outbox)

    def adopt(self, owners: Iterable[str | None], *, resend_uncertain: bool = False) -> Adopted:
        """Take over the unfinished updates and messages of dead ``owners``.

        A message they were sending when they died may have reached Telegram or not; it is
        sent again only with ``resend_uncertain`` (at least once), else marked ``uncertain``
        and logged as such (at most once).
        """
        owners = list(owners)
        named = [owner for owner in owners if owner is not None and owner != self.owner]
        orphaned = None in owners
        if not named and not orphaned:
            return Adopted(0, 0, [])
        with self.store.session() as session:
            def theirs(table: type[TelegramUpdate] | type[OutboxMessage]) -> Any:
                return or_(table.owner.in_(named),
                           table.owner.is_(None) if orphaned else false())

            updates = session.execute(
                update(TelegramUpdate).where(TelegramUpdate.status == "pending",
                                             theirs(TelegramUpdate))
                .values(owner=self.owner)).rowcount  # type: ignore[attr-defined]
            in_flight = session.scalars(select(OutboxMessage).where(
                OutboxMessage.status == "sending", theirs(OutboxMessage))).all()
            uncertain = []
            for row in in_flight:
                row.owner = self.owner
                if resend_uncertain:
                    row.status = "pending"
                else:
                    row.status = "uncertain"
                    session.add(_delivery_event(row, "uncertain", utcnow()))
                    uncertain.append(row.id)
            messages = session.execute(
                update(OutboxMessage).where(OutboxMessage.status == "pending",
                                            theirs(OutboxMessage))
                .values(owner=self.owner)).rowcount  # type: ignore[attr-defined]
        return Adopted(int(updates), int(messages) + len(in_flight) - len(uncertain), uncertain)

    def beat(self, component: str, data: Mapping[str, Any], started_at: datetime) -> None:
        """Write this process's heartbeat."""
        with self.store.session() as session:
            session.merge(Heartbeat(name=self.owner, component=component, started_at=started_at,
                                    beat_at=utcnow(), data=clean_db_json(dict(data))))

    def stop_beating(self) -> None:
        """Remove this process's heartbeat (a clean shutdown)."""
        with self.store.session() as session:
            session.execute(delete(Heartbeat).where(Heartbeat.name == self.owner))

    def beats(self, component: str | None = None) -> list[Beat]:
        """Every process's last heartbeat (of one component), newest first."""
        with self.store.session() as session:
            query = select(Heartbeat).order_by(Heartbeat.beat_at.desc())
            if component is not None:
                query = query.where(Heartbeat.component == component)
            rows = session.scalars(query).all()
        return [Beat(row.name, row.component, aware(row.started_at), aware(row.beat_at),
                     dict(row.data or {})) for row in rows]

    def forget_chat(self, chat_id: int) -> None:
        """Delete a chat's updates, messages and progress messages (``/forget_me``)."""
        with self.store.session() as session:
            for table in (TelegramUpdate, OutboxMessage, ProgressMessage):
                session.execute(delete(table).where(table.chat_id == chat_id))


def _delivery_event(row: OutboxMessage, kind: str, when: datetime,
                    error: str | None = None) -> Event:
    """The event that logs what became of one outgoing message."""
    data: dict[str, Any] = {"outbox_id": row.id, "kind": row.kind}
    for key, value in (("reply_event", row.event_id), ("update_id", row.update_id),
                       ("message_id", row.message_id), ("progress_id", row.progress_id)):
        if value is not None:
            data[key] = value
    return Event(chat_id=str(row.chat_id), user_id="", channel="telegram", type=kind,
                 text="", data=data, timestamp=when, error=error)
