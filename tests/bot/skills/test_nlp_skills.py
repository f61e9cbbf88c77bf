"""Helpers of the NLP skills that need no trained model."""

from __future__ import annotations

from bot.skills.nlp import small_talk_turns
from bot.storage.models import Event


def _event(kind: str, text: str, intent: str | None) -> Event:
    return Event(chat_id="c", user_id="u", channel="test", type=kind, text=text, intent=intent)


def test_small_talk_turns_pair_chitchat_messages_with_their_first_reply() -> None:
    events = [
        _event("message", "hi", "chitchat"), _event("reply", "hello!", "chitchat"),
        _event("message", "sort a list in python", "programming"),
        _event("reply", "This looks like a python question.", "programming"),
        _event("message", "/help", None), _event("reply", "Commands: ...", None),
        _event("message", "how are you?", "chitchat"), _event("reply", "fine, you?", "chitchat"),
        _event("reply", "(I chat best in English.)", "chitchat"),
        _event("message", "good", "chitchat"), _event("error", "", "chitchat"),
    ]
    assert small_talk_turns(events) == [("hi", "hello!"), ("how are you?", "fine, you?")]
