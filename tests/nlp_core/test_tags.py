"""The tag model, trained on a 3k-title subset of so_tags/train.tsv, scored on its test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nlp_core.corpora import load_so_tags
from nlp_core.evaluation.tags import f1_scores
from nlp_core.integrity import DamagedModelError, write_manifest
from nlp_core.tags import (
    LANGUAGES,
    TagClassifier,
    languages_of,
    main_language,
    split_so_tags,
)

N_TRAIN = 3000
N_TEST = 1000


@pytest.fixture(scope="module")
def so_data(_session_data_dir: Path) -> tuple[list[str], list[list[str]], list[int], list[int]]:
    titles, tags = load_so_tags(_session_data_dir / "datasets" / "so_tags" / "train.tsv")
    train, test = split_so_tags(titles)
    return titles, tags, train[:N_TRAIN], test[:N_TEST]


@pytest.fixture(scope="module")
def model(so_data: tuple[list[str], list[list[str]], list[int], list[int]]) -> TagClassifier:
    titles, tags, train, _ = so_data
    return TagClassifier(use_embeddings=False).fit([titles[i] for i in train],
                                                   [tags[i] for i in train])


def test_split_is_fixed_and_disjoint(
    so_data: tuple[list[str], list[list[str]], list[int], list[int]],
) -> None:
    titles = so_data[0]
    train, test = split_so_tags(titles)
    assert len(train) + len(test) == len(titles) == 25_000
    assert 0.18 < len(test) / len(titles) < 0.22
    assert not {titles[i] for i in train} & {titles[i] for i in test}
    assert split_so_tags(titles) == (train, test)


@pytest.mark.parametrize(("tags", "language"), [
    (["php", "sql"], "php"),
    (["c++", "c"], "c/c++"),
    (["vb.net", "winforms"], "vb"),
    (["jquery", "html"], "javascript"),
    (["ruby-on-rails", "ruby"], "ruby"),
    (["django"], "python"),
    (["asp.net", "vb.net"], "vb"),  # a language tag beats what a framework implies
    (["html", "css"], None),
    (["ios", "objective-c"], None),
])
def test_main_language_rules(tags: list[str], language: str | None) -> None:
    assert main_language(tags) == language


def test_quality_well_above_chance(
    model: TagClassifier, so_data: tuple[list[str], list[list[str]], list[int], list[int]],
) -> None:
    titles, tags, _, test = so_data
    test_titles = [titles[i] for i in test]
    gold = [tags[i] for i in test]
    predicted, _, _ = model.predict_all(test_titles)
    metrics = f1_scores(gold, predicted, list(model.classes_))
    assert metrics["f1_weighted"] > 0.50  # 3k titles; the full model reaches 0.69
    scores = model.language_scores(test_titles)
    top1 = [LANGUAGES[k] for k in scores.argmax(axis=1)]
    rows = [i for i, g in enumerate(gold) if languages_of(g)]
    accuracy = np.mean([top1[i] in languages_of(gold[i]) for i in rows])
    assert accuracy > 0.7  # ten languages; the most frequent one is ~22 % of titles


def test_every_title_gets_a_tag_and_probabilities_match(model: TagClassifier) -> None:
    titles = ["Catch exceptions C++", "hmm", "How to center a div with CSS?",
              "Sort a list of dicts by key in Python"]
    predicted = model.predict(titles)
    assert all(len(tags) >= 1 for tags in predicted)
    assert "python" in predicted[3]
    assert model.predict_language(titles)[0] == "c/c++"
    proba = model.predict_proba(titles)
    assert proba.shape == (4, len(model.classes_))
    assert ((proba >= 0) & (proba <= 1)).all()
    for row, tags in zip(proba, predicted, strict=True):
        above = {str(model.classes_[j]) for j in np.flatnonzero(row >= 0.5)}
        assert above <= set(tags) and len(set(tags) - above) <= 1  # plus the forced best tag


def test_save_load_roundtrip_and_version(model: TagClassifier, tmp_path: Path) -> None:
    titles = ["Parse JSON in Java", "jQuery click handler fires twice"]
    model.save(tmp_path / "tags")
    stamp = json.loads((tmp_path / "tags" / "model.json").read_text())
    assert stamp["model"] == "tags" and stamp["version"] and "validation_f1_weighted" in (
        stamp["metrics"])
    loaded = TagClassifier.load(tmp_path / "tags")
    assert loaded.predict(titles) == model.predict(titles)
    np.testing.assert_allclose(loaded.predict_proba(titles), model.predict_proba(titles))
    # A model an older release wrote, intact (its manifest matches), is refused by version;
    # the same edit without a matching manifest is refused as damaged.
    stamp["version"] = "0"
    (tmp_path / "tags" / "model.json").write_text(json.dumps(stamp))
    with pytest.raises(DamagedModelError, match="model.json"):
        TagClassifier.load(tmp_path / "tags")
    write_manifest(tmp_path / "tags")
    with pytest.raises(ValueError, match="not a tags"):
        TagClassifier.load(tmp_path / "tags")


def test_predict_all_agrees_with_the_single_predictions(model: TagClassifier) -> None:
    titles = ["How do I read a file line by line in Python?", "hmm", "Parse JSON in Java"]
    tags, languages, confidence = model.predict_all(titles)
    assert tags == model.predict(titles)
    assert languages == model.predict_language(titles)
    np.testing.assert_allclose(confidence, model.language_scores(titles).max(axis=1))
    assert confidence[0] > confidence[1]  # a plain Python question against a mumble


def test_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        TagClassifier().predict(["x"])


def test_embeddings_join_the_features(
    so_data: tuple[list[str], list[list[str]], list[int], list[int]],
) -> None:
    titles, tags, train, test = so_data
    from nlp_core.encoder import Encoder

    encoder = Encoder()
    subset = [titles[i] for i in train[:300]]
    model = TagClassifier().fit(subset, [tags[i] for i in train[:300]],
                                embeddings=encoder.encode(subset))
    probe = [titles[i] for i in test[:8]]
    vectors = encoder.encode(probe)
    with_given = model.predict(probe, vectors)
    assert model.predict(probe) == with_given  # encodes itself when not given vectors
    assert model.coef_.shape[0] == (model.word_tfidf_.n_features
                                    + model.char_tfidf_.n_features + 384)
