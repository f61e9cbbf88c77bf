"""Background jobs through Telegram: two jobs, a live progress message, one cancelled, one read.

The real ``amlbot telegram`` process talks to the fake Bot API server; jobs run in real
worker processes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bot.channels.test_telegram_e2e import RunningBot, _start
from tests.support.fake_bot_api import FakeBotApi

TOKEN = "123456789:AAHfakeTokenForEndToEndTests_x1y2z3"
PI = "demo.montecarlo_pi"


def _job_id(text: str) -> str:
    match = re.search(r"job (\w+)", text, re.IGNORECASE)
    assert match, text
    return match.group(1)


@pytest.mark.timeout(240)
def test_two_jobs_progress_cancel_and_result(tmp_path: Path) -> None:
    chat = 301
    with FakeBotApi(TOKEN) as api:
        running: RunningBot = _start(api, tmp_path / "bot")
        try:
            api.wait_for(lambda a: bool(a.calls("getUpdates")), timeout=60)
            api.push_text(chat, f"/run {PI} n=1M pace=0.2")
            api.wait_for(lambda a: any("Started job" in t for t in a.texts(chat)), timeout=60)
            first = _job_id(next(t for t in api.texts(chat) if "Started job" in t))
            api.push_text(chat, f"/run {PI} n=20k")
            api.wait_for(lambda a: sum("Started job" in t for t in a.texts(chat)) >= 2,
                         timeout=60)
            second = _job_id([t for t in api.texts(chat) if "Started job" in t][1])
            assert first != second

            # The first job's progress message is edited in place while it runs.
            api.wait_for(lambda a: len(a.calls("editMessageText", chat)) >= 2, timeout=90)
            api.push_text(chat, f"/cancel {first}")
            api.wait_for(lambda a: any("cancel" in t.lower() and first in t
                                       for t in a.texts(chat)), timeout=60)

            # The second job runs after the first is cancelled, and its results arrive later.
            api.wait_for(lambda a: bool(a.calls("sendPhoto", chat)), timeout=120)
            api.push_text(chat, f"/job {second}")
            api.wait_for(lambda a: any("π" in t or "pi" in t.lower()
                                       for t in a.texts(chat)[-3:]), timeout=60)
            edits = api.calls("editMessageText", chat)
            ids = {e.params["message_id"] for e in edits}
            assert len(ids) <= 2  # one live message per job
            assert any("✗" in e.text or "cancel" in e.text.lower() for e in edits)
        finally:
            running.stop()
