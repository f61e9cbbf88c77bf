"""Ranking metrics of duplicate search: Hits@k, MRR, DCG, and the best pair threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hits_at_k(ranks: Sequence[int] | np.ndarray, k: int) -> float:
    """Share of queries whose relevant item is ranked ``k`` or better (ranks start at 1)."""
    array = np.asarray(ranks)
    return float((array <= k).mean()) if len(array) else 0.0


def mean_reciprocal_rank(ranks: Sequence[int] | np.ndarray) -> float:
    """Mean of ``1 / rank``."""
    array = np.asarray(ranks, dtype=np.float64)
    return float((1.0 / array).mean()) if len(array) else 0.0


def dcg_at_k(ranks: Sequence[int] | np.ndarray, k: int = 10) -> float:
    """Mean DCG@k with one relevant item per query: ``1 / log2(1 + rank)`` if ``rank <= k``."""
    array = np.asarray(ranks, dtype=np.float64)
    if not len(array):
        return 0.0
    gains = np.where(array <= k, 1.0 / np.log2(1.0 + array), 0.0)
    return float(gains.mean())


def ranking_metrics(ranks: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Hits@1/5/10, MRR and DCG@10 of 1-based ranks."""
    return {
        "hits@1": hits_at_k(ranks, 1), "hits@5": hits_at_k(ranks, 5),
        "hits@10": hits_at_k(ranks, 10), "mrr": mean_reciprocal_rank(ranks),
        "dcg@10": dcg_at_k(ranks, 10),
    }


def target_ranks(scores: np.ndarray, targets: np.ndarray,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of column ``targets[i]`` in row ``i`` of ``scores`` (ties count against it).

    ``exclude[i]`` is a column left out of row ``i`` (the query itself).
    """
    matrix = np.array(scores, dtype=np.float64, copy=True)
    rows = np.arange(len(matrix))
    if exclude is not None:
        matrix[rows, exclude] = -np.inf
    target_scores = matrix[rows, targets]
    return 1 + (matrix > target_scores[:, None]).sum(axis=1) + \
        (matrix == target_scores[:, None]).sum(axis=1) - 1


def best_threshold(similarities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(threshold, accuracy)`` maximising pair accuracy of ``similarity >= threshold``."""
    order = np.argsort(-similarities)
    sims, ys = similarities[order], labels[order].astype(np.int64)
    # predicting the first i pairs duplicate: correct = positives among them + negatives after.
    pos_prefix = np.concatenate([[0], np.cumsum(ys)])
    neg_total = int(len(ys) - ys.sum())
    neg_prefix = np.concatenate([[0], np.cumsum(1 - ys)])
    correct = pos_prefix + (neg_total - neg_prefix)
    best = int(np.argmax(correct))
    if best == 0:
        threshold = float(sims[0]) + 1e-6
    elif best == len(sims):
        threshold = float(sims[-1])
    else:
        threshold = float((sims[best - 1] + sims[best]) / 2)
    return threshold, float(correct[best] / len(ys))
