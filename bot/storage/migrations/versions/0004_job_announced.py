"""Jobs remember whether their chat was told how they ended.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("jobs")}
    if "announced" in columns:  # a database made by ``create_all`` (see 0002)
        return
    # Jobs that ended before this revision were reported the old way: count them as told.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("announced", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("announced")
