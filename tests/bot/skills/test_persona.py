"""Questions about the bot itself get true answers, on the real MiniLM encoder and the small
trained NLP bundle; ordinary small talk still gets replies from real conversations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import build_assistant, load_nlp
from bot.core import Message
from bot.skills.persona import TOPICS, Persona, evaluate, read_questions
from nlp_core.encoder import Encoder
from tests.support.nlp import small_nlp_settings

HELD_OUT = Path(__file__).parents[3] / "docs" / "eval" / "persona" / "questions.tsv"
ANSWERS = {topic.answer for topic in TOPICS}


@pytest.fixture(scope="module")
def persona(encoder: Encoder) -> Persona:
    return Persona(encoder.encode).fit()


def test_each_topic_answers_its_own_examples_and_not_other_small_talk(
        persona: Persona, encoder: Encoder) -> None:
    for topic in TOPICS:
        for question in topic.questions:
            assert persona.answer(encoder.encode([question])) == topic.answer, question
    for text in ("what is your favourite movie?", "I love pizza", "how is the weather today?",
                 "my cat is sick", "do you like football?"):
        assert persona.answer(encoder.encode([text])) is None, text


def test_the_held_out_questions_are_not_among_the_examples() -> None:
    held_out = read_questions(HELD_OUT)
    examples = {q.lower().strip(" ?") for topic in TOPICS for q in topic.questions}
    assert len(held_out) >= 25
    assert not [text for _, text in held_out if text.lower().strip(" ?") in examples]


def test_a_bad_questions_file_says_which_line(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("# comment\nname\twhats ur name\nweather\tis it sunny?\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"q.tsv:3: expected 'topic<TAB>text'"):
        read_questions(path)


def test_evaluate_counts_answers_and_small_talk_taken_for_questions(persona: Persona) -> None:
    report = evaluate(persona, [("name", "what do people call you?"),
                                ("origin", "what's under your hood?")],
                      ["who are you", "I love pizza", "my cat is sick"],
                      thresholds=(0.5, 0.99))
    low, high = report["by_threshold"]
    assert report["questions"] == 2 and report["small_talk"] == 3
    assert low["questions_answered"] >= high["questions_answered"] == 0
    assert low["small_talk_answered"] >= 1  # "who are you" asks about the bot too
    assert high["small_talk_answered"] == 0
    assert report["closest_small_talk"][0][1] == "who are you"


def test_the_chat_answers_who_it_is_and_keeps_small_talk(trained_nlp_dir: Path,
                                                         tmp_path: Path) -> None:
    settings = small_nlp_settings(trained_nlp_dir,
                                  database_url=f"sqlite:///{tmp_path / 'chat.db'}")
    assistant = build_assistant(settings, nlp=load_nlp(settings, quiet=True))
    try:
        def ask(text: str) -> str:
            [reply] = assistant.handle(Message(chat_id="c1", user_id="u1", text=text))
            return str(reply.text)

        assert ask("what is your name?").startswith("I'm amlbot")
        assert ask("are you a bot?").startswith("I'm a bot, not a person")
        assert ask("What is your name?").startswith("I'm amlbot")  # the truth, again
        assert ask("what is your favourite movie?") not in ANSWERS
    finally:
        assistant.close()


def test_eval_persona_prints_a_line_per_threshold_and_json(tmp_path: Path) -> None:
    amlbot = Path(sys.executable).with_name("amlbot")
    env = {**os.environ, "AMLBOT_DATA_DIR": str(tmp_path), "AMLBOT_ENCODER_BACKEND": "torch"}
    result = subprocess.run([str(amlbot), "eval", "persona", "--data", str(HELD_OUT),
                             "--small-talk", "200", "--json"], capture_output=True, text=True,
                            env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "<- used" in "\n".join(lines[:-1])
    report = json.loads(lines[-1])
    assert report["questions"] == len(read_questions(HELD_OUT))
    assert report["small_talk"] >= 200  # the sample plus chatterbot-corpus
    bad = tmp_path / "bad.tsv"
    bad.write_text("nobody\tanything\n", encoding="utf-8")
    failed = subprocess.run([str(amlbot), "eval", "persona", "--data", str(bad)],
                            capture_output=True, text=True, env=env, timeout=600, check=False)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ")
    assert "Traceback" not in failed.stderr
