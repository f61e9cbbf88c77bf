"""Telegram delivery: the inbox of updates, the outbox of replies, progress messages, heartbeats.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    # A database made by ``create_all`` before migrations existed was stamped at 0001 but may
    # already hold these tables.
    if "telegram_updates" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "telegram_updates",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("received_at", _when(), nullable=False),
        sa.Column("done_at", _when(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("update_id"),
    )
    op.create_index("ix_telegram_updates_status_owner", "telegram_updates", ["status", "owner"])
    op.create_table(
        "telegram_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("update_id", sa.BigInteger(), nullable=True),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("progress_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("sent_at", _when(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_telegram_outbox_pending", "telegram_outbox",
                    ["status", "owner", "chat_id", "id"])
    op.create_index("ix_telegram_outbox_update_id", "telegram_outbox", ["update_id"])
    op.create_table(
        "telegram_progress",
        sa.Column("progress_id", sa.String(64), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("progress_id"),
    )
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("component", sa.String(32), nullable=False),
        sa.Column("started_at", _when(), nullable=False),
        sa.Column("beat_at", _when(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
    op.drop_table("telegram_progress")
    op.drop_index("ix_telegram_outbox_update_id", table_name="telegram_outbox")
    op.drop_index("ix_telegram_outbox_pending", table_name="telegram_outbox")
    op.drop_table("telegram_outbox")
    op.drop_index("ix_telegram_updates_status_owner", table_name="telegram_updates")
    op.drop_table("telegram_updates")
