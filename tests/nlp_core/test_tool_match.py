"""The embedding safety net that points unseen tool requests to their tool."""

from __future__ import annotations

import numpy as np
import pytest

from bot.app import tool_examples
from nlp_core.encoder import Encoder
from nlp_core.tool_match import ToolMatcher

# Requests no phrasing of the matcher below declares; the intent model sent the first three to
# programming.
UNSEEN = [
    ("sample new digits from a generative model", "bayes.vae"),
    ("hyperparameter search with gaussian processes", "bayes.bo"),
    ("latent dirichlet allocation on titles", "bayes.lda"),
    ("train a deep q-learning agent on cartpole", "rl.dqn"),
]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


@pytest.fixture(scope="module")
def matcher(encoder: Encoder) -> ToolMatcher:
    unseen = {text for text, _ in UNSEEN}
    examples = {name: [t for t in texts if t not in unseen]
                for name, texts in tool_examples().items()}
    return ToolMatcher().fit(examples, encoder.encode)


@pytest.mark.parametrize(("text", "tool"), UNSEEN)
def test_unseen_tool_requests_find_their_tool(matcher: ToolMatcher, encoder: Encoder, text: str,
                                              tool: str) -> None:
    match = matcher.match(encoder.encode([text])[0])
    assert match is not None and match[0] == tool
    assert matcher.threshold <= match[1] < 0.999  # near its tool, not one of its phrasings


@pytest.mark.parametrize("text", [
    "How to write a loop in python?", "NullPointerException in java", "hi, how are you?",
    "What is your favourite movie?", "SQL select rows with max value per group",
])
def test_questions_and_small_talk_find_none(matcher: ToolMatcher, encoder: Encoder,
                                            text: str) -> None:
    assert matcher.match(encoder.encode([text])[0]) is None


def test_no_tools_no_match(encoder: Encoder) -> None:
    empty = ToolMatcher().fit({}, encoder.encode)
    assert empty.match(np.ones(384, dtype=np.float32)) is None
