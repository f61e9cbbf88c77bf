"""The intent model on a subset of the real corpora plus tool phrasings written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bot.app import workspace
from bot.settings import Settings
from nlp_core.intent import (
    IntentClassifier,
    IntentCorpus,
    build_corpus,
    load_or_train_intent,
    model_dir,
    train_intent,
)

# Phrasings a few course tools could declare in their registry entries.
TOOLS: dict[str, list[str]] = {
    "ner": ["find the named entities in this tweet", "extract entities from my text",
            "run named entity recognition on this sentence", "tag the people and places in this",
            "which companies are mentioned in this tweet", "highlight the named entities",
            "can you do NER for this tweet", "recognise the entities in this message"],
    "bandits": ["run the multi-armed bandit simulation", "compare epsilon greedy and UCB",
                "simulate thompson sampling on bernoulli arms", "show me a bandit experiment",
                "run UCB1 on 5 arms", "plot the regret of thompson sampling",
                "start the bandit demo", "test exploration strategies on bandits"],
    "captioning": ["caption this image", "describe the picture I sent", "what is in this photo",
                   "generate a caption for my picture", "write a description of this image",
                   "image captioning please", "describe this photo in one sentence"],
}
# Plain-English requests that are not among the phrasings above.
TOOL_REQUESTS = [
    ("tool:bandits", "simulate a 10-armed bandit with epsilon greedy"),
    ("tool:bandits", "run thompson sampling"),
    ("tool:captioning", "please caption this picture of my cat"),
    ("tool:captioning", "describe my image"),
    ("tool:ner", "what named entities are in this tweet: Elon Musk bought Twitter"),
]


@pytest.fixture(scope="module")
def corpus(_session_data_dir: Path) -> IntentCorpus:
    return build_corpus(workspace(Settings(data_dir=_session_data_dir)), TOOLS,
                        max_programming=5000, max_chitchat=5000)


def test_corpus_takes_programming_from_stackoverflow_sql_and_askubuntu(
    _session_data_dir: Path,
) -> None:
    full = build_corpus(workspace(Settings(data_dir=_session_data_dir)), None, max_chitchat=100)
    intent_of = dict(zip(full.train_texts + full.test_texts,
                         full.train_intents + full.test_intents, strict=True))
    for title in ("How do I install Ubuntu?", "SQL query, count and group by",
                  "Why odbc_exec always fail?"):
        assert intent_of.get(title) == "programming", title
    assert len(full.test_texts) > 0.05 * len(full.train_texts)  # a held-out part of each


@pytest.fixture(scope="module")
def model(corpus: IntentCorpus) -> IntentClassifier:
    plain = [(t, i) for t, i in zip(corpus.train_texts, corpus.train_intents, strict=True)
             if not i.startswith("tool:")]
    tools: dict[str, list[str]] = {}
    for text, intent in zip(corpus.train_texts, corpus.train_intents, strict=True):
        if intent.startswith("tool:"):
            tools.setdefault(intent[5:], []).append(text)
    return IntentClassifier().fit([t for t, _ in plain], [i for _, i in plain],
                                  tool_examples=tools)


def test_corpus_split_is_disjoint(corpus: IntentCorpus) -> None:
    assert set(corpus.train_intents) == {"chitchat", "programming", "tool:ner", "tool:bandits",
                                         "tool:captioning"}
    assert not set(corpus.train_texts) & set(corpus.test_texts)
    assert 0.05 < len(corpus.test_texts) / len(corpus.train_texts) < 0.3
    assert "can you write a sorting algorithm?" not in corpus.train_texts  # chatterbot coding


def test_heldout_accuracy(model: IntentClassifier, corpus: IntentCorpus) -> None:
    predicted = model.predict(corpus.test_texts)
    accuracy = np.mean([p == g for p, g in zip(predicted, corpus.test_intents, strict=True)])
    assert accuracy > 0.97  # 10k training texts; the full corpus gives 0.993


@pytest.mark.parametrize(("text", "intent"), [
    ("Hey", "chitchat"), ("hi", "chitchat"), ("how are you?", "chitchat"),
    ("thanks!", "chitchat"), ("tell me a joke", "chitchat"),
    ("Catch exceptions C++", "programming"),
    ("How do I sort a dict by value in python", "programming"),
    ("NullPointerException when calling a method on a list", "programming"),
])
def test_greetings_and_code_questions(model: IntentClassifier, text: str, intent: str) -> None:
    assert model.predict([text]) == [intent]


def test_plain_english_tool_requests(model: IntentClassifier) -> None:
    hits = [model.predict([text])[0] == intent for intent, text in TOOL_REQUESTS]
    assert sum(hits) >= len(hits) - 1


def test_probabilities_and_alternatives(model: IntentClassifier) -> None:
    proba = model.predict_proba(["hello there", "run thompson sampling"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    ranked = model.rank("hello there", top=3)
    assert ranked[0][0] == "chitchat" and ranked[0][1] > 0.9
    assert len(ranked) == 3 and ranked[0][1] >= ranked[1][1] >= ranked[2][1]
    # An ambiguous, odd message is less confident than a clear greeting.
    assert model.rank("bandit photo entities")[0][1] < ranked[0][1]
    assert 0.01 < model.temperature_ < 2.0


def test_save_load_roundtrip(model: IntentClassifier, tmp_path: Path) -> None:
    model.save(tmp_path / "intent")
    stamp = json.loads((tmp_path / "intent" / "model.json").read_text())
    assert stamp["model"] == "intent" and "tool:ner" in stamp["intents"]
    loaded = IntentClassifier.load(tmp_path / "intent")
    texts = ["hi", "Catch exceptions C++", "caption this image"]
    assert loaded.predict(texts) == model.predict(texts)
    ranked, reloaded = (m.rank("How do I catch exceptions in C++?") for m in (model, loaded))
    assert [i for i, _ in reloaded] == [i for i, _ in ranked]
    np.testing.assert_allclose([p for _, p in reloaded], [p for _, p in ranked], rtol=1e-5)


def test_load_or_train_reuses_a_model_that_knows_the_tools(
    _session_data_dir: Path, tmp_path: Path, model: IntentClassifier,
) -> None:
    settings = workspace(Settings(data_dir=tmp_path / "data"))
    (settings.data_dir).mkdir()
    (settings.data_dir / "datasets").symlink_to(_session_data_dir / "datasets")
    model.save(model_dir(settings))
    assert load_or_train_intent(settings, tool_examples={"ner": TOOLS["ner"]}).classes_.tolist() \
        == model.classes_.tolist()


@pytest.mark.slow
def test_default_training_on_full_corpus(shared_data_dir: Path, tmp_path: Path) -> None:
    settings = workspace(Settings(data_dir=tmp_path / "data"))
    settings.data_dir.mkdir()
    (settings.data_dir / "datasets").symlink_to(shared_data_dir / "datasets")
    trained = train_intent(settings, tool_examples=TOOLS)
    assert trained.validation_accuracy_ > 0.99
    assert IntentClassifier.load(model_dir(settings)).predict(["hi"]) == ["chitchat"]
