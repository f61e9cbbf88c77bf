"""``amlbot db upgrade`` and ``amlbot db info`` on a real database."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from bot.settings import get_settings
from bot.storage.migrations import HEAD_REVISION


def test_upgrade_then_info(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLBOT_DATABASE_URL", db_url)
    get_settings.cache_clear()
    runner = CliRunner()
    before = json.loads(runner.invoke(app, ["db", "info", "--json"]).output.splitlines()[-1])
    assert before["revision"] is None and before["up_to_date"] is False
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"at revision {HEAD_REVISION}" in upgraded.output
    result = runner.invoke(app, ["db", "info", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output.splitlines()[-1])
    assert info["revision"] == HEAD_REVISION and info["up_to_date"] is True
    assert info["rows"] == {"users": 0, "chats": 0, "events": 0, "jobs": 0, "artifacts": 0}
    assert info["backend"] == db_url.split(":")[0].split("+")[0]
    if info["backend"] == "sqlite":
        assert info["journal_mode"] == "wal"
    text = runner.invoke(app, ["db", "info"]).output
    assert "events=0" in text and HEAD_REVISION in text
