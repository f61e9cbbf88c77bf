"""The duplicate re-ranker: features on hand-made vectors, learning on synthetic clusters, IO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlp_core.corpora import TitlePair
from nlp_core.offline.duplicates.evaluate import ranks_for
from nlp_core.offline.duplicates.metrics import ranking_metrics
from nlp_core.offline.duplicates.rerank import (
    FEATURES,
    RERANKED_OFFSET,
    CandidateReranker,
    CorpusContext,
    DuplicateMemory,
    candidate_features,
    nearest_candidates,
    neighbour_density,
)


def _lookup(table: dict[str, np.ndarray]):
    return lambda titles: np.asarray([table[t] for t in titles], dtype=np.float32)


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_neighbour_density_is_the_mean_of_the_nearest_others() -> None:
    vectors = np.eye(3, dtype=np.float32)
    vectors[2] = _unit([1, 1, 0])
    density = neighbour_density(vectors, k=1)
    # row 0's nearest other row is row 2 (cosine 0.707); so is row 1's; row 2's is 0.707 too
    assert density == pytest.approx([0.7071] * 3, abs=1e-4)
    assert neighbour_density(vectors[:1]).tolist() == [0.0]


def test_features_read_the_memory() -> None:
    table = {
        "query": _unit([1, 0, 0, 0]),
        "its duplicate": _unit([0.8, 0.6, 0, 0]),
        "lookalike": _unit([0.9, 0, 0.44, 0]),
        "other canonical": _unit([0, 0, 1, 0]),
        # memory: the query's known duplicate sits next to "its duplicate",
        # "other canonical"'s known duplicate sits next to "lookalike"
        "known dup of query": _unit([0.75, 0.66, 0, 0]),
        "known dup of other": _unit([0.85, 0, 0.52, 0]),
    }
    memory = DuplicateMemory([TitlePair(True, "query", "known dup of query"),
                              TitlePair(True, "other canonical", "known dup of other"),
                              TitlePair(False, "query", "other canonical")], _lookup(table))
    assert len(memory) == 2 and memory.canonicals == {"query", "other canonical"}
    corpus = ["query", "its duplicate", "lookalike", "other canonical"]
    context = CorpusContext(corpus, _lookup(table)(corpus), memory)
    candidates = nearest_candidates(context.vectors, np.array([0]), depth=3)
    features = candidate_features(context, np.array([0]), candidates)
    assert features.shape == (3, len(FEATURES))
    named = {corpus[c]: dict(zip(FEATURES, row, strict=True))
             for c, row in zip(candidates[0], features, strict=True)}
    # by cosine the lookalike comes first
    assert corpus[candidates[0][0]] == "lookalike"
    assert named["lookalike"]["log_rank"] == 0.0
    dup, look = named["its duplicate"], named["lookalike"]
    assert dup["cosine"] == pytest.approx(0.8, abs=1e-3)
    assert dup["memory_size"] == pytest.approx(np.log(2))
    assert dup["memory_max"] > look["memory_max"]
    # each candidate's nearest known duplicates vote for their own canonical
    assert dup["vote"] > 0.5 > look["vote"]
    assert look["competitor"] > dup["competitor"]
    assert named["other canonical"]["candidate_is_canonical"] == 1.0
    assert dup["candidate_is_canonical"] == 0.0
    density = neighbour_density(context.vectors)
    assert dup["csls"] == pytest.approx(2 * dup["cosine"] - density[1] - density[0], abs=1e-5)


def _clusters(seed: int, n_canonical: int, duplicates: int, dim: int = 24):
    """Canonical questions whose duplicates share a cluster-specific wording (a direction the
    canonical lacks), with noise strong enough that cosine to the canonical alone often fails."""
    rng = np.random.default_rng(seed)
    table: dict[str, np.ndarray] = {}
    pairs: list[TitlePair] = []
    for i in range(n_canonical):
        canonical = rng.normal(size=dim)
        style = rng.normal(size=dim)
        table[f"c{seed}-{i}"] = canonical / np.linalg.norm(canonical)
        for j in range(duplicates):
            v = canonical / np.linalg.norm(canonical) + 0.9 * style / np.linalg.norm(style) \
                + 0.55 * rng.normal(size=dim) / np.sqrt(dim) * 3
            table[f"d{seed}-{i}-{j}"] = v / np.linalg.norm(v)
            pairs.append(TitlePair(True, f"c{seed}-{i}", f"d{seed}-{i}-{j}"))
        noise = rng.normal(size=dim)
        table[f"n{seed}-{i}"] = noise / np.linalg.norm(noise)
        pairs.append(TitlePair(False, f"c{seed}-{i}", f"n{seed}-{i}"))
    return pairs, table


def test_reranker_learns_to_use_the_memory(tmp_path: Path) -> None:
    pairs, table = _clusters(0, n_canonical=120, duplicates=6)
    lookup = _lookup(table)
    # train and test share the canonical questions, not the duplicates (as on AskUbuntu)
    train = [p for p in pairs if not p.duplicate or int(p.title2.rsplit("-", 1)[1]) < 4]
    test = [p for p in pairs if p.duplicate and int(p.title2.rsplit("-", 1)[1]) >= 4]
    reranker = CandidateReranker(depth=20, rounds=60, min_child_samples=10).fit(
        train, {"v": lookup})
    assert reranker.train_groups_ > 0
    titles = sorted({t for p in test for t in (p.title1, p.title2)})
    cosine = ranking_metrics(ranks_for(test, titles, lambda rows: lookup(titles)[rows]
                                       @ lookup(titles).T))
    reranked = ranking_metrics(ranks_for(test, titles,
                                         reranker.scorer(titles, {"v": lookup(titles)})))
    assert reranked["hits@1"] > cosine["hits@1"] + 0.05
    assert reranked["mrr"] > cosine["mrr"]

    reranker.save(tmp_path / "rr")
    assert {p.name for p in (tmp_path / "rr").iterdir()} == \
        {"model.txt", "memory.json", "memory-v.npy"}
    loaded = CandidateReranker.load(tmp_path / "rr")
    rows = np.arange(5)
    assert np.allclose(loaded.scorer(titles, {"v": lookup(titles)})(rows),
                       reranker.scorer(titles, {"v": lookup(titles)})(rows), atol=1e-6)


def _rotated(table: dict[str, np.ndarray], seed: int, noise: float) -> dict[str, np.ndarray]:
    """A second view of the same titles: a random rotation plus noise of its own."""
    rng = np.random.default_rng(seed)
    dim = len(next(iter(table.values())))
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    out = {}
    for title, vector in table.items():
        v = rotation @ vector + noise * rng.normal(size=dim) / np.sqrt(dim)
        out[title] = v / np.linalg.norm(v)
    return out


def test_a_second_view_adds_its_own_features(tmp_path: Path) -> None:
    pairs, table = _clusters(3, n_canonical=120, duplicates=6)
    train = [p for p in pairs if not p.duplicate or int(p.title2.rsplit("-", 1)[1]) < 4]
    test = [p for p in pairs if p.duplicate and int(p.title2.rsplit("-", 1)[1]) >= 4]
    # two noisy views of the same vectors: each alone loses what the other keeps
    views = {"a": _rotated(table, 10, 1.5), "b": _rotated(table, 11, 1.5)}
    lookups = {name: _lookup(view) for name, view in views.items()}
    titles = sorted({t for p in test for t in (p.title1, p.title2)})
    vectors = {name: lookup(titles) for name, lookup in lookups.items()}
    params = {"depth": 20, "rounds": 60, "min_child_samples": 10}
    both = CandidateReranker(**params).fit(train, lookups)
    assert both.views_ == ("a", "b")
    assert both.feature_names_[:2] == ["a.cosine", "a.log_rank"]
    assert len(both.feature_names_) == 2 * len(FEATURES)
    one = CandidateReranker(**params).fit(train, {"a": lookups["a"]})
    mrr_both = ranking_metrics(ranks_for(test, titles, both.scorer(titles, vectors)))["mrr"]
    mrr_one = ranking_metrics(ranks_for(test, titles, one.scorer(titles, vectors)))["mrr"]
    assert mrr_both > mrr_one
    # the candidates come from the first view; a missing view is a clear error
    scores = both.scorer(titles, vectors)(np.array([0]))[0]
    first = vectors["a"][0] @ vectors["a"].T
    first[0] = -np.inf
    assert set(np.nonzero(scores > 0)[0]) == set(np.argsort(-first)[:20])
    with pytest.raises(ValueError, match="views"):
        both.scorer(titles, {"a": vectors["a"]})
    both.save(tmp_path / "rr")
    loaded = CandidateReranker.load(tmp_path / "rr")
    assert loaded.views_ == ("a", "b")
    assert np.allclose(loaded.scorer(titles, vectors)(np.arange(4)),
                       both.scorer(titles, vectors)(np.arange(4)), atol=1e-6)


def test_scores_keep_the_cosine_order_beyond_the_reranked_depth() -> None:
    pairs, table = _clusters(1, n_canonical=30, duplicates=3)
    lookup = _lookup(table)
    reranker = CandidateReranker(depth=5, rounds=10, min_child_samples=5).fit(
        pairs, {"v": lookup})
    titles = sorted(table)
    vectors = lookup(titles)
    scores = reranker.scorer(titles, {"v": vectors})(np.array([0, 1]))
    assert scores.shape == (2, len(titles))
    for row, query in zip(scores, (0, 1), strict=True):
        top = row > 0
        assert top.sum() == 5 and not top[query]
        cosine = vectors[query] @ vectors.T
        rest = np.nonzero(~top)[0]
        assert np.allclose(row[rest], cosine[rest] - RERANKED_OFFSET, atol=1e-5)
        # the re-ranked ones are the five nearest by cosine
        nearest = set(np.argsort(-np.where(np.arange(len(titles)) == query, -9, cosine))[:5])
        assert set(np.nonzero(top)[0]) == nearest


def test_reranker_needs_duplicates() -> None:
    table = {"a": _unit([1, 0]), "b": _unit([0, 1])}
    with pytest.raises(ValueError, match="no duplicate pairs"):
        CandidateReranker().fit([TitlePair(False, "a", "b")], {"v": _lookup(table)})


def test_remember_adds_pairs_and_keeps_the_model(tmp_path: Path) -> None:
    pairs, table = _clusters(2, n_canonical=40, duplicates=4)
    lookup = _lookup(table)
    first = [p for p in pairs if not p.duplicate or p.title2.endswith(("-0", "-1"))]
    later = [p for p in pairs if p.duplicate and p.title2.endswith(("-2", "-3"))]
    reranker = CandidateReranker(depth=10, rounds=20, min_child_samples=5).fit(
        first, {"v": lookup})
    model = reranker.booster_.model_to_string()
    before = len(reranker.memory_)
    assert before == 80
    asked: list[str] = []

    def counting(titles):
        asked.extend(titles)
        return lookup(titles)

    reranker.remember(later + first, {"v": counting})
    assert len(reranker.memory_) == before + len(later)  # pairs it knew are not added twice
    assert set(asked) == {p.title2 for p in later}  # only unseen titles are encoded
    assert reranker.booster_.model_to_string() == model
    assert reranker.memory_.links["c2-0"] == {"d2-0-0", "d2-0-1", "d2-0-2", "d2-0-3"}
    row = reranker.memory_.row["c2-0"]
    assert np.allclose(reranker.memory_.vectors[row], table["c2-0"], atol=1e-6)
