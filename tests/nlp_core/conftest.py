"""A small but real NLP bundle, trained once per test session on the shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings


def small_nlp_settings(data_dir: Path) -> Settings:
    """Settings for a quick, real training run: every model, smaller corpora."""
    return Settings(data_dir=data_dir, chitchat_pairs=1500, thread_index_limit=1500,
                    tags_use_embeddings=False)


@pytest.fixture(scope="session")
def trained_nlp_dir(_session_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the shared datasets and a trained small NLP bundle."""
    from bot.app import load_nlp

    data_dir = tmp_path_factory.mktemp("nlp-data")
    (data_dir / "datasets").symlink_to(_session_data_dir / "datasets")
    load_nlp(small_nlp_settings(data_dir), quiet=True)
    return data_dir
