"""Evaluate duplicate-question ranking on a ``label<TAB>title1<TAB>title2`` file.

For every duplicate pair, ``title2`` is ranked among all distinct titles of the file (both
columns, every pair) given ``title1``, which is itself left out. The shipped ranker (its
re-ranker over the file's titles), its adapter alone, each encoder zero-shot (all-MiniLM-L6-v2,
all-mpnet-base-v2) and BM25 run side by side on the same titles. Pair accuracy (duplicate or
not, on all pairs) uses the cosine threshold each model learned on training pairs.

Writes ``duplicates_report.json``, a Hits@k curve PNG and ``duplicates_errors.json`` (the pairs
whose duplicate is not in the top 10); returns the metrics.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.corpora import TitlePair, read_pairs
from nlp_core.evaluation.report import write_report
from nlp_core.offline.duplicates.lexical import Bm25
from nlp_core.offline.duplicates.metrics import ranking_metrics, target_ranks
from nlp_core.offline.duplicates.ranker import (
    PAIRS_DATASET,
    DuplicateRanker,
    encode_titles,
    load_or_train_duplicates,
    split_pairs,
)
from nlp_core.workspace import Workspace

LATENCY_TEXT = "How do I install the nvidia driver on Ubuntu 14.04?"
CURVE_KS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50)
Scorer = Callable[[np.ndarray], np.ndarray]


def ranks_for(pairs: Sequence[TitlePair], titles: Sequence[str], scorer: Scorer,
              chunk: int = 512) -> np.ndarray:
    """1-based rank of each duplicate pair's ``title2`` among ``titles`` given its ``title1``.

    ``scorer(query_rows)`` returns the ``(len(query_rows), len(titles))`` score matrix.
    """
    position = {t: i for i, t in enumerate(titles)}
    duplicates = [p for p in pairs if p.duplicate]
    queries = np.asarray([position[p.title1] for p in duplicates], dtype=np.int64)
    targets = np.asarray([position[p.title2] for p in duplicates], dtype=np.int64)
    unique, inverse = np.unique(queries, return_inverse=True)
    ranks = np.zeros(len(duplicates), dtype=np.int64)
    for start in range(0, len(unique), chunk):
        rows = unique[start:start + chunk]
        scores = scorer(rows)
        members = np.nonzero((inverse >= start) & (inverse < start + len(rows)))[0]
        local = inverse[members] - start
        ranks[members] = target_ranks(scores[local], targets[members], exclude=rows[local])
    return ranks


def pair_accuracy(vectors: np.ndarray, pairs: Sequence[TitlePair], titles: Sequence[str],
                  threshold: float) -> float:
    """Share of pairs whose ``cosine >= threshold`` agrees with their label."""
    position = {t: i for i, t in enumerate(titles)}
    first = np.asarray([position[p.title1] for p in pairs])
    second = np.asarray([position[p.title2] for p in pairs])
    sims = (vectors[first] * vectors[second]).sum(axis=1)
    labels = np.asarray([p.duplicate for p in pairs])
    return float(((sims >= threshold) == labels).mean())


def hits_curve_figure(curves: dict[str, dict[int, float]], title: str) -> Any:
    """Hits@k against k for each system (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker="o", markersize=3, label=name)
    ax.set_xscale("log")
    ax.set_xticks(list(CURVE_KS), [str(k) for k in CURVE_KS])
    ax.set_ylim(0, 1)
    ax.set_xlabel("k")
    ax.set_ylabel("Hits@k")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def measure_latency(ranker: DuplicateRanker, text: str = LATENCY_TEXT,
                    repeats: int = 20) -> float:
    """Median milliseconds to embed one short question (after a warm-up call)."""
    ranker.embed([text])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ranker.embed([text])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}


