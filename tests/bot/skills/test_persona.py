"""Questions about the bot itself get true answers, on the real MiniLM encoder and the small
trained NLP bundle; ordinary small talk still gets replies from real conversations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bot.app import build_assistant, load_nlp, workspace
from bot.core import Message
from bot.skills.persona import SAME_QUESTION, TOPICS, Persona, evaluate, read_questions
from nlp_core.chitchat import ChitChatResponder, load_or_train_chitchat
from nlp_core.encoder import Encoder
from tests.support.nlp import small_nlp_settings

HELD_OUT = Path(__file__).parents[3] / "docs" / "eval" / "persona" / "questions.tsv"
VALIDATION = HELD_OUT.with_name("validation.tsv")
ANSWERS = {topic.answer for topic in TOPICS}


@pytest.fixture(scope="module")
def chitchat(trained_nlp_dir: Path, encoder: Encoder) -> ChitChatResponder:
    """The small bundle's chit-chat index (1,500 real dialogue prompts)."""
    return load_or_train_chitchat(workspace(small_nlp_settings(trained_nlp_dir)), encoder)


@pytest.fixture(scope="module")
def persona(encoder: Encoder, chitchat: ChitChatResponder) -> Persona:
    return Persona(encoder.encode).fit(chitchat.prompt_vectors())


def test_each_topic_answers_its_own_examples_and_not_other_small_talk(
        persona: Persona, encoder: Encoder) -> None:
    for topic in TOPICS:
        for question in topic.questions:
            assert persona.answer(encoder.encode([question])) == topic.answer, question
    for text in ("what is your favourite movie?", "I love pizza", "how is the weather today?",
                 "my cat is sick", "do you like football?"):
        assert persona.answer(encoder.encode([text])) is None, text


def test_paraphrases_beyond_the_examples_get_their_topic(persona: Persona,
                                                        encoder: Encoder) -> None:
    """The validation phrasings (none is an example): learnt against the small bundle's 1,500
    prompts, 20 of 46 are answered on their topic; the nearest example from cosine 0.7 got 7."""
    questions = read_questions(VALIDATION)
    vectors = encoder.encode([text for _, text in questions])
    right = [persona.match(vectors[i:i + 1]) for i in range(len(questions))]
    hits = sum(topic.name == asked and score >= persona.threshold
               for (asked, _), (topic, score) in zip(questions, right, strict=True))
    assert hits >= 15


def test_small_talk_that_asks_what_an_example_asks_is_not_learnt_as_small_talk(
        encoder: Encoder, chitchat: ChitChatResponder) -> None:
    small_talk = chitchat.prompt_vectors()
    persona = Persona(encoder.encode).fit(np.vstack([small_talk,
                                                     encoder.encode(["what is your name?"])]))
    assert persona.small_talk_seen_ == int(
        ((small_talk @ persona.vectors_.T).max(axis=1) < SAME_QUESTION).sum())
    with pytest.raises(ValueError, match="no small talk"):
        Persona(encoder.encode).fit(encoder.encode(["what's your name"]))


def test_the_held_out_questions_are_not_among_the_examples() -> None:
    held_out, validation = read_questions(HELD_OUT), read_questions(VALIDATION)
    examples = {q.lower().strip(" ?") for topic in TOPICS for q in topic.questions}
    assert len(held_out) >= 25 and len(validation) >= 40
    kept_apart = examples | {text.lower().strip(" ?") for _, text in validation}
    assert not [text for _, text in held_out if text.lower().strip(" ?") in kept_apart]
    assert not [text for _, text in validation if text.lower().strip(" ?") in examples]


def test_a_bad_questions_file_says_which_line(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("# comment\nname\twhats ur name\nweather\tis it sunny?\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"q.tsv:3: expected 'topic<TAB>text'"):
        read_questions(path)


def test_evaluate_counts_answers_and_small_talk_taken_for_questions(persona: Persona) -> None:
    report = evaluate(persona, [("name", "what do people call you?"),
                                ("origin", "what's under your hood?")],
                      ["who are you", "I love pizza", "my cat is sick"],
                      thresholds=(0.3, 1.01))
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
        assert ask("who programmed you?").startswith("I grew out")  # not an example
        assert ask("what is your favourite movie?") not in ANSWERS
    finally:
        assistant.close()


def test_eval_persona_prints_a_line_per_threshold_and_json(trained_nlp_dir: Path,
                                                           tmp_path: Path) -> None:
    amlbot = Path(sys.executable).with_name("amlbot")
    env = {**os.environ, "AMLBOT_DATA_DIR": str(trained_nlp_dir), "AMLBOT_CHITCHAT_PAIRS": "1500"}
    result = subprocess.run([str(amlbot), "eval", "persona", "--data", str(HELD_OUT),
                             "--small-talk", "200", "--json"], capture_output=True, text=True,
                            env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "<- used" in "\n".join(lines[:-1])
    report = json.loads(lines[-1])
    assert report["questions"] == len(read_questions(HELD_OUT))
    # The sample plus chatterbot-corpus, less the prompts of the chit-chat index it learnt from.
    assert 0 < report["small_talk"] < 200 + 1000
    bad = tmp_path / "bad.tsv"
    bad.write_text("nobody\tanything\n", encoding="utf-8")
    failed = subprocess.run([str(amlbot), "eval", "persona", "--data", str(bad)],
                            capture_output=True, text=True, env=env, timeout=600, check=False)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ")
    assert "Traceback" not in failed.stderr


def test_one_persona_is_learnt_per_bundle_and_shared(trained_nlp_dir: Path) -> None:
    from bot.skills.nlp import persona_of

    settings = small_nlp_settings(trained_nlp_dir)
    nlp, other = load_nlp(settings, quiet=True), load_nlp(settings, quiet=True)
    assert persona_of(nlp) is persona_of(nlp) is not None
    assert persona_of(other) is not persona_of(nlp)
