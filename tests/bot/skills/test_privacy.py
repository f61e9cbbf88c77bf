"""/forget_me deletes what is stored of a user, only after they confirm."""

from __future__ import annotations

from bot.app import build_assistant
from bot.core import Assistant, Message, TextReply
from bot.settings import Settings
from bot.storage.models import Event, ToolMemory


def _say(assistant: Assistant, text: str, user: str = "u1", chat: str = "c1") -> str:
    replies = assistant.handle(Message(chat_id=chat, user_id=user, text=text))
    return "\n".join(r.text for r in replies if isinstance(r, TextReply))


def test_forget_me_asks_first_then_deletes_only_that_user(settings: Settings) -> None:
    assistant = build_assistant(settings)
    try:
        _say(assistant, "/start")
        _say(assistant, "/about")
        _say(assistant, "/start", user="u2", chat="c2")
        with assistant.store.session() as session:
            session.add(ToolMemory(chat_id="c1", tool="vision.faces", data={"people": {}}))
            session.add(ToolMemory(chat_id="c2", tool="vision.faces", data={"people": {}}))
        assert "/forget_me yes" in _say(assistant, "/forget_me yes")  # nothing asked yet
        assert assistant.store.count_events("c1") > 0
        asked = _say(assistant, "/forget_me")
        assert "cannot be undone" in asked
        done = _say(assistant, "/forget_me yes")
        assert "Done" in done
        with assistant.store.session() as session:
            assert session.query(Event).filter_by(user_id="u1").count() == 0
            assert session.query(Event).filter_by(user_id="u2").count() == 2
            assert {m.chat_id for m in session.query(ToolMemory)} == {"c2"}
    finally:
        assistant.close()
