"""End to end: the real ``amlbot telegram`` process long-polls a fake Bot API on 127.0.0.1.

Nothing on our side of the wire is replaced: the bot is a subprocess, and every assertion is
about the HTTP requests it made to the server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.storage.store import Store
from tests.support.fake_bot_api import TEXT_LIMIT, FakeBotApi, png_bytes, utf16_length
from tests.support.skills import SLOW_SECONDS, long_text

REPO = Path(__file__).resolve().parents[3]
TOKEN = "123456789:AAHfakeTokenForEndToEndTests_x1y2z3"
MAX_UPLOAD = 50_000
TEST_SKILLS = ",".join(f"tests.support.skills:{name}"
                       for name in ("SlowSkill", "LongSkill", "MediaSkill"))


def _amlbot() -> list[str]:
    script = Path(sys.executable).with_name("amlbot")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from bot.cli.main import app; app()"]


def _bot_env(api: FakeBotApi | None, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLBOT_")}
    env.update(
        AMLBOT_DATA_DIR=str(data_dir),
        AMLBOT_NLU_ENABLED="false",
        AMLBOT_EXTRA_SKILLS=TEST_SKILLS,
        AMLBOT_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
        AMLBOT_TELEGRAM_POLL_TIMEOUT="2",
        AMLBOT_TELEGRAM_PROGRESS_INTERVAL="0.2",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        **extra,
    )
    if api is not None:
        env.update(AMLBOT_TELEGRAM_TOKEN=TOKEN, AMLBOT_TELEGRAM_BASE_URL=api.base_url,
                   AMLBOT_TELEGRAM_BASE_FILE_URL=api.base_file_url)
    return env


@dataclass
class RunningBot:
    """The bot subprocess, its fake server and where its stderr goes."""

    api: FakeBotApi
    process: subprocess.Popen[bytes]
    stderr_path: Path
    data_dir: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


def _start(api: FakeBotApi, workdir: Path, *args: str,
           env: dict[str, str] | None = None) -> RunningBot:
    """Start ``amlbot telegram`` on ``workdir/data``; a second start there is a restart (its
    log is appended to the first's)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stderr_path = workdir / "bot.stderr"
    data_dir = workdir / "data"
    with stderr_path.open("ab") as stderr:
        process = subprocess.Popen(
            [*_amlbot(), "--verbose", "telegram", *args],
            env=_bot_env(api, data_dir, **(env or {})), cwd=workdir,
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    return RunningBot(api, process, stderr_path, data_dir)


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBot]:
    """One bot process for the module, long-polling a fresh fake server."""
    with FakeBotApi(TOKEN) as api:
        running = _start(api, tmp_path_factory.mktemp("telegram-bot"))
        try:
            api.wait_for(lambda a: bool(a.calls("getUpdates")), timeout=60)
        except AssertionError:
            running.stop()
            raise AssertionError(f"the bot never polled:\n{running.stderr()[-3000:]}") from None
        yield running
        running.stop()


def _replies(api: FakeBotApi, chat_id: int, count: int, timeout: float = 20.0) -> list[str]:
    api.wait_for(lambda a: len(a.texts(chat_id)) >= count, timeout=timeout)
    return api.texts(chat_id)


# --- a conversation --------------------------------------------------------------------------


def test_start_text_photo_sticker_and_edits(bot: RunningBot) -> None:
    api, chat = bot.api, 101
    api.push_text(chat, "/start")
    assert _replies(api, chat, 1)[0].startswith("Hi user101!")

    api.push_text(chat, "hello there")
    assert len(_replies(api, chat, 2)) == 2

    image = png_bytes(12, 10)
    api.push_photo(chat, api.add_file(image))
    assert "Thanks for the file" in _replies(api, chat, 3)[2]

    api.push_sticker(chat)
    assert "can't read stickers" in _replies(api, chat, 4)[3]

    api.push_update({"edited_message": api.message_payload(chat, text="hello (edited)")})
    assert "only answer new messages" in _replies(api, chat, 5)[4]

    # The assistant got the photo's exact bytes as an image attachment (the event log says so).
    store = Store(f"sqlite:///{bot.data_dir / 'amlbot.sqlite3'}", create=False)
    try:
        inbound = [e for e in store.history(str(chat), limit=50) if e.type == "message"]
    finally:
        store.dispose()
    assert [e.text for e in inbound] == ["/start", "hello there", ""]
    assert inbound[2].data is not None
    assert inbound[2].data["attachments"] == [
        {"kind": "image", "bytes": len(image), "filename": "photo.png"}
    ]
    assert inbound[0].channel == "telegram"

    # Start-up registered the command menu, generated from the skills' declarations.
    menu = json.loads(api.calls("setMyCommands")[0].params["commands"])
    names = {item["command"] for item in menu}
    assert {"start", "help", "slow", "long"} <= names


def test_a_long_reply_is_split_at_line_boundaries(bot: RunningBot) -> None:
    api, chat = bot.api, 102
    api.push_text(chat, "/long")
    expected = long_text()
    api.wait_for(lambda a: sum(len(t) for t in a.texts(chat)) >= len(expected))
    texts = api.texts(chat)
    assert "".join(texts) == expected
    assert len(texts) >= 3
    assert all(0 < utf16_length(t) <= TEXT_LIMIT for t in texts)
    # Only the one line longer than a message is cut mid-line.
    assert sum(not t.endswith("\n") for t in texts[:-1]) == 1


def test_image_document_and_progress_replies(bot: RunningBot) -> None:
    api, chat = bot.api, 103
    api.push_text(chat, "/image")
    api.wait_for(lambda a: bool(a.calls("sendPhoto", chat)))
    photo = api.calls("sendPhoto", chat)[0]
    assert photo.files["photo"].data == png_bytes(16, 16)
    assert photo.params["caption"] == "a gradient"

    api.push_text(chat, "/doc")
    api.wait_for(lambda a: bool(a.calls("sendDocument", chat)))
    document = api.calls("sendDocument", chat)[0]
    assert document.files["document"] == document.files["document"].__class__(
        "report.csv", b"col1,col2\n1,2\n")

    api.push_text(chat, "/progress")
    api.wait_for(lambda a: any("✓" in c.text for c in a.calls("editMessageText", chat)))
    [first] = api.calls("sendMessage", chat)
    edits = api.calls("editMessageText", chat)
    assert first.text.startswith("Working") and "0%" in first.text
    assert edits[-1].text.endswith("100% ✓ all done")
    assert 2 <= len(edits) <= 8  # ~1 s of 20 updates, at most one edit per 0.2 s
    assert all(e.params["message_id"] == edits[0].params["message_id"] for e in edits)
    gaps = [b.at - a.at for a, b in zip(edits, edits[1:], strict=False)]
    assert min(gaps) >= 0.15


def test_oversized_and_broken_photos_get_a_clear_answer(bot: RunningBot) -> None:
    api, chat = bot.api, 104
    # Declared too big: refused before any download.
    big = api.add_file(png_bytes(), file_size=5_000_000)
    api.push_photo(chat, big, declared_size=5_000_000)
    assert "too big (5.0 MB)" in _replies(api, chat, 1)[0]
    assert not [c for c in api.calls("getFile") if c.params.get("file_id") == big]

    # Declared small, but the bytes are larger than the limit: caught after the download.
    liar = api.add_file(png_bytes() + b"\0" * (MAX_UPLOAD + 10), file_size=100)
    api.push_photo(chat, liar, declared_size=100)
    assert "too big" in _replies(api, chat, 2)[1]

    # Not an image at all.
    api.push_photo(chat, api.add_file(b"this is not a picture"))
    assert "looks broken" in _replies(api, chat, 3)[2]

    # A file id the server does not know.
    api.state.files["gone"] = ("photos/gone.bin", b"", None)
    api.push_photo(chat, "gone")
    del api.state.files["gone"]
    assert "couldn't fetch" in _replies(api, chat, 4)[3]


def test_flood_waits_and_network_errors_are_retried(bot: RunningBot) -> None:
    api, chat = bot.api, 105
    for kind in ("retry_after", "bad_gateway", "drop"):
        api.inject_fault("sendMessage", kind)
    started = time.monotonic()
    api.push_text(chat, "/start")
    replies = _replies(api, chat, 4, timeout=30)  # 3 failed attempts are recorded, then one ok
    assert sorted(kind for _, kind in api.state.faults_fired) == [
        "bad_gateway", "drop", "retry_after"]
    assert len(set(replies)) == 1 and replies[0].startswith("Hi user105!")
    assert time.monotonic() - started >= 1.0  # the flood wait (retry_after=1) was honoured
    time.sleep(0.5)
    assert len(api.texts(chat)) == 4  # and nothing was sent twice after success


# --- concurrency -------------------------------------------------------------------------------


def _latency(api: FakeBotApi, update_id: int, chat_id: int) -> float:
    delivered = api.delivered(update_id)
    assert delivered is not None
    [reply] = api.calls("sendMessage", chat_id)
    return reply.at - delivered


def test_a_slow_chat_does_not_delay_the_others(bot: RunningBot) -> None:
    api = bot.api
    time.sleep(1.1)  # let the flood-limit bucket of earlier tests drain

    def fast_round(first_chat: int) -> list[float]:
        """One message in each of 10 chats, one after the other: reply latencies, s."""
        latencies = []
        for chat in range(first_chat, first_chat + 10):
            update_id = api.push_text(chat, "/help")
            _replies(api, chat, 1)
            latencies.append(_latency(api, update_id, chat))
        return latencies

    baseline = fast_round(2000)
    time.sleep(0.5)

    slow_chat = 2999
    slow_update = api.push_text(slow_chat, "/slow")
    api.wait_for(lambda a: a.delivered(slow_update) is not None)
    time.sleep(0.3)  # the slow skill is now sleeping in its worker thread
    during = fast_round(3000)
    slow_reply = _replies(api, slow_chat, 1, timeout=SLOW_SECONDS + 10)
    assert slow_reply == ["slow done"]
    slow_at = api.calls("sendMessage", slow_chat)[0].at
    slow_started = api.delivered(slow_update)
    assert slow_started is not None
    assert slow_at - slow_started >= SLOW_SECONDS
    # Every fast reply went out while /slow was still working...
    fast_calls = [c for chat in range(3000, 3010) for c in api.calls("sendMessage", chat)]
    assert all(c.at < slow_at for c in fast_calls)
    # ...and no slower than without it (medians, so one scheduler hiccup does not decide).
    delay = statistics.median(during) - statistics.median(baseline)
    print(f"median latency: baseline {statistics.median(baseline) * 1000:.1f} ms, "
          f"during /slow {statistics.median(during) * 1000:.1f} ms, max {max(during) * 1000:.1f}")
    assert delay < 0.1
    assert max(during) < 1.0
    # The slow chat was shown "typing…" while it waited.
    actions = api.calls("sendChatAction", slow_chat)
    assert actions and actions[0].params["action"] == "typing"


def test_fifty_chats_times_five_messages_are_all_answered_in_order(bot: RunningBot) -> None:
    api = bot.api
    chats = range(5000, 5050)
    for round_ in range(5):
        for chat in chats:
            api.push_text(chat, f"/ask{round_}")
    started = time.monotonic()
    api.wait_for(lambda a: all(len(a.texts(chat)) >= 5 for chat in chats), timeout=60)
    print(f"250 messages from 50 chats answered in {time.monotonic() - started:.1f} s")
    for chat in chats:
        texts = api.texts(chat)
        assert len(texts) == 5
        assert [re.search(r"/ask\d", t).group() for t in texts] == [  # type: ignore[union-attr]
            f"/ask{i}" for i in range(5)]


# --- the log never shows the token -----------------------------------------------------------


def test_the_token_never_reaches_the_log(bot: RunningBot) -> None:
    """Runs last in this module: stops the bot, then reads everything it logged (at DEBUG)."""
    assert bot.stop() == 0
    log = bot.stderr()
    assert "getUpdates" in log  # the Bot API URLs were logged...
    assert "/bot**********/" in log and "/file/bot**********/" in log  # ...masked
    assert TOKEN not in log
    assert quote(TOKEN, safe="") not in log
    assert TOKEN.split(":")[1] not in log


# --- other ways to start -----------------------------------------------------------------------


def test_no_token_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run([*_amlbot(), "telegram"], env=_bot_env(None, tmp_path / "data"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "AMLBOT_TELEGRAM_TOKEN is not set" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_webhook_mode(tmp_path: Path) -> None:
    port = _free_port()
    with FakeBotApi(TOKEN) as api:
        url = f"http://127.0.0.1:{port}/amlbot-hook"
        running = _start(api, tmp_path, "--webhook-url", url, "--listen", "127.0.0.1",
                         "--port", str(port))
        try:
            api.wait_for(lambda a: bool(a.calls("setWebhook")), timeout=60)
            assert api.state.webhook["url"] == url
            assert len(api.state.webhook["secret"]) >= 32
            time.sleep(0.5)  # the server starts listening right after setWebhook
            status = api.deliver_via_webhook({"message": api.message_payload(7, text="/start")})
            assert status == 200
            assert _replies(api, 7, 1)[0].startswith("Hi user7!")
            assert not api.calls("getUpdates")

            api.state.webhook["secret"] = "forged"
            with pytest.raises(Exception, match="403"):
                api.deliver_via_webhook({"message": api.message_payload(8, text="/start")})
        finally:
            assert running.stop() == 0
        assert TOKEN not in running.stderr()
