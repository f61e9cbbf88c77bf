"""The :class:`Store`: one engine, WAL for SQLite, and the few queries the core needs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select
from sqlalchemy import text as sql_text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from bot.storage.models import Chat, Event, ToolMemory, User, utcnow

#: Outgoing Telegram messages that will not be sent again.
FINISHED_MESSAGES = ("sent", "failed", "uncertain")

log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        options: dict[str, Any] = {}
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            # One shared connection, or every thread would see its own empty in-memory database.
            options["poolclass"] = StaticPool
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **options
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against process crashes in WAL mode; FULL adds power-loss safety.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # A write waits this long for a lock; past it the exchange waits in memory instead
            # (Assistant.save), so a locked database never holds a reply for long.
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Users, chats and the append-only event log behind one SQLAlchemy engine."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite: one transaction at a time in this process. An in-memory database is one shared
        # connection; a file one has one writer at a time anyway, and a waiting writer in
        # SQLite's busy handler sleeps in growing steps (up to 100 ms) after the lock is free,
        # while a waiter on this lock goes on at once: the Telegram sender's records of what it
        # sent must not wait behind that.
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else nullcontext()
        )
        self._collecting = threading.local()
        if create:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest version (Alembic ``upgrade head``)."""
        from bot.storage.migrations import upgrade

        upgrade(self.engine)

    def write_problem(self) -> str | None:
        """Why the database cannot take a write now (read-only, locked), or None."""
        try:
            with self.engine.connect() as connection, connection.begin() as transaction:
                # A real write, undone: SQLite checks read-only files and locks only then.
                now = utcnow()
                connection.execute(insert(User).values(
                    id="~write-probe", username=None, first_seen=now, last_seen=now))
                transaction.rollback()
        except SQLAlchemyError as error:
            return str(getattr(error, "orig", None) or error).splitlines()[0]
        return None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._serial, self._sessions() as session:
            try:
                yield session
                session.commit()
            except Exception:
                session.rollback()
                raise

    def append_events(self, events: Sequence[Event]) -> list[int]:
        """Append events in one transaction, touching their user and chat; returns their ids.

        The rows are committed (and, for SQLite, fsynced) before this returns. Text the
        databases cannot hold (NUL, lone surrogates) is replaced by U+FFFD first. Inside
        :meth:`collecting_events` on this thread, the events are held back instead (and the
        returned list is empty).
        """
        held = getattr(self._collecting, "events", None)
        if held is not None:
            held.extend(events)
            return []
        with self.session() as session:
            self.add_events(session, events)
            return [item.id for item in events]

    @contextmanager
    def collecting_events(self) -> Iterator[list[Event]]:
        """Hold back :meth:`append_events` calls made on this thread and collect their events,
        so that the caller commits them with its own rows (:meth:`add_events`) in one
        transaction: a Telegram update's log entries together with its replies."""
        previous = getattr(self._collecting, "events", None)
        collected: list[Event] = []
        self._collecting.events = collected
        try:
            yield collected
        finally:
            self._collecting.events = previous

    def add_events(self, session: Session, events: Sequence[Event]) -> None:
        """Add events to ``session`` (flushed, so they have ids), touching users and chats."""
        now = utcnow()
        users: dict[str, str | None] = {}
        chats: dict[str, str] = {}
        for item in events:
            item.text = clean_db_text(item.text or "")
            if item.error is not None:
                item.error = clean_db_text(item.error)
            if item.data is not None:
                item.data = clean_db_json(item.data)
            item.timestamp = item.timestamp or now
            if item.type == "message":
                username = (item.data or {}).get("username")
                users[item.user_id] = username or users.get(item.user_id)
            chats.setdefault(item.chat_id, item.channel)
        # Sorted, so that two concurrent transactions lock rows in the same order.
        for user_id in sorted(users):
            self._touch_user(session, user_id, users[user_id], now)
        for chat_id in sorted(chats):
            self._touch_chat(session, chat_id, chats[chat_id], now)
        session.add_all(events)
        session.flush()

    def _touch_user(self, session: Session, user_id: str, username: str | None,
                    now: datetime) -> None:
        upsert = dialect_insert(session)
        if upsert is None:
            user = session.get(User, user_id)
            if user is None:
                session.add(User(id=user_id, username=username, first_seen=now, last_seen=now))
            else:
                user.last_seen = now
                user.username = username or user.username
            return
        stmt = upsert(User).values(id=user_id, username=username, first_seen=now, last_seen=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[User.id],
            set_={"last_seen": stmt.excluded.last_seen,
                  "username": func.coalesce(stmt.excluded.username, User.username)},
        )
        session.execute(stmt)

    def _touch_chat(self, session: Session, chat_id: str, channel: str, now: datetime) -> None:
        upsert = dialect_insert(session)
        if upsert is None:
            chat = session.get(Chat, chat_id)
            if chat is None:
                session.add(Chat(id=chat_id, channel=channel, first_seen=now, last_seen=now))
            else:
                chat.last_seen = now
            return
        stmt = upsert(Chat).values(id=chat_id, channel=channel, first_seen=now, last_seen=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Chat.id], set_={"last_seen": stmt.excluded.last_seen}
        )
        session.execute(stmt)

    def get_user(self, user_id: str) -> User | None:
        with self.session() as session:
            return session.get(User, user_id)

    def get_chat(self, chat_id: str) -> Chat | None:
        with self.session() as session:
            return session.get(Chat, chat_id)

    def history(self, chat_id: str, limit: int = 20) -> list[Event]:
        """The last ``limit`` events of a chat, oldest first."""
        with self.session() as session:
            query = select(Event).where(Event.chat_id == chat_id)
            rows = session.scalars(query.order_by(Event.id.desc()).limit(limit)).all()
        return list(reversed(rows))

    def count_events(self, chat_id: str | None = None) -> int:
        with self.session() as session:
            query = select(func.count(Event.id))
            if chat_id is not None:
                query = query.where(Event.chat_id == chat_id)
            return int(session.scalar(query) or 0)

    def events_since(self, since: datetime) -> list[Event]:
        with self.session() as session:
            return list(session.scalars(select(Event).where(Event.timestamp >= since)).all())

    def forget_user(self, user_id: str) -> dict[str, int]:
        """Delete what is stored of ``user_id``: their messages and the replies to them, what
        tools remember and what Telegram delivered in the chats only they wrote in, and their
        user row. (Their jobs are :meth:`~bot.jobs.records.JobRecords.forget_user`'s.) Messages
        still waiting to be sent stay, so the reply to ``/forget_me`` itself arrives. Returns
        counts."""
        from bot.storage.telegram_models import OutboxMessage, ProgressMessage, TelegramUpdate

        with self.session() as session:
            chats = set(session.scalars(select(Event.chat_id).where(Event.user_id == user_id)))
            # Delivery records (user "") belong to the chat, not to another person.
            others = Event.user_id.not_in((user_id, ""))
            shared = set(session.scalars(select(Event.chat_id).where(
                Event.chat_id.in_(chats), others))) if chats else set()
            own_chats = (chats - shared) | {user_id}
            events = _rowcount(session.execute(delete(Event).where(Event.user_id == user_id)))
            events += _rowcount(session.execute(delete(Event).where(
                Event.chat_id.in_(own_chats), Event.user_id == "")))
            memories = session.execute(delete(ToolMemory).where(
                ToolMemory.chat_id.in_(own_chats)))
            telegram_chats = [int(chat) for chat in own_chats if chat.lstrip("-").isdigit()]
            delivered = 0
            if telegram_chats:
                delivered += _rowcount(session.execute(delete(TelegramUpdate).where(
                    TelegramUpdate.chat_id.in_(telegram_chats),
                    TelegramUpdate.status != "pending")))
                delivered += _rowcount(session.execute(delete(OutboxMessage).where(
                    OutboxMessage.chat_id.in_(telegram_chats),
                    OutboxMessage.status.in_(FINISHED_MESSAGES))))
                session.execute(delete(ProgressMessage).where(
                    ProgressMessage.chat_id.in_(telegram_chats)))
            session.execute(delete(User).where(User.id == user_id))
            return {"events": events, "memories": _rowcount(memories),
                    "telegram_messages": delivered}

    def forget_before(self, cutoff: datetime) -> int:
        """Delete the events, and the Telegram updates and messages that are done with, older
        than ``cutoff`` (the retention period); returns how many events."""
        from bot.storage.telegram_models import OutboxMessage, TelegramUpdate

        with self.session() as session:
            session.execute(delete(TelegramUpdate).where(TelegramUpdate.received_at < cutoff,
                                                         TelegramUpdate.status != "pending"))
            session.execute(delete(OutboxMessage).where(
                OutboxMessage.created_at < cutoff, OutboxMessage.status.in_(FINISHED_MESSAGES)))
            return _rowcount(session.execute(delete(Event).where(Event.timestamp < cutoff)))

    def ping(self) -> float:
        """One round trip to the database (``SELECT 1``); returns its seconds, or raises."""
        started = time.perf_counter()
        with self.session() as session:
            session.execute(sql_text("SELECT 1"))
        return time.perf_counter() - started

    def dispose(self) -> None:
        self.engine.dispose()


def dialect_insert(session: Session) -> Any:
    """The dialect's ``insert`` with ``on_conflict_do_update``, or None where there is none."""
    name = session.get_bind().dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    return None


def clean_db_text(text: str) -> str:
    """``text`` without what no database stores: NUL and lone surrogates become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def clean_db_json(value: Any) -> Any:
    """A JSON-able value with :func:`clean_db_text` applied to every string in it."""
    if isinstance(value, str):
        return clean_db_text(value)
    if isinstance(value, dict):
        return {clean_db_text(str(k)): clean_db_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_db_json(v) for v in value]
    return value


def create_all(engine: Engine) -> None:
    """Create every table directly (used by tests of the models only)."""
    from bot.storage.schema import metadata

    metadata().create_all(engine)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
