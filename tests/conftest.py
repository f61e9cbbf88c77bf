"""Shared fixtures: an isolated data dir and settings for every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep every test away from the developer's own data dir and .env."""
    monkeypatch.setenv("AMLBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("AMLBOT_DATABASE_URL", raising=False)
    monkeypatch.delenv("AMLBOT_TELEGRAM_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh data dir, without NLU (for the core's own tests)."""
    return Settings(data_dir=tmp_path / "data", nlu_enabled=False)
