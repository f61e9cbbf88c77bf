"""The generative chit-chat backend: the real SmolLM2 weights, and the retrieval fallback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nlp_core.chitchat import ChitChatResponder, DialoguePair
from nlp_core.chitchat_llm import SmolLM2ChitChat, clean_reply, gguf_path
from nlp_core.encoder import Encoder


@pytest.fixture(scope="module")
def smollm2() -> SmolLM2ChitChat:
    return SmolLM2ChitChat(seed=0).load()


def test_weights_come_from_the_package() -> None:
    path = gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_replies_to_a_greeting_in_plain_english(smollm2: SmolLM2ChitChat) -> None:
    reply = smollm2.generate("Hi! How are you today?", seed=0)
    assert reply.strip()
    assert not re.search(r"<\|?|\|>|im_start|im_end|^\s*(assistant|user|system)\s*:", reply,
                         re.IGNORECASE)
    words = re.findall(r"[A-Za-z']+", reply)
    assert len(words) >= 2
    assert sum(len(w) for w in words) / max(1, sum(c.isalpha() for c in reply)) > 0.9
    assert len(re.findall(r"[.!?](?:\s|$)", reply)) <= 2
    assert smollm2.generate("Hi! How are you today?", seed=0) == reply  # fixed seed


def test_history_goes_into_the_chat_template(smollm2: SmolLM2ChitChat) -> None:
    history = [(f"message {i}", f"reply {i}") for i in range(5)]
    prompt = smollm2.tokenizer_.decode(smollm2.prompt_ids("And you?", history))
    assert prompt.startswith("<|im_start|>system\nYou are amlbot")
    assert "message 2" not in prompt  # only the last two turns
    assert "<|im_start|>user\nmessage 3<|im_end|>\n<|im_start|>assistant\nreply 3" in prompt
    assert prompt.endswith("<|im_start|>user\nAnd you?<|im_end|>\n<|im_start|>assistant\n")


def test_a_failing_model_falls_back_to_retrieval(tmp_path: Path) -> None:
    retrieval = ChitChatResponder(Encoder()).fit([
        DialoguePair("hi, how are you?", "Great, thanks for asking!", "test"),
        DialoguePair("what is your favourite food?", "Pizza, every day.", "test"),
    ])
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a GGUF file")
    generator = SmolLM2ChitChat(retrieval, path=broken)
    with pytest.raises(Exception):  # noqa: B017 - whatever the reader raises
        generator.generate("Hi! How are you today?")
    assert generator.respond("Hi! How are you today?") == "Great, thanks for asking!"
    assert generator.respond("Hi! How are you today?",
                             avoid=["Great, thanks for asking!"]) == "Pizza, every day."


@pytest.mark.parametrize(("raw", "clean"), [
    ("Hello there! I'm fine. And you? More text", "Hello there! I'm fine."),
    ("<|im_start|>assistant\nSure thing. \"Quoted.\" Then more", "Sure thing. \"Quoted.\""),
    ("assistant: Hi there", "Hi there"),
    ("Hi!<|im_end|>\n<|im_start|>user\nmore", "Hi!"),
    ("\n\nFirst line.\nSecond line.", "First line."),
    ("Great. Unfinished sentence and", "Great."),
    ("Just one unfinished thought", "Just one unfinished thought"),
    ("<|im_end|>", ""),
])
def test_clean_reply(raw: str, clean: str) -> None:
    assert clean_reply(raw) == clean
