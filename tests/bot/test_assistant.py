from __future__ import annotations

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
