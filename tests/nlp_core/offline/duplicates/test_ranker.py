"""Duplicate ranking: metrics on hand-made rankings, pair IO, and the ranker on real pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bot.app import workspace
from bot.settings import Settings
from nlp_core.corpora import TitlePair, read_pairs
from nlp_core.encoder import Encoder
from nlp_core.offline.duplicates.lexical import Bm25, lexical_tokens
from nlp_core.offline.duplicates.metrics import (
    best_threshold,
    dcg_at_k,
    hits_at_k,
    mean_reciprocal_rank,
    ranking_metrics,
    target_ranks,
)
from nlp_core.offline.duplicates.ranker import DuplicateRanker, split_pairs


def test_metrics_on_hand_made_ranks() -> None:
    ranks = [1, 2, 5, 11, 100]
    assert hits_at_k(ranks, 1) == pytest.approx(0.2)
    assert hits_at_k(ranks, 5) == pytest.approx(0.6)
    assert hits_at_k(ranks, 10) == pytest.approx(0.6)
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 11 + 1 / 100) / 5)
    expected_dcg = (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5
    assert dcg_at_k(ranks, 10) == pytest.approx(expected_dcg)
    assert ranking_metrics([1, 1])["hits@1"] == 1.0
    assert ranking_metrics([])["mrr"] == 0.0


def test_target_ranks_excludes_the_query_and_counts_ties_against() -> None:
    scores = np.array([[0.9, 0.5, 0.7, 0.1],
                       [0.2, 0.3, 0.3, 0.8]])
    # row 0: query is column 0 (excluded); target column 1 is behind column 2 -> rank 2
    # row 1: target column 1 ties with column 2 and trails column 3 -> rank 3
    ranks = target_ranks(scores, np.array([1, 1]), exclude=np.array([0, 0]))
    assert ranks.tolist() == [2, 3]


def test_best_threshold_separates_scores() -> None:
    sims = np.array([0.9, 0.8, 0.75, 0.3, 0.2, 0.6])
    labels = np.array([True, True, True, False, False, False])
    threshold, accuracy = best_threshold(sims, labels)
    assert accuracy == 1.0
    assert 0.6 < threshold < 0.75


def test_read_and_split_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("duplicate\tHow to install X?\tInstalling X fails\n"
                    "non-duplicate\tWifi drops\tGrub menu missing\n\n", encoding="utf-8")
    pairs = read_pairs(path)
    assert pairs == [TitlePair(True, "How to install X?", "Installing X fails"),
                     TitlePair(False, "Wifi drops", "Grub menu missing")]
    many = [TitlePair(i % 2 == 0, f"a{i}", f"b{i}") for i in range(100)]
    train, held = split_pairs(many)
    assert len(held) == 20 and len(train) == 80
    assert not set(train) & set(held)
    assert split_pairs(many) == (train, held)


def test_lexical_tokens_keep_programming_names() -> None:
    assert lexical_tokens("How to use C++ and node.js on Ubuntu 12.04?") == \
        ["use", "c++", "node.js", "ubuntu", "12.04"]


def test_bm25_prefers_shared_words() -> None:
    bm25 = Bm25().fit(["install nvidia driver", "wifi keeps dropping", "grub menu missing"])
    scores = bm25.scores(["nvidia driver install fails", "zzz"])
    assert int(np.argmax(scores[0])) == 0
    assert not scores[1].any()
    rows, top = bm25.top_k("wifi dropping", 2)
    assert rows.tolist() == [1] and top[0] > 0


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


@pytest.fixture(scope="module")
def real_pairs(_session_data_dir: Path) -> tuple[list[TitlePair], list[TitlePair]]:
    path = _session_data_dir / "datasets" / "askubuntu_dups" / "train_titles.tsv"
    train, held = split_pairs(read_pairs(path))
    return train[:400], held[:160]


def test_ranker_fits_saves_and_loads(encoder: Encoder, mpnet_encoder: Encoder,
                                     real_pairs: tuple[list[TitlePair], list[TitlePair]],
                                     tmp_path: Path) -> None:
    train, _held = real_pairs
    ranker = DuplicateRanker(epochs=3).set_encoder(encoder).set_encoder(mpnet_encoder, "mpnet") \
        .fit(train, cache_dir=tmp_path / "c")
    assert ranker.adapter_ is not None and ranker.adapter_.shape == (384, 384)
    assert 0.5 < ranker.train_accuracy_ <= 1.0
    vectors = ranker.embed(["Ubuntu does not boot after update", "How do I change the wallpaper?"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    ranker.save(tmp_path / "model", {"note": 1})
    stamp = json.loads((tmp_path / "model" / "version.json").read_text())
    assert stamp["name"] == "duplicates" and stamp["metrics"] == {"note": 1}
    loaded = DuplicateRanker.load(tmp_path / "model").set_encoder(encoder) \
        .set_encoder(mpnet_encoder, "mpnet")
    assert np.allclose(loaded.embed(["grub rescue prompt"]), ranker.embed(["grub rescue prompt"]))
    assert loaded.threshold_ == pytest.approx(ranker.threshold_)
    assert loaded.name == ranker.name and "+adapter:" in loaded.name
    # the re-ranker travels with the ranker and scores a corpus the same after loading;
    # it reads MPNet (which picks the candidates) and MiniLM
    assert ranker.reranker_ is not None and loaded.reranker_ is not None
    assert loaded.reranker_.views_ == ("mpnet", "minilm")
    titles = sorted({t for p in train[:60] for t in (p.title1, p.title2)})
    views = loaded.view_vectors(titles)
    assert {v: a.shape[1] for v, a in views.items()} == {"minilm": 384, "mpnet": 768}
    rows = np.arange(4)
    assert np.allclose(loaded.corpus_scorer(titles, views)(rows),
                       ranker.corpus_scorer(titles, views)(rows), atol=1e-5)
    without = DuplicateRanker(epochs=1, rerank=False).set_encoder(encoder).fit(train[:100])
    assert without.reranker_ is None
    raw = views["minilm"]
    assert np.allclose(without.corpus_scorer(titles, {"minilm": raw})(rows),
                       without.transform(raw)[rows] @ without.transform(raw).T, atol=1e-5)


def test_eval_run_writes_report(encoder: Encoder, mpnet_encoder: Encoder,
                                mpnet_models_dir: Path,
                                real_pairs: tuple[list[TitlePair], list[TitlePair]],
                                tmp_path: Path) -> None:
    from nlp_core.offline.duplicates.evaluate import run
    from tests.support.models import link_mpnet

    train, held = real_pairs
    DuplicateRanker(epochs=2).set_encoder(encoder).set_encoder(mpnet_encoder, "mpnet") \
        .fit(train).save(tmp_path / "model")
    link_mpnet(tmp_path / "d", mpnet_models_dir)
    data = tmp_path / "held.tsv"
    data.write_text("".join(
        f"{'duplicate' if p.duplicate else 'non-duplicate'}\t{p.title1}\t{p.title2}\n"
        for p in held), encoding="utf-8")
    metrics = run(data, tmp_path / "model", tmp_path / "out",
                  workspace(Settings(data_dir=tmp_path / "d")))
    assert metrics["duplicate_pairs"] == sum(p.duplicate for p in held)
    for name in ("shipped", "adapter", "minilm_zero_shot", "mpnet_zero_shot", "bm25"):
        system = metrics["systems"][name]
        assert 0.0 <= system["hits@1"] <= system["hits@5"] <= system["hits@10"] <= 1.0
    # among ~300 titles, a real encoder finds most duplicates in its top 10
    assert metrics["systems"]["minilm_zero_shot"]["hits@10"] > 0.4
    assert metrics["hits@10"] > 0.4
    assert 0.5 < metrics["pair_accuracy"] <= 1.0
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert any(f.endswith(".json") and "report" in f for f in files)
    assert any(f.endswith(".png") for f in files)
    assert any("errors" in f for f in files)


def test_a_file_of_its_own_is_ranked_with_all_our_pairs_but_its_own(
        encoder: Encoder, mpnet_encoder: Encoder,
        real_pairs: tuple[list[TitlePair], list[TitlePair]], tmp_path: Path) -> None:
    from nlp_core.offline.duplicates.evaluate import _remember_all_pairs

    train, held = real_pairs
    ranker = DuplicateRanker(epochs=1).set_encoder(encoder).set_encoder(mpnet_encoder, "mpnet") \
        .fit(train[:200])
    assert ranker.reranker_ is not None
    known = set(ranker.reranker_.memory_.pairs)
    ours, the_file = held[:60], held[60:120]
    # the data dir's pair file holds pairs of its own, and one that is also in the file
    shared = next(p for p in the_file if p.duplicate)
    path = tmp_path / "d" / "datasets" / "askubuntu_dups" / "train_titles.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("".join(f"{'duplicate' if p.duplicate else 'non-duplicate'}\t{p.title1}\t"
                            f"{p.title2}\n" for p in [*ours, shared]), encoding="utf-8")
    _remember_all_pairs(ranker, the_file, workspace(Settings(data_dir=tmp_path / "d")))
    memory = set(ranker.reranker_.memory_.pairs)
    assert memory == known | {(p.title1, p.title2) for p in ours if p.duplicate}
    assert (shared.title1, shared.title2) not in memory
