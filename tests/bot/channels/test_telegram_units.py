"""Unit tests of the Telegram channel's pieces: the message splitter and the progress relay."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram import Bot
from telegram.error import NetworkError
from telegram.request import HTTPXRequest

from bot.channels.telegram import (
    TEXT_LIMIT,
    ProgressRelay,
    sniff_image,
    split_text,
    telegram_length,
)
from bot.channels.telegram_render import CAPTION_LIMIT, render
from bot.channels.telegram_sender import ON_WRITTEN, sending_transport
from bot.core.messages import ImageReply, ProgressEdit, ProgressHandle, ProgressReply, TextReply
from tests.support.fake_bot_api import FakeBotApi, png_bytes
from tests.support.skills import long_text

# --- splitting -------------------------------------------------------------------------------


def test_short_text_is_one_message() -> None:
    assert split_text("hello\nworld") == ["hello\nworld"]
    assert split_text("") == []


def test_long_reply_is_split_at_line_boundaries() -> None:
    text = long_text()
    chunks = split_text(text)
    assert "".join(chunks) == text
    assert all(telegram_length(chunk) <= TEXT_LIMIT for chunk in chunks)
    assert len(chunks) >= 3
    # The only line longer than a message (4,508 chars, line 7) is the only hard cut.
    hard_cuts = [chunk for chunk in chunks[:-1] if not chunk.endswith("\n")]
    assert len(hard_cuts) == 1
    assert max(len(line) for line in text.split("\n")) > TEXT_LIMIT


def test_a_line_without_spaces_is_cut_hard() -> None:
    chunks = split_text("x" * 10_000)
    assert [len(c) for c in chunks] == [4096, 4096, 1808]


def test_a_long_line_is_cut_after_a_space() -> None:
    words = " ".join(["word"] * 3000)  # 14,999 characters, one line
    chunks = split_text(words)
    assert "".join(chunks) == words
    assert all(chunk.endswith(" ") for chunk in chunks[:-1])
    assert all(len(chunk) <= TEXT_LIMIT for chunk in chunks)


def test_astral_characters_count_twice() -> None:
    text = "😀" * 3000  # 6,000 UTF-16 units
    assert telegram_length(text) == len(text.encode("utf-16-le")) // 2 == 6000
    chunks = split_text(text)
    assert "".join(chunks) == text
    assert [telegram_length(c) for c in chunks] == [4096, 1904]


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(st.sampled_from(["a", "b", " ", "\n", "\r\n", "\r", "😀", "é"]),
                  max_size=300).map("".join),
    limit=st.integers(min_value=2, max_value=40),
)
def test_split_invariants(text: str, limit: int) -> None:
    chunks = split_text(text, limit)
    assert "".join(chunks) == text
    assert all(chunk and telegram_length(chunk) <= limit for chunk in chunks)
    lines = text.splitlines(keepends=True)
    if all(telegram_length(line) <= limit for line in lines):
        # Nothing needed a hard cut, so every chunk ends where a line ends.
        assert all(chunk.endswith(("\n", "\r")) for chunk in chunks[:-1])


def test_sniff_image() -> None:
    assert sniff_image(png_bytes()) == ("image/png", ".png")
    assert sniff_image(b"\xff\xd8\xff\xe0rest") == ("image/jpeg", ".jpg")
    assert sniff_image(b"not an image at all") is None


# --- the progress throttle -------------------------------------------------------------------


async def _relay(handle: ProgressHandle, interval: float,
                 work: threading.Thread | None = None) -> list[tuple[float, str]]:
    edits: list[tuple[float, str]] = []

    async def edit(text: str) -> None:
        edits.append((time.monotonic(), text))

    relay = ProgressRelay(handle, edit, interval=interval, loop=asyncio.get_running_loop())
    task = asyncio.create_task(relay.run(handle.render()))  # as if the message was just sent
    await asyncio.sleep(0)
    if work is not None:
        work.start()
    await asyncio.wait_for(task, timeout=10)
    assert relay.edits == len(edits)
    return edits


def test_progress_edits_are_throttled_and_the_final_state_is_delivered() -> None:
    interval = 0.15
    handle = ProgressHandle("Training")

    def work() -> None:  # 200 updates in about 0.6 s, from another thread
        for step in range(1, 201):
            handle.update(step / 200, f"step {step}")
            time.sleep(0.003)
        handle.finish("done")

    started = time.monotonic()
    edits = asyncio.run(_relay(handle, interval, threading.Thread(target=work)))
    elapsed = time.monotonic() - started
    assert edits[-1][1] == handle.render()
    assert "✓" in edits[-1][1] and "100%" in edits[-1][1]
    assert len(edits) <= elapsed / interval + 2  # far fewer than the 201 states
    assert edits[0][0] - started >= interval * 0.9  # the first message was just sent
    gaps = [later[0] - earlier[0] for earlier, later in zip(edits, edits[1:], strict=False)]
    assert all(gap >= interval * 0.9 for gap in gaps)


def test_a_lone_update_is_delivered_after_the_interval() -> None:
    """The trailing edge: a state that arrives inside the quiet period is not lost."""
    handle = ProgressHandle("Indexing")

    def work() -> None:
        handle.update(0.5, "half")
        time.sleep(0.4)  # no more updates for a while
        handle.finish("ok")

    edits = asyncio.run(_relay(handle, 0.1, threading.Thread(target=work)))
    texts = [text for _, text in edits]
    assert any("50%" in text and "half" in text for text in texts)
    assert texts[-1] == handle.render() and "✓ ok" in texts[-1]


def test_a_failing_edit_does_not_stop_the_relay() -> None:
    handle = ProgressHandle("Upload")
    attempts: list[str] = []

    async def flaky_edit(text: str) -> None:
        attempts.append(text)
        if len(attempts) == 1:
            raise RuntimeError("network down")

    async def run() -> None:
        relay = ProgressRelay(handle, flaky_edit, interval=0.05,
                              loop=asyncio.get_running_loop())
        task = asyncio.create_task(relay.run(handle.render()))
        await asyncio.sleep(0.01)
        await asyncio.to_thread(handle.update, 0.3)
        await asyncio.sleep(0.1)
        await asyncio.to_thread(handle.finish, "failed", True)
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(run())
    assert len(attempts) == 2
    assert "✗" in attempts[-1]


# --- rendering replies as messages -----------------------------------------------------------


def test_a_short_answer_is_sent_as_it_is() -> None:
    handle = ProgressHandle("Training")
    rendered = render([TextReply("hello"), ImageReply(png_bytes(), caption="a plot"),
                       ProgressReply(handle)], max_messages=5)
    assert [(i.kind, i.text, i.reply) for i in rendered.items] == [
        ("text", "hello", 0), ("photo", "a plot", 1), ("progress", handle.render(), 2)]
    assert rendered.handles == [handle]


def test_a_long_answer_takes_at_most_max_messages_and_ends_with_all_of_it_as_a_file() -> None:
    text = long_text(30_000)  # 8 messages' worth
    replies = [TextReply(text), ImageReply(png_bytes(), caption="late plot")]
    rendered = render(replies, max_messages=5)
    assert len(rendered.items) == 5
    assert [i.kind for i in rendered.items] == ["text"] * 4 + ["document"]
    shown = "".join(i.text for i in rendered.items[:4])
    assert text.startswith(shown)
    document = rendered.items[-1]
    assert document.filename == "answer.txt" and document.data is not None
    whole = document.data.decode("utf-8")
    assert text in whole and "late plot" in whole
    assert "1 picture or file did not fit" in document.text
    assert telegram_length(document.text) <= CAPTION_LIMIT


def test_captions_too_long_continue_as_text_and_gifs_go_as_animations() -> None:
    caption = "word " * 400  # 2,000 characters
    rendered = render([ImageReply(b"GIF89a...", caption=caption, filename="run.gif")],
                      max_messages=5)
    assert [i.kind for i in rendered.items] == ["animation", "text"]
    assert rendered.items[0].text + rendered.items[1].text == caption


def test_a_progress_edit_becomes_an_edit_of_its_handle() -> None:
    [item] = render([ProgressEdit("job-42", "✗ stopped: the bot restarted")],
                    max_messages=5).items
    assert (item.kind, item.progress_id, item.text) == ("edit", "job-42",
                                                        "✗ stopped: the bot restarted")
    assert render([TextReply("  \n ")], max_messages=5).items == []  # blank: nothing to send


# --- the last byte of a send waits for its record ----------------------------------------------


def _sending_bot(api: FakeBotApi) -> Bot:
    request = HTTPXRequest(httpx_kwargs={"transport": sending_transport(1)})
    return Bot("123:abc", base_url=api.base_url, request=request)


def test_a_send_is_recorded_before_telegram_has_it_whole() -> None:
    seen_by_server: list[int] = []

    async def run(api: FakeBotApi) -> int:
        async def written() -> None:
            await asyncio.sleep(0.3)  # a slow database: the server must still be waiting
            seen_by_server.append(len(api.answered("sendMessage")))

        async with _sending_bot(api) as bot:
            token = ON_WRITTEN.set(written)
            try:
                message = await bot.send_message(7, "hello there")
            finally:
                ON_WRITTEN.reset(token)
        return message.message_id

    with FakeBotApi("123:abc") as api:
        message_id = asyncio.run(run(api))
        sent = api.answered("sendMessage")
    assert seen_by_server == [0]
    assert [call.params["text"] for call in sent] == ["hello there"]  # not cut by a byte
    assert message_id >= 1000


def test_a_process_that_dies_while_recording_leaves_telegram_nothing() -> None:
    class Died(Exception):
        pass

    async def run(api: FakeBotApi) -> None:
        async def written() -> None:
            raise Died  # the process stops here: the last byte is never written

        async with _sending_bot(api) as bot:
            token = ON_WRITTEN.set(written)
            try:
                await bot.send_message(7, "never whole")
            finally:
                ON_WRITTEN.reset(token)

    with FakeBotApi("123:abc") as api:
        with pytest.raises(NetworkError, match="Died"):
            asyncio.run(run(api))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not api.calls("sendMessage"):
            time.sleep(0.05)
        assert api.answered("sendMessage") == []
