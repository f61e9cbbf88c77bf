"""Fault scenarios for the Telegram channel: the real ``amlbot telegram`` process against the
fake Bot API server with faults injected, counting what users would see.

Each scenario returns an :class:`Outcome`. ``test_telegram_faults.py`` runs small versions
(20 chats, a 10 s outage) in CI and the full-size ones as ``slow`` tests, which
``amlbot bench telegram`` runs to write ``docs/benchmarks/telegram.md``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.storage.models import Event
from bot.storage.store import Store
from bot.storage.telegram_models import OutboxMessage, TelegramUpdate
from tests.bot.channels.test_telegram_e2e import RunningBot, _start
from tests.support.fake_bot_api import FakeBotApi

TOKEN = "123456789:AAHfakeTokenForEndToEndTests_x1y2z3"
FIRST_CHAT = 10_000
#: Where the slow tests add their outcomes for ``amlbot bench telegram`` (a JSON-lines file).
RESULTS_ENV = "AMLBOT_BENCH_TELEGRAM_RESULTS"


@dataclass
class Outcome:
    """What the users of ``chats`` chats saw."""

    scenario: str
    chats: int
    answered: int  # chats that got their reply
    duplicated: int  # chats that got it more than once
    seconds: float  # from the first message to the last reply
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.chats - self.answered

    def record(self) -> None:
        """Add this outcome to the bench's results file, when one is named."""
        target = os.environ.get(RESULTS_ENV)
        if target:
            with Path(target).open("a", encoding="utf-8") as out:
                out.write(json.dumps({**asdict(self), "lost": self.lost}) + "\n")


def chat_ids(count: int) -> range:
    return range(FIRST_CHAT, FIRST_CHAT + count)


def counts(api: FakeBotApi, chats: range) -> tuple[int, int]:
    """Chats with at least one reply sent, and chats with more than one."""
    per_chat = {chat: 0 for chat in chats}
    for call in api.answered("sendMessage"):
        if call.chat_id in per_chat:
            per_chat[call.chat_id] += 1
    return sum(n >= 1 for n in per_chat.values()), sum(n > 1 for n in per_chat.values())


def wait_polling(running: RunningBot, timeout: float = 90.0) -> None:
    try:
        running.api.wait_for(lambda a: bool(a.calls("getUpdates")), timeout=timeout)
    except AssertionError:
        running.stop()
        raise AssertionError(f"the bot never polled:\n{running.stderr()[-3000:]}") from None


def last_reply(api: FakeBotApi, chats: range) -> float:
    """The monotonic time of the last reply sent to one of ``chats``."""
    return max((c.at for c in api.answered("sendMessage") if c.chat_id in chats), default=0.0)


def ledger(data_dir: Path) -> dict[str, int]:
    """What the bot's database says: unfinished updates, unsent and sent messages, and
    ``delivered`` events."""
    store = Store(f"sqlite:///{data_dir / 'amlbot.sqlite3'}", create=False)
    try:
        with store.session() as session:
            def count(query: Any) -> int:
                return int(session.scalar(query) or 0)

            return {
                "updates": count(select(func.count()).select_from(TelegramUpdate)),
                "updates_unanswered": count(select(func.count()).select_from(TelegramUpdate)
                                            .where(TelegramUpdate.status != "done")),
                "outbox_unsent": count(select(func.count()).select_from(OutboxMessage)
                                       .where(OutboxMessage.status.in_(("pending",
                                                                        "sending")))),
                "outbox_uncertain": count(select(func.count()).select_from(OutboxMessage)
                                          .where(OutboxMessage.status == "uncertain")),
                "outbox_sent": count(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.status == "sent")),
                "delivered_events": count(select(func.count()).select_from(Event)
                                          .where(Event.type == "delivered")),
            }
    finally:
        store.dispose()


def wait_drained(running: RunningBot, updates: int, timeout: float) -> dict[str, int]:
    """Wait until the bot has stored ``updates`` updates, answered them all and sent every
    reply; the ledger then."""
    deadline = time.monotonic() + timeout
    while True:
        book = ledger(running.data_dir)
        if (book["updates"] >= updates and book["outbox_unsent"] == 0
                and book["updates_unanswered"] == 0):
            return book
        if time.monotonic() > deadline:
            raise AssertionError(f"the outbox never drained: {book}\n{running.stderr()[-2000:]}")
        time.sleep(0.25)


