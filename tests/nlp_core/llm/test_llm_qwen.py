"""The packaged Qwen2.5-Coder-0.5B-Instruct end to end (slow: joining, converting and loading
it takes minutes on a busy machine)."""

from __future__ import annotations

import re

import pytest

from nlp_core.llm.loading import LoadedModel
from nlp_core.llm.prompts import NO_CLOSE_THREAD, Thread, answer_prompt, chitchat_prompt, cited
from nlp_core.llm.service import LLMService

pytestmark = pytest.mark.slow


def test_a_grounded_answer_is_short_on_topic_and_cites_a_thread(qwen: LoadedModel) -> None:
    threads = [Thread("Remove duplicates in pandas dataframe",
                      "https://stackoverflow.com/questions/1", score=0.83),
               Thread("pandas drop_duplicates keep last", "https://stackoverflow.com/questions/2",
                      score=0.71)]
    prompt = answer_prompt("How do I remove duplicate rows from a pandas DataFrame?", threads)
    with LLMService(qwen, timeout_s=300) as service:
        result = service.generate(prompt, timeout=600)
    assert result.finish in ("stop", "length"), result.error
    assert "drop_duplicates" in result.text
    assert cited(result.text, 2)
    assert result.text.count("```") <= 2
    assert set(re.findall(r"https?://\S+", result.text)) <= {t.url for t in threads}


def test_without_a_close_thread_it_says_so_and_still_answers(qwen: LoadedModel) -> None:
    prompt = answer_prompt("What is the difference between a list and a tuple in Python?",
                           [Thread("Java generics wildcard", score=0.2)])
    with LLMService(qwen, timeout_s=300) as service:
        result = service.generate(prompt, timeout=600)
    assert result.text.startswith(NO_CLOSE_THREAD)
    assert "tuple" in result.text[len(NO_CLOSE_THREAD):].lower()


def test_a_chitchat_reply_is_one_or_two_sentences(qwen: LoadedModel) -> None:
    prompt = chitchat_prompt("hi! how are you today?", [], ["answer programming questions"],
                             seed=0)
    with LLMService(qwen, timeout_s=300) as service:
        reply = service.generate(prompt, timeout=600).text
    assert reply and len(re.findall(r"[.!?](?:\s|$)", reply)) <= 2
