"""The :class:`Store`: one engine, WAL for SQLite, and the few queries the core needs."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.models import Base, Chat, Event, User, utcnow

log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against process crashes in WAL mode; FULL adds power-loss safety.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Users, chats and the append-only event log behind one SQLAlchemy engine."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if create:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest version (Alembic when available, else create_all)."""
        from bot.storage.migrations import upgrade

        upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except Exception:
                session.rollback()
                raise

    def append_events(self, events: Sequence[Event]) -> list[int]:
        """Append events in one transaction, touching their user and chat; returns their ids.

        The rows are committed (and, for SQLite, fsynced) before this returns.
        """
        now = utcnow()
        with self.session() as session:
            seen_users: set[str] = set()
            seen_chats: set[str] = set()
            for item in events:
                if item.type == "message" and item.user_id not in seen_users:
                    seen_users.add(item.user_id)
                    user = session.get(User, item.user_id)
                    username = (item.data or {}).get("username")
                    if user is None:
                        session.add(User(id=item.user_id, username=username, first_seen=now,
                                         last_seen=now))
                    else:
                        user.last_seen = now
                        if username:
                            user.username = username
                if item.chat_id not in seen_chats:
                    seen_chats.add(item.chat_id)
                    chat = session.get(Chat, item.chat_id)
                    if chat is None:
                        session.add(Chat(id=item.chat_id, channel=item.channel, first_seen=now,
                                         last_seen=now))
                    else:
                        chat.last_seen = now
                item.timestamp = item.timestamp or now
                session.add(item)
            session.flush()
            return [item.id for item in events]

    def history(self, chat_id: str, limit: int = 20) -> list[Event]:
        """The last ``limit`` events of a chat, oldest first."""
        with self.session() as session:
            rows = session.scalars(
                select(Event).where(Event.chat_id == chat_id).order_by(Event.id.desc()).limit(limit)
            ).all()
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

    def dispose(self) -> None:
        self.engine.dispose()


def create_all(engine: Engine) -> None:
    """Create every table directly (used by tests of the models only)."""
    Base.metadata.create_all(engine)
