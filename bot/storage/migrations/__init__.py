"""Schema migrations. Alembic revisions live in ``versions/``; ``upgrade`` applies them."""

from __future__ import annotations

from sqlalchemy import Engine

from bot.storage.models import Base


def upgrade(engine: Engine) -> None:
    """Bring the database at ``engine`` to the newest schema."""
    # Replaced by an Alembic-driven upgrade once the first revision exists.
    Base.metadata.create_all(engine)