def burst_kill_restart(workdir: Path, chats: int, *, kill_after_replies: int | None = None,
                       kill_after_seconds: float | None = None) -> Outcome:
    """A burst of ``/start`` from ``chats`` chats; ``kill -9`` mid-burst; restart."""
    ids = chat_ids(chats)
    with FakeBotApi(TOKEN) as api:
        first = _start(api, workdir)
        wait_polling(first)
        started = time.monotonic()
        for chat in ids:
            api.push_text(chat, "/start")
        if kill_after_seconds is not None:
            time.sleep(kill_after_seconds)
        else:
            api.wait_for(lambda a: counts(a, ids)[0] >= (kill_after_replies or 1), timeout=120)
        first.process.kill()
        first.process.wait()
        killed_at = time.monotonic()
        before, _ = counts(api, ids)
        second = _start(api, workdir)
        try:
            book = wait_drained(second, chats, timeout=180)
            last = last_reply(api, ids)
            time.sleep(1.0)  # room for a duplicate to show
            answered, duplicated = counts(api, ids)
        finally:
            second.stop()
        return Outcome("kill -9 mid-burst, restart", chats, answered, duplicated,
                       last - started,
                       {"killed_after_s": round(killed_at - started, 2),
                        "answered_before_kill": before,
                        "restart_to_last_reply_s": round(last - killed_at, 2), **book})


def kill_during_slow_answers(workdir: Path, chats: int, *, in_flight: int = 8,
                             hang: float = 10.0) -> Outcome:
    """Every ``sendMessage`` is carried out but answered ``hang`` s late; ``kill -9`` while
    ``in_flight`` (the bot's send slots) are waiting for their answers; restart.

    The messages in flight did reach the users, and are not sent again."""
    ids = chat_ids(chats)
    with FakeBotApi(TOKEN) as api:
        api.hang("sendMessage", hang)
        first = _start(api, workdir)
        wait_polling(first)
        started = time.monotonic()
        for chat in ids:
            api.push_text(chat, "/start")
        api.wait_for(lambda a: len(a.answered("sendMessage")) >= in_flight, timeout=120)
        time.sleep(1.0)  # every slot is now waiting for an answer, none is starting a send
        first.process.kill()
        first.process.wait()
        killed_at = time.monotonic()
        before, _ = counts(api, ids)
        api.restore()
        second = _start(api, workdir)
        try:
            book = wait_drained(second, chats, timeout=180)
            last = last_reply(api, ids)
            time.sleep(1.0)
            answered, duplicated = counts(api, ids)
        finally:
            second.stop()
        return Outcome("kill -9 while answers hang, restart", chats, answered, duplicated,
                       last - started,
                       {"answered_before_kill": before,
                        "restart_to_last_reply_s": round(last - killed_at, 2), **book})


def send_outage(workdir: Path, chats: int, phases: list[tuple[int, float]]) -> Outcome:
    """``sendMessage`` answers the given statuses for the given seconds, one phase after the
    other, while ``chats`` chats each send ``/start``."""
    ids = chat_ids(chats)
    with FakeBotApi(TOKEN) as api:
        running = _start(api, workdir)
        try:
            wait_polling(running)
            started = time.monotonic()
            offset = 0.0
            for status, seconds in phases:
                api.outage("sendMessage", status, seconds, after=offset)
                offset += seconds
            for chat in ids:
                api.push_text(chat, "/start")
            book = wait_drained(running, chats, timeout=offset + 120)
            last = last_reply(api, ids)
            time.sleep(1.0)
            answered, duplicated = counts(api, ids)
            refused = len(api.calls("sendMessage")) - len(api.answered("sendMessage"))
        finally:
            running.stop()
        label = " then ".join(f"{status} for {seconds:g} s" for status, seconds in phases)
        return Outcome(f"sendMessage outage: {label}", chats, answered, duplicated,
                       last - started,
                       {"outage_s": offset, "drained_after_outage_s":
                        round(max(0.0, last - started - offset), 2),
                        "refused_calls": refused, **book})


def hanging_sends(workdir: Path, chats: int, hang: float) -> Outcome:
    """Every ``sendMessage`` is carried out but answered ``hang`` s late (longer than the
    5 s read timeout python-telegram-bot uses by default)."""
    ids = chat_ids(chats)
    with FakeBotApi(TOKEN) as api:
        api.hang("sendMessage", hang)
        running = _start(api, workdir)
        try:
            wait_polling(running)
            started = time.monotonic()
            for chat in ids:
                api.push_text(chat, "/start")
            book = wait_drained(running, chats, timeout=hang * (chats / 8 + 4) + 60)
            finished = time.monotonic()
            time.sleep(1.0)
            answered, duplicated = counts(api, ids)
        finally:
            running.stop()
        return Outcome(f"sendMessage answers {hang:g} s late", chats, answered, duplicated,
                       finished - started, {"hang_s": hang, **book})


def fatal_polling(workdir: Path, status: int) -> Outcome:
    """``getUpdates`` answers ``status`` (401 or 404: the token is dead): how long the
    process takes to exit, with which status, and what it logs at ERROR."""
    with FakeBotApi(TOKEN) as api:
        api.outage("getUpdates", status)
        running = _start(api, workdir)
        try:
            wait_polling(running)
            refused_at = api.calls("getUpdates")[0].at
            code = running.process.wait(timeout=60)
            exited = time.monotonic()
        finally:
            running.stop()
        errors = [line for line in running.stderr().splitlines() if " ERROR " in line]
        return Outcome(f"getUpdates answers {status}", 0, 0, 0, exited - refused_at,
                       {"exit_status": code, "error_lines": errors,
                        "getUpdates_calls": len(api.calls("getUpdates"))})