def run(data: Path | None, model_dir: Path | None, out_dir: Path,
        workspace: Workspace) -> dict[str, Any]:
    """Rank duplicates in ``data`` (default: the held-out 20% of
    ``askubuntu_dups/train_titles.tsv``) with the ranker in ``model_dir`` (default: the shipped
    one, trained now if absent); write the report files into ``out_dir``; return the metrics
    (``hits@1``, ``hits@5``, ``hits@10``, ``mrr``, ``dcg@10``, ``pair_accuracy``, and the same
    for each system under ``systems``)."""
    if data is not None:
        path = data
        pairs = read_pairs(path)
    else:
        path = workspace.require(PAIRS_DATASET)
        pairs = split_pairs(read_pairs(path))[1]
    if not any(p.duplicate for p in pairs):
        raise ValueError(f"{path}: no duplicate pairs to rank")
    ranker = DuplicateRanker.load(model_dir).use_workspace(workspace) if model_dir is not None \
        else load_or_train_duplicates(workspace)
    titles = sorted({t for p in pairs for t in (p.title1, p.title2)})
    reranker = getattr(ranker, "reranker_", None)
    if data is not None and reranker is not None:
        _remember_all_pairs(ranker, pairs, workspace)
    started = time.perf_counter()
    views = ranker.view_vectors(titles, workspace.embeddings_cache, show_progress=True)
    encode_seconds = time.perf_counter() - started
    raw = views["minilm"]
    shipped = ranker.transform(raw)
    bm25 = Bm25().fit(titles)

    def dense(vectors: np.ndarray) -> Scorer:
        return lambda rows: vectors[rows] @ vectors.T

    shipped_scores = ranker.corpus_scorer(titles, views, bm25)
    systems: dict[str, Scorer] = {"shipped": shipped_scores}
    if reranker is not None:
        systems["adapter"] = lambda rows: ranker.score_matrix(
            shipped[rows], shipped, [titles[r] for r in rows], bm25)
    systems |= {f"{view}_zero_shot": dense(vectors) for view, vectors in views.items()}
    systems["bm25"] = lambda rows: bm25.scores([titles[r] for r in rows])
    results: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[int, float]] = {}
    all_ranks: dict[str, np.ndarray] = {}
    for name, scorer in systems.items():
        ranks = ranks_for(pairs, titles, scorer)
        all_ranks[name] = ranks
        results[name] = _rounded(ranking_metrics(ranks))
        curves[name] = {k: float((ranks <= k).mean()) for k in CURVE_KS}
    results["shipped"]["pair_accuracy"] = round(
        pair_accuracy(shipped, pairs, titles, ranker.threshold_), 4)
    raw_threshold = getattr(ranker, "raw_threshold_", None)
    if raw_threshold is not None:
        results["minilm_zero_shot"]["pair_accuracy"] = round(
            pair_accuracy(raw, pairs, titles, raw_threshold), 4)

    duplicates = [p for p in pairs if p.duplicate]
    metrics: dict[str, Any] = {
        **results["shipped"],
        "threshold": round(float(ranker.threshold_), 4),
        "systems": results,
        "pairs": len(pairs), "duplicate_pairs": len(duplicates), "titles": len(titles),
        "queries": len({p.title1 for p in duplicates}),
        "memory_pairs": len(reranker.memory_) if reranker is not None else 0,
        "data": str(path) if data is not None else f"{path} (held-out split)",
        "model": {k: getattr(ranker, "stamp_", {}).get(k)
                  for k in ("name", "version", "created", "fit_seconds", "params")},
        "encode_seconds": round(encode_seconds, 2),
        "query_encode_ms": round(measure_latency(ranker), 2),
    }
    errors = _errors(duplicates, titles, all_ranks["shipped"], shipped_scores)
    figure = hits_curve_figure(curves, f"Duplicate ranking among {len(titles)} titles")
    write_report(out_dir, "duplicates", metrics, errors, figure, figure_name="hits_at_k")
    return metrics


def _remember_all_pairs(ranker: DuplicateRanker, pairs: Sequence[TitlePair],
                        workspace: Workspace) -> None:
    """Evaluating a file of its own, the re-ranker may remember every labelled pair we have
    (the held-out split too), except those in the file."""
    reranker = ranker.reranker_
    if reranker is None:
        return
    try:
        path = workspace.require(PAIRS_DATASET)
    except FileNotFoundError:  # the catalogue's "fetch it first" error
        return
    in_file = {(p.title1, p.title2) for p in pairs} | {(p.title2, p.title1) for p in pairs}
    ours = [p for p in read_pairs(path) if (p.title1, p.title2) not in in_file]
    reranker.remember(ours, {
        view: partial(encode_titles, ranker._encoder(view), cache_dir=workspace.embeddings_cache)
        for view in reranker.views_})


def _errors(duplicates: Sequence[TitlePair], titles: Sequence[str], ranks: np.ndarray,
            scorer: Scorer, limit: int = 2000) -> list[dict[str, Any]]:
    """The pairs whose duplicate is ranked below 10, with what came first instead."""
    position = {t: i for i, t in enumerate(titles)}
    missed = [i for i in np.argsort(-ranks).tolist() if ranks[i] > 10][:limit]
    errors: list[dict[str, Any]] = []
    for start in range(0, len(missed), 256):
        block = missed[start:start + 256]
        rows = np.asarray([position[duplicates[i].title1] for i in block])
        scores = scorer(rows)
        scores[np.arange(len(rows)), rows] = -np.inf
        for i, row_scores in zip(block, scores, strict=True):
            top = np.argsort(-row_scores)[:3]
            errors.append({
                "query": duplicates[i].title1, "duplicate": duplicates[i].title2,
                "rank": int(ranks[i]), "ranked_first": [titles[j] for j in top],
            })
    return errors
