"""Faces end to end: photos with /remember and /faces through the real ``amlbot telegram``
process and the fake Bot API server; recognition is per chat; bad images get clear answers."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from course_tools.vision.faces.bench import make_photo
from course_tools.vision.faces.evaluate import load_orl
from course_tools.vision.images import encode_jpeg
from tests.bot.channels.test_telegram_e2e import RunningBot, _amlbot, _bot_env, _start
from tests.course_tools.vision.test_images import png_header_only
from tests.support.fake_bot_api import FakeBotApi

TOKEN = "123456789:AAHfakeTokenForEndToEndTests_x1y2z3"


def _photo(faces: list[np.ndarray], seed: int = 0) -> bytes:
    """A 320 px JPEG with these ORL crops on it (small: the test bot accepts 50 kB)."""
    return encode_jpeg(make_photo(faces, 320, np.random.default_rng(seed)))


def _job_result(api: FakeBotApi, chat: int, command: str, timeout: float = 120.0) -> str:
    """The text of the finished-job message for ``command`` in ``chat``."""
    pattern = re.compile(rf"Job \w+ \(vision\.faces {command}\) (finished|failed)")
    api.wait_for(lambda a: any(pattern.search(t) for t in a.texts(chat)), timeout=timeout)
    return next(t for t in api.texts(chat) if pattern.search(t))


@pytest.mark.timeout(600)
def test_remember_then_faces_names_the_person_in_this_chat_only(tmp_path: Path) -> None:
    crops, _ = load_orl(3)
    alice_first, alice_again = crops[0], crops[4]  # person 1, shots 1 and 5
    with FakeBotApi(TOKEN) as api:
        running: RunningBot = _start(api, tmp_path / "bot")
        try:
            api.wait_for(lambda a: bool(a.calls("getUpdates")), timeout=60)
            enrol = api.add_file(_photo([alice_first]))
            api.push_photo(101, enrol, caption="/remember alice")
            assert "alice" in _job_result(api, 101, "remember").lower()

            probe = api.add_file(_photo([alice_again], seed=5))
            api.push_photo(101, probe, caption="/faces")
            found = _job_result(api, 101, "detect")
            assert "alice" in found.lower(), found
            api.wait_for(lambda a: bool(a.calls("sendPhoto", 101)), timeout=60)

            # The same photo in another chat: nobody is enrolled there.
            api.push_photo(202, probe, caption="/faces")
            elsewhere = _job_result(api, 202, "detect")
            assert "alice" not in elsewhere.lower(), elsewhere
            assert "unknown" in elsewhere.lower() or "1 face" in elsewhere.lower()

            api.push_text(101, "/faces list")
            listed = re.compile(r"Job \w+ \(vision\.faces list\) finished")
            api.wait_for(lambda a: any(listed.search(t) for t in a.texts(101)), timeout=120)
            assert "alice" in next(t for t in api.texts(101) if listed.search(t)).lower()
        finally:
            running.stop()


@pytest.mark.timeout(600)
def test_bad_images_get_clear_answers_and_others_keep_being_answered(tmp_path: Path) -> None:
    crops, _ = load_orl(30)
    good = _photo([crops[0]])
    one_pixel = io.BytesIO()
    Image.new("RGB", (1, 1)).save(one_pixel, format="PNG")
    cases = {
        301: good[: len(good) // 2],          # a truncated JPEG
        302: png_header_only(50_000, 50_000),  # a decompression bomb
        303: one_pixel.getvalue(),             # a 1x1 image
        304: b"this is not an image" * 50,     # not an image at all
        305: bytes(60_000),                    # over the test bot's 50 kB limit
        306: _photo([], seed=1),               # no face
    }
    with FakeBotApi(TOKEN) as api:
        running = _start(api, tmp_path / "bot")
        try:
            api.wait_for(lambda a: bool(a.calls("getUpdates")), timeout=60)
            for chat, data in cases.items():
                api.push_photo(chat, api.add_file(data), caption="/faces")
            api.push_text(399, "/start")
            api.wait_for(lambda a: bool(a.texts(399)), timeout=60)  # others still answered
            for chat in cases:
                api.wait_for(lambda a, c=chat: any(
                    "failed" in t or "finished" in t or "too big" in t or "broken" in t
                    for t in a.texts(c)), timeout=180)
            texts = {chat: " ".join(api.texts(chat)).lower() for chat in cases}
            assert "too big" in texts[305]
            assert "broken" in texts[304] or "not" in texts[304]
            for chat in (301, 302, 303, 306):
                assert "went wrong" not in texts[chat] and "traceback" not in texts[chat]
            assert "no face" in texts[306]
            assert running.process.poll() is None  # the bot is still up
        finally:
            running.stop()


@pytest.mark.timeout(900)
def test_train_then_caption_a_photo_through_telegram(tmp_path: Path) -> None:
    from course_tools.vision.caption.data import generate_scenes, png_bytes

    scene = png_bytes(generate_scenes(80, seed=0).load(3))
    chat = 501
    workdir = tmp_path / "bot"
    workdir.mkdir()
    with FakeBotApi(TOKEN) as api:
        env = _bot_env(api, workdir / "data", AMLBOT_ADMINS=str(chat))
        process = subprocess.Popen([*_amlbot(), "--verbose", "telegram"], env=env, cwd=workdir,
                                   stdout=subprocess.DEVNULL,
                                   stderr=(workdir / "bot.stderr").open("wb"))
        running = RunningBot(api, process, workdir / "bot.stderr", workdir / "data")
        try:
            api.wait_for(lambda a: bool(a.calls("getUpdates")), timeout=60)
            api.push_photo(chat, api.add_file(scene), caption="/caption")
            ended = re.compile(r"Job \w+ \(vision\.caption caption\) finished")
            api.wait_for(lambda a: any(ended.search(t) for t in a.texts(chat)), timeout=180)
            assert "/train vision.caption" in " ".join(api.texts(chat))  # no model yet: how to

            api.push_text(chat, "/train vision.caption dataset=scenes n_scenes=80 epochs=4 "
                                "hidden=64 embed=32 batch_size=16 beam=2")
            trained = re.compile(r"Job \w+ \(vision\.caption train\) finished")
            api.wait_for(lambda a: any(trained.search(t) for t in a.texts(chat)), timeout=600)

            api.push_photo(chat, api.add_file(scene), caption="/caption")
            api.wait_for(lambda a: sum(bool(ended.search(t)) for t in a.texts(chat)) >= 2,
                         timeout=180)
            answer = [t for t in api.texts(chat) if ended.search(t)][-1]
            assert "synthetic" in answer  # it says which data set the model learned from
            sentence = answer.split("\n", 1)[1]
            assert len(sentence.split()) >= 3, answer
        finally:
            running.stop()
