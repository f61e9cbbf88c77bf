"""The Twitter NER model: learns from a small real subset, round-trips save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.app import workspace
from bot.settings import Settings
from nlp_core.ner import conlleval
from nlp_core.offline.twitter_ner.conll import read_conll
from nlp_core.offline.twitter_ner.evaluate import run
from nlp_core.offline.twitter_ner.model import TwitterNER
from nlp_core.offline.twitter_ner.tokens import normalize_token, tokenize, word_shape
from nlp_core.offline.twitter_ner.train import model_dir
from nlp_core.offline.twitter_ner.viterbi import viterbi_bio


def test_tokenize_keeps_offsets() -> None:
    text = "RT @bob: Taylor Swift live in NYC!!! http://t.co/xyz #music don't"
    tokens = tokenize(text)
    assert [t for t, _, _ in tokens] == [
        "RT", "@bob", ":", "Taylor", "Swift", "live", "in", "NYC", "!!!", "http://t.co/xyz",
        "#music", "don't"]
    assert all(text[a:b] == t for t, a, b in tokens)


def test_shapes_and_normalisation() -> None:
    assert [word_shape(w) for w in ["nyc", "Nyc", "NYC", "iPhone", "A", "3.5", "#x", "@u",
                                    "http://t.co/a", "!"]] == [
        "lower", "title", "upper", "mixed", "title", "digit", "hashtag", "user", "url", "punct"]
    assert normalize_token("http://t.co/abc") == "url"
    assert normalize_token("http://Name.com") == "Name.com"
    assert normalize_token("@someone") == "@user"


def test_viterbi_never_starts_a_chunk_with_i() -> None:
    import numpy as np

    labels = ["O", "B-person", "I-person", "B-geo-loc", "I-geo-loc"]
    # The argmax path would be O, I-person, I-geo-loc: invalid under BIO.
    log_probs = np.log(np.array([
        [0.6, 0.1, 0.1, 0.1, 0.1],
        [0.1, 0.3, 0.4, 0.1, 0.1],
        [0.1, 0.1, 0.2, 0.1, 0.5],
    ]))
    path = viterbi_bio(log_probs, labels)
    assert path[0] == "O"
    assert path[1] == "B-person"
    assert path[2] in ("I-person", "O", "B-geo-loc", "B-person")
    spans = conlleval.chunks(path)
    assert all(path[a].startswith("B-") for _, a, _ in spans)


def test_learns_from_a_small_subset_and_round_trips(shared_data_dir: Path,
                                                    tmp_path: Path) -> None:
    sentences, tags = read_conll(shared_data_dir / "datasets" / "twitter_ner" / "train.txt")
    # The 100 tweets with the most entities: enough signal for a few cheap epochs.
    ranked = sorted(range(len(sentences)), key=lambda i: -sum(t != "O" for t in tags[i]))[:100]
    x, y = [sentences[i] for i in ranked], [tags[i] for i in ranked]
    model = TwitterNER(epochs=10, patience=100, dev_fraction=0.0, learning_rate=5e-3,
                       batch_size=16, cache_dir=tmp_path / "cache")
    model.fit(x, y)
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < 0.6 * losses[0], losses
    train_f1 = model.score(x[:50], y[:50])
    assert train_f1 > 0.2, train_f1

    model.save(tmp_path / "ner")
    loaded = TwitterNER.load(tmp_path / "ner")
    assert loaded.predict(x[:10]) == model.predict(x[:10])
    text = " ".join(x[0])
    assert loaded.extract(text) == model.extract(text)
    for entity in loaded.extract(text):
        assert text[entity.start:entity.end] == entity.text
        assert entity.label in {t[2:] for t in model.labels_ if t != "O"}

    # The evaluation command's entry point on a file in the same format.
    data = tmp_path / "few.txt"
    data.write_text("".join("".join(f"{w} {t}\n" for w, t in zip(xs, ys, strict=True)) + "\n"
                            for xs, ys in zip(x[:12], y[:12], strict=True)), encoding="utf-8")
    metrics = run(data, tmp_path / "ner", tmp_path / "report",
                  workspace(Settings(data_dir=shared_data_dir)))
    expected = conlleval.score(y[:12], loaded.predict(x[:12]))
    assert metrics["f1"] == pytest.approx(expected["f1"], abs=1e-4)
    assert metrics["sentences"] == 12
    errors = json.loads((tmp_path / "report" / "ner_errors.json").read_text(encoding="utf-8"))
    missed = sum(e["kind"] == "missed" for e in errors)
    spurious = sum(e["kind"] == "spurious" for e in errors)
    assert missed == expected["support"] - expected["correct"]
    assert spurious == expected["predicted"] - expected["correct"]
    report = json.loads((tmp_path / "report" / "ner_report.json").read_text(encoding="utf-8"))
    assert "per_type" in json.dumps(report)
    assert (tmp_path / "report" / "ner_confusion.png").stat().st_size > 1000
    assert metrics["latency_ms"] > 0


def test_unfitted_and_bad_input(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        TwitterNER().predict([["hi"]])
    with pytest.raises(ValueError):
        TwitterNER().fit([["a"]], [])
    assert model_dir(workspace(Settings(data_dir=tmp_path))) == tmp_path / "models" / "ner"
