"""Frozen TF-IDF: the same vectors as the fitted scikit-learn vectorisers it was copied from, on
real titles and awkward text, and a JSON/.npy round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer

from nlp_core.corpora import load_so_tags
from nlp_core.text import char_ngram_tfidf, tokenize
from nlp_core.tfidf import FrozenTfidf, LinearScorer, char_wb_ngrams, word_ngrams

AWKWARD = ["", "   ", "c# vs c++ in .net 4.5?", "node.js\tasync\n\n  await", "🙂🙂 emoji only",
           "日本語のタイトル", "Ünïcödé ÀCCENTS", "a", "x" * 3000, "<script>alert(1)</script>",
           "How   do I    sort a dict by value in Python 3?"]


@pytest.fixture(scope="module")
def titles(_session_data_dir: Path) -> tuple[list[str], list[str]]:
    texts, _tags = load_so_tags(_session_data_dir / "datasets" / "so_tags" / "train.tsv")
    return texts[:3000], texts[3000:3300] + AWKWARD


def _vectorizers() -> dict[str, tuple[Any, Any]]:
    return {
        "word 1-2 (custom tokenizer)": (TfidfVectorizer(
            tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=(1, 2),
            min_df=2, sublinear_tf=True), tokenize),
        "char_wb 3-5, vocabulary": (TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True,
            max_features=20_000), None),
        "char_wb 2-5, hashed": (char_ngram_tfidf((2, 5), n_features=2**16), None),
    }


@pytest.mark.parametrize("name", list(_vectorizers()))
def test_frozen_tfidf_matches_scikit_learn(name: str, titles: tuple[list[str], list[str]],
                                           tmp_path: Path) -> None:
    fit_texts, new_texts = titles
    vectorizer, tokenizer = _vectorizers()[name]
    vectorizer.fit(fit_texts)
    frozen = FrozenTfidf.from_sklearn(vectorizer, tokenizer)
    expected = vectorizer.transform(new_texts).toarray()
    assert np.allclose(frozen.transform_dense(new_texts), expected, atol=1e-6)
    frozen.save(tmp_path, "v")
    assert not list(tmp_path.glob("*.pkl"))
    loaded = FrozenTfidf.load(tmp_path, "v", tokenizer)
    assert np.allclose(loaded.transform_dense(new_texts), expected, atol=1e-6)


def test_ngram_helpers_follow_scikit_learn_on_edge_cases() -> None:
    assert word_ngrams(["a", "b", "c"], (1, 2)) == ["a", "b", "c", "a b", "b c"]
    assert word_ngrams(["a"], (2, 3)) == []
    analyzer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5),
                               lowercase=False).build_analyzer()
    for text in ("ab", "a", "abc de", "  \t ", "x\u00a0y"):
        assert char_wb_ngrams(text, (3, 5)) == analyzer(text)
    assert char_wb_ngrams("ab", (3, 5)) == [" ab", "ab ", " ab "]  # " ab " once, then stop


def test_linear_scorer_equals_the_sparse_matmul(titles: tuple[list[str], list[str]]) -> None:
    fit_texts, new_texts = titles
    word = TfidfVectorizer(tokenizer=tokenize, token_pattern=None, lowercase=False,
                           sublinear_tf=True).fit(fit_texts)
    char = char_ngram_tfidf((2, 4), n_features=2**15).fit(fit_texts)
    n_features = len(word.vocabulary_) + 2**15
    rng = np.random.default_rng(0)
    coef = rng.standard_normal((n_features + 8, 5)).astype(np.float32)
    intercept = rng.standard_normal(5).astype(np.float32)
    dense = rng.standard_normal((len(new_texts), 8)).astype(np.float32)
    x = hstack([word.transform(new_texts), char.transform(new_texts) * 0.7]).toarray()
    expected = x @ coef[:n_features] + dense @ coef[n_features:] + intercept
    scorer = LinearScorer([(FrozenTfidf.from_sklearn(word, tokenize), 1.0),
                           (FrozenTfidf.from_sklearn(char), 0.7)], coef, intercept)
    assert np.allclose(scorer.scores(new_texts, dense), expected, atol=1e-4)


def test_unsupported_vectorisers_are_refused() -> None:
    texts = ["apple banana", "banana cherry"]
    with pytest.raises(ValueError, match="stop words"):
        FrozenTfidf.from_sklearn(TfidfVectorizer(stop_words="english").fit(texts))
    with pytest.raises(ValueError, match="L2"):
        FrozenTfidf.from_sklearn(TfidfVectorizer(norm="l1").fit(texts))
    with pytest.raises(ValueError, match="tokenizer"):
        FrozenTfidf(analyzer="word", ngram_range=(1, 1), lowercase=True, idf=None,
                    sublinear_tf=False, vocabulary={})
