"""Settings for the small but real NLP bundle the tests train once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.settings import Settings


def small_nlp_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings for a quick, real training run: every model, smaller corpora (``changes``
    override any of them)."""
    values: dict[str, Any] = {"chitchat_pairs": 1500, "thread_index_limit": 1500,
                              "tags_use_embeddings": False, "llm_answers": "off"}
    return Settings(data_dir=data_dir, **(values | changes))
