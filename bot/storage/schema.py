"""Every amlbot table in one ``MetaData``, for migrations and schema checks (the models
are declared in two modules: :mod:`bot.storage.models` and :mod:`bot.storage.telegram_models`)."""

from __future__ import annotations

from sqlalchemy import MetaData

from bot.storage import telegram_models
from bot.storage.models import Base

__all__ = ["metadata", "telegram_models"]


def metadata() -> MetaData:
    """Every amlbot table, the Telegram ones included."""
    return Base.metadata
