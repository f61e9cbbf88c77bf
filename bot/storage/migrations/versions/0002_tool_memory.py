"""Tool memory: what a course tool remembers per chat (enrolled faces...).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A database made by ``create_all`` before migrations existed was stamped at 0001 but may
    # already hold the table.
    if "tool_memory" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "tool_memory",
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "tool"),
    )


def downgrade() -> None:
    op.drop_table("tool_memory")
