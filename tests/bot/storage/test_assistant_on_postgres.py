"""The whole Assistant on PostgreSQL, picked through AMLBOT_DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import build_assistant
from bot.core import Message, TextReply
from bot.core.assistant import clean_text
from bot.core.messages import reply_text
from bot.settings import Settings


@pytest.mark.postgres
def test_assistant_runs_on_postgres_from_the_environment(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMLBOT_DATABASE_URL", postgres_url)
    settings = Settings(data_dir=tmp_path / "data", nlu_enabled=False)
    assistant = build_assistant(settings)
    try:
        assert assistant.store.engine.dialect.name == "postgresql"
        for text in ("/start", "hello\x00there \ud800", "/history 5"):
            replies = assistant.handle(Message(chat_id="pg", user_id="u1", text=text,
                                               username="ada"))
            assert replies and all(isinstance(r, TextReply) for r in replies)
        history = reply_text(replies[0])
        stored = clean_text("hello\x00there \ud800", settings.max_message_chars)[0]
        assert "\x00" not in stored
        assert "you: /start" in history and f"you: {stored}" in history
        events = assistant.store.history("pg", limit=50)
        assert [e.type for e in events] == ["message", "reply"] * 3
        user = assistant.store.get_user("u1")
        assert user is not None and user.username == "ada"
    finally:
        assistant.close()
    assert not (tmp_path / "data" / "amlbot.sqlite3").exists()
