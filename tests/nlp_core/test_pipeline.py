"""The whole NLU and answer path on real (small) trained models."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import build_assistant, load_nlp
from bot.core import Assistant, Message, TextReply
from bot.skills.base import Request
from bot.skills.nlp import CLOSE_MATCH, SURE_LANGUAGE, StackOverflowSkill
from nlp_core.nlu import Understanding
from tests.support.nlp import small_nlp_settings

# The course's final-project eyeball questions, with the route and language we expect.
EYEBALL = [
    ("Hey", "chitchat", None),
    ("How are you doing?", "chitchat", None),
    ("What's your hobby?", "chitchat", None),
    ("How to write a loop in python?", "programming", "python"),
    ("How to delete rows in pandas?", "programming", "python"),
    ("Catch exceptions C++", "programming", "c/c++"),
    ("How do I sort an array in javascript?", "programming", "javascript"),
    ("Declare a generic list in C#", "programming", "c#"),
    ("NullPointerException when calling a method in java", "programming", "java"),
    ("What is your favourite movie?", "chitchat", None),
]


@pytest.fixture(scope="module")
def assistant(trained_nlp_dir: Path) -> Assistant:
    settings = small_nlp_settings(trained_nlp_dir)
    return build_assistant(settings, nlp=load_nlp(settings, quiet=True))


def _ask(assistant: Assistant, text: str, chat: str = "eyeball") -> str:
    replies = assistant.handle(Message(chat_id=chat, user_id=chat, text=text))
    return "\n".join(r.text for r in replies if isinstance(r, TextReply))


@pytest.mark.parametrize(("text", "route", "language"), EYEBALL)
def test_eyeball_questions_route_and_language(assistant: Assistant, text: str, route: str,
                                              language: str | None) -> None:
    assert assistant.nlp is not None
    understanding = assistant.nlp.understand(text)
    assert understanding.intent == route
    if language is not None:
        assert understanding.language == language
        reply = _ask(assistant, text)
        assert f"a {language} question" in reply
        assert reply.count("https://stackoverflow.com/") == 3


def test_programming_answer_lists_three_threads_with_similarity(assistant: Assistant) -> None:
    reply = _ask(assistant, "How to join two tables in SQL?")
    lines = [line for line in reply.splitlines() if "% similar" in line]
    assert len(lines) == 3
    assert "https://stackoverflow.com/questions/" in reply  # StaQC threads have real ids


def _answer(assistant: Assistant, text: str, understanding: Understanding) -> str:
    request = Request(Message(chat_id="hedge", user_id="hedge", text=text), text,
                      understanding=understanding)
    skill = assistant.router.skill_for(request)
    assert isinstance(skill, StackOverflowSkill)
    replies = skill.handle(request)
    return "\n".join(r.text for r in replies if isinstance(r, TextReply))


def test_an_unsure_language_is_named_with_a_hedge(assistant: Assistant) -> None:
    text = "How to write a loop in python?"
    sure = _answer(assistant, text, Understanding(
        "programming", language="python", language_confidence=SURE_LANGUAGE + 0.1))
    unsure = _answer(assistant, text, Understanding(
        "programming", language="python", language_confidence=SURE_LANGUAGE - 0.3))
    assert "This looks like a python question" in sure and "not sure" not in sure
    assert "It might be a python question" in unsure and "not sure" in unsure
    assert assistant.nlp is not None
    assert assistant.nlp.understand(text).language_confidence > 0.5  # the model knows Python


def test_far_threads_are_not_called_close(assistant: Assistant) -> None:
    assert assistant.nlp is not None
    close, far = "How to write a loop in python?", "qwzx plorf vexing hummingbird teapot"
    assert max(h.score for h in assistant.nlp.search_threads(close, "python")) >= CLOSE_MATCH
    assert max(h.score for h in assistant.nlp.search_threads(far, None)) < CLOSE_MATCH
    programming = Understanding("programming")
    assert "The most similar StackOverflow threads:" in _answer(assistant, close, programming)
    reply = _answer(assistant, far, programming)
    assert "is a close match" in reply and "The most similar" not in reply
    assert reply.count("% similar") == 3  # still shown, with their similarity


def test_an_unseen_tool_request_is_pointed_to_its_tool(assistant: Assistant) -> None:
    assert assistant.nlp is not None
    text = "sample new digits from a generative model"
    understanding = assistant.nlp.understand(text)
    if understanding.intent.startswith("tool:"):  # the small test model may know it already
        assert understanding.intent == "tool:bayes.vae"
        return
    assert understanding.suggested_tool == "bayes.vae"
    reply = _ask(assistant, text, chat="hint")
    assert "course tool bayes.vae" in reply and "/tools bayes.vae" in reply
    assert assistant.nlp.understand("How to write a loop in python?").suggested_tool is None


def test_chitchat_does_not_repeat_itself(assistant: Assistant) -> None:
    replies = [_ask(assistant, "Hi! How are you?", chat="repeat") for _ in range(4)]
    assert len(set(replies)) == 4


def test_tool_requests_reach_the_tool(assistant: Assistant) -> None:
    assert assistant.nlp is not None
    understanding = assistant.nlp.understand("train a DQN on CartPole for 20k steps")
    assert understanding.intent.startswith("tool:rl.")
    assert understanding.slots.get("steps") == 20000


@pytest.mark.parametrize("text", [
    "", "🙂🙂🙂", "```python\nfor i in range(10):\n    print(i)\n```",
    "Traceback (most recent call last):\n" + "  File \"x.py\", line 1, in <module>\n" * 1500
    + "ValueError: invalid literal for int() with base 10: 'abc'",
    "Как отсортировать список в питоне?", "如何在Python中读取文件", "<script>alert(1)</script>",
])
def test_bad_input_gets_an_honest_reply(assistant: Assistant, text: str) -> None:
    reply = _ask(assistant, text, chat="bad-input")
    assert reply.strip()
    assert "went wrong" not in reply


def test_a_huge_stack_trace_is_searched_by_its_error_line(assistant: Assistant) -> None:
    trace = ("Traceback (most recent call last):\n" + "  File \"app.py\", line 3, in main\n" * 2000
             + "KeyError: 'user_id' when reading a python dict")
    reply = _ask(assistant, trace, chat="trace")
    assert "similar StackOverflow threads" in reply
    assert "20,000 in all" in reply  # the cut is said, not hidden


def test_a_second_start_loads_instead_of_training(trained_nlp_dir: Path) -> None:
    models = sorted(p for p in (trained_nlp_dir / "models").rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in models}
    load_nlp(small_nlp_settings(trained_nlp_dir), quiet=True)
    assert models and {p: p.stat().st_mtime_ns for p in models} == before
