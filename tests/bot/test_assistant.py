from __future__ import annotations

import pytest

from bot.app import build_assistant
from bot.core import Assistant, Message, TextReply
from bot.settings import Settings


def _ask(assistant: Assistant, text: str) -> list[str]:
    replies = assistant.handle(Message(chat_id="c1", user_id="u1", text=text))
    return [r.text for r in replies if isinstance(r, TextReply)]


def test_help_lists_every_command(settings: Settings) -> None:
    assistant = build_assistant(settings)
    text = "\n".join(_ask(assistant, "/help"))
    for command in ("/start", "/help", "/about", "/history"):
        assert command in text


def test_unknown_command_suggests_close_ones(settings: Settings) -> None:
    assistant = build_assistant(settings)
    (reply,) = _ask(assistant, "/hepl")
    assert "/hepl" in reply and "/help" in reply


def test_every_exchange_is_stored(settings: Settings) -> None:
    assistant = build_assistant(settings)
    _ask(assistant, "hello")
    _ask(assistant, "/about")
    events = assistant.store.history("c1", limit=10)
    assert [e.type for e in events] == ["message", "reply", "message", "reply"]
    assert events[0].text == "hello"
    assert events[3].latency_ms is not None


def test_history_shows_previous_messages(settings: Settings) -> None:
    assistant = build_assistant(settings)
    _ask(assistant, "first message")
    (reply,) = _ask(assistant, "/history 5")
    assert "you: first message" in reply


def test_help_with_a_bare_slash_lists_every_command(settings: Settings) -> None:
    # "/help /" used to raise IndexError ("Sorry, something went wrong").
    assistant = build_assistant(settings)
    try:
        text = "\n".join(_ask(assistant, "/help /"))
        assert "Commands:" in text and "went wrong" not in text
        assert "/train" in "\n".join(_ask(assistant, "/help /train"))
    finally:
        assistant.close()


def test_exchanges_wait_out_a_locked_database_and_nobody_is_told_saved(
        settings: Settings) -> None:
    import sqlite3

    assistant = build_assistant(settings)
    try:
        path = settings.data_dir / "amlbot.sqlite3"
        locker = sqlite3.connect(path, timeout=1)
        locker.execute("BEGIN EXCLUSIVE")  # what another process holding the lock does
        try:
            replies = _ask(assistant, "/start")
            assert replies and assistant.storage_error is not None
            assert all("saved" not in reply for reply in replies)
        finally:
            locker.rollback()
            locker.close()
        _ask(assistant, "/about")  # storage is back: the waiting exchange goes first
        assert assistant.storage_error is None
        texts = [e.text for e in assistant.store.history("c1", limit=10)]
        assert texts[0] == "/start" and "/about" in texts
    finally:
        assistant.close()


def test_a_read_only_database_is_an_error_in_the_log(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from bot.storage.store import Store

    Store(settings.resolved_database_url).dispose()  # a database of the current schema
    read_only = f"sqlite:///file:{settings.data_dir / 'amlbot.sqlite3'}?mode=ro&uri=true"
    caplog.set_level(logging.ERROR, logger="bot.app")
    assistant = build_assistant(settings.model_copy(update={"database_url": read_only}))
    try:
        assert any("takes no writes" in r.getMessage() for r in caplog.records)
        assert "saved" not in " ".join(_ask(assistant, "/start"))
        assert assistant.storage_error is not None
    finally:
        assistant.close()
