"""The Telegram channel's tables: the inbox of updates, the outbox of messages to send, the
progress messages to edit, and each process's heartbeat (see :mod:`bot.storage.delivery`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models import Base, utcnow


class TelegramUpdate(Base):
    """An update from the Bot API (the inbox), committed before Telegram is told it arrived.

    ``owner`` is the bot process (``host:pid:nonce``) that handles it; a dead owner's pending
    updates are taken over by a live one. ``done`` is set in the same transaction that stores
    the update's replies in :class:`OutboxMessage`, so an update is answered at most once."""

    __tablename__ = "telegram_updates"
    __table_args__ = (Index("ix_telegram_updates_status_owner", "status", "owner"),)

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed
    owner: Mapped[str | None] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """One Telegram message to send (the outbox): text, a photo, a document, a progress
    message or an edit of one. Sent in ``id`` order per chat; kept, in full, once sent."""

    __tablename__ = "telegram_outbox"
    __table_args__ = (Index("ix_telegram_outbox_pending", "status", "owner", "chat_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    chat_id: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str | None] = mapped_column(String(128))
    update_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    #: The ``reply`` event this message carries (part of), when there is one.
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # text | photo | animation | document | ...
    text: Mapped[str] = mapped_column(Text, default="")
    filename: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    progress_id: Mapped[str | None] = mapped_column(String(64))
    #: pending, sending (a try in flight), sent, failed (Telegram refused it) or uncertain
    #: (its process died while sending it: it may or may not have arrived).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)


class ProgressMessage(Base):
    """The Telegram message that shows a progress handle (``job-<id>`` for a job), so a later
    ``ProgressEdit`` edits it, even after a restart."""

    __tablename__ = "telegram_progress"

    progress_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Heartbeat(Base):
    """A running process's sign of life (``amlbot health`` reads it): when it last beat, and
    what it reports about itself (polling, the job runner...)."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    component: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
