"""Arbitrary input never breaks the Assistant, and every exchange lands in the event log."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.app import build_assistant
from bot.core import Message
from bot.core.assistant import clean_text
from bot.core.messages import reply_text
from bot.settings import Settings
from bot.storage.models import Event

EXAMPLES = 2000
NASTY = [
    "",
    "x" * 100_000,
    "\x00",
    "nul\x00in\x00the\x00middle",
    "\x01\x02\x07\x08\x0b\x0c\x1b[31mred\x1b[0m\x7f",
    "\ud800",
    "lone \udfff low and \ud83d high surrogates",
    "مرحبا بالعالم — שלום עולם",
    "\u202eevil\u202c \u200f\u200e\u2066isolate\u2069",
    "'; DROP TABLE events; --",
    "1' OR '1'='1",
    "SELECT * FROM users WHERE id = 1; DELETE FROM chats;",
    "<script>alert(1)</script>",
    "</textarea><img src=x onerror=alert('x')>",
    "%s %(name)s {0} {{}} \\N{BULLET}",
    "👩‍👩‍👧‍👦🏳️‍🌈 e\u0301\u0301\u0301 ﷽",
    "\r\n\t \u00a0\u2028\u2029",
    "/",
    "/ ",
    "/start",
    "/help help",
    "/history 5",
    "/history -1",
    "/history 99999999999999999999999",
    "/" + "a" * 5000,
    "/start@" + "b" * 300,
]

any_text = st.one_of(
    st.text(),
    # Every code point, surrogates and controls included.
    st.text(st.characters(exclude_categories=()), max_size=300),
    # Fragments of SQL, HTML and control characters glued together.
    st.lists(st.sampled_from(["\x00", "\ud800", "'", '"', ";", "--", "<b>", "</", "/", "\n",
                              "é", "\u202e", "DROP TABLE", " OR 1=1", "&amp;", " "]),
             max_size=40).map("".join),
    st.builds(lambda head, tail: "/" + head + tail, st.text(max_size=30), st.text(max_size=30)),
)


@pytest.fixture()
def fast_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir on tmpfs when there is one: thousands of fsyncs are slow on a real disk."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="amlbot-fuzz-") as path:
            yield Path(path)
    else:
        yield tmp_path / "data"


def test_any_text_gets_a_reply_and_every_exchange_is_stored(fast_data_dir: Path) -> None:
    assistant = build_assistant(Settings(data_dir=fast_data_dir, nlu_enabled=False))
    sent: list[str] = []
    reply_counts: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(text=any_text)
    def check(text: str) -> None:
        replies = assistant.handle(Message(chat_id="fuzz", user_id="fuzzer", text=text,
                                           channel="test"))
        sent.append(text)
        reply_counts.append(len(replies))
        assert replies
        for reply in replies:
            shown = reply_text(reply)
            assert isinstance(shown, str) and shown.strip()
            shown.encode("utf-8")  # no lone surrogate reaches a channel

    for nasty in NASTY:
        check = example(text=nasty)(check)
    check()

    assert len(sent) >= EXAMPLES
    with assistant.store.session() as session:
        rows = session.execute(
            select(Event.type, Event.text).where(Event.chat_id == "fuzz").order_by(Event.id)
        ).all()
    messages = [text for kind, text in rows if kind == "message"]
    replies = [kind for kind, _ in rows if kind == "reply"]
    errors = [kind for kind, _ in rows if kind == "error"]
    max_chars = assistant.settings.max_message_chars
    assert messages == [clean_text(text, max_chars)[0] for text in sent]
    assert len(replies) == sum(reply_counts)
    assert errors == []
    # One message and one reply per exchange, plus a "your message was long" note for each
    # over-long message.
    long_ones = sum(len(text) > max_chars for text in sent)
    assert len(rows) == 2 * len(sent) + long_ones
    assistant.close()
