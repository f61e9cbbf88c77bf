"""Progress messages survive a restart: the sender (a real python-telegram-bot ``Bot`` against
the fake Bot API server, a real SQLite outbox) edits the message a progress handle was shown in,
even from a new process, and sends the text when that message is unknown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot

from bot.channels.telegram_render import render
from bot.channels.telegram_sender import Sender
from bot.core.messages import ProgressEdit, ProgressHandle, ProgressReply
from bot.storage.delivery import DeliveryStore, OutItem
from bot.storage.store import Store
from tests.support.fake_bot_api import FakeBotApi

TOKEN = "123456789:AAHfakeTokenForEndToEndTests_x1y2z3"
CHAT = 4100


@pytest.fixture()
def api() -> Iterator[FakeBotApi]:
    with FakeBotApi(TOKEN) as server:
        yield server


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'bot.sqlite3'}")
    yield store
    store.dispose()


async def _in_thread(call: Any, *args: Any) -> Any:
    return await asyncio.to_thread(call, *args)


def _send(api: FakeBotApi, delivery: DeliveryStore, items: list[OutItem]) -> None:
    """One bot process's life: store ``items``, send them all, stop."""

    async def run() -> None:
        bot = Bot(TOKEN, base_url=api.base_url, base_file_url=api.base_file_url)
        await bot.initialize()
        try:
            sender = Sender(bot, delivery, _in_thread)
            delivery.enqueue(CHAT, items)
            sender.wake(CHAT)
            while sender.busy_chats:
                await asyncio.sleep(0.02)
        finally:
            await bot.shutdown()

    asyncio.run(run())


def shown_id(api: FakeBotApi) -> int:
    """The message id the server gave the first message sent to the chat."""
    return int(next(iter(key[1] for key in api.state.texts if key[0] == CHAT)))


def test_a_progress_edit_after_a_restart_edits_the_message_shown_before(
        api: FakeBotApi, store: Store) -> None:
    handle = ProgressHandle("Training · job abc", id="job-abc")
    handle.update(0.3, "epoch 3/10")
    _send(api, DeliveryStore(store, "first-run"),
          render([ProgressReply(handle)], max_messages=5).items)
    [shown] = api.answered("sendMessage", CHAT)
    assert "30%" in shown.text

    # A new process: the job's recovery says how it ended.
    restarted = DeliveryStore(store, "second-run")
    _send(api, restarted,
          render([ProgressEdit("job-abc", "✗ stopped: the bot restarted")], max_messages=5).items)
    [edit] = api.answered("editMessageText", CHAT)
    assert edit.text == "✗ stopped: the bot restarted"
    known = restarted.progress_message("job-abc")
    assert known is not None and int(edit.params["message_id"]) == known[1] == shown_id(api)
    assert len(api.answered("sendMessage", CHAT)) == 1  # edited, not sent again

    # The same words again: Telegram says "not modified", which is no failure.
    _send(api, restarted, [OutItem("edit", "✗ stopped: the bot restarted", progress_id="job-abc")])
    assert restarted.outbox_stats().failed == 0


def test_an_edit_of_an_unknown_or_vanished_message_sends_the_text(api: FakeBotApi,
                                                                  store: Store) -> None:
    delivery = DeliveryStore(store, "run")
    _send(api, delivery, [OutItem("edit", "✗ stopped: the bot restarted", progress_id="job-x")])
    [sent] = api.answered("sendMessage", CHAT)
    assert sent.text == "✗ stopped: the bot restarted"
    # The text now stands for the handle: a later edit goes there.
    known = delivery.progress_message("job-x")
    assert known is not None and known[0] == CHAT

    # A message Telegram no longer has (deleted by the user): the edit is sent instead.
    api.state.texts.clear()
    _send(api, delivery, [OutItem("edit", "done after all", progress_id="job-x")])
    assert [c.text for c in api.answered("sendMessage", CHAT)][-1] == "done after all"
    assert delivery.outbox_stats().pending == 0
