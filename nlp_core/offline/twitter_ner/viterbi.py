"""BIO-constrained Viterbi decoding: every predicted chunk is well-formed."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def _allowed_transitions(labels: tuple[str, ...]) -> np.ndarray:
    """``allowed[i, j]``: label j may follow label i under BIO (I-X only after B-X or I-X)."""
    n = len(labels)
    allowed = np.ones((n, n), dtype=bool)
    for j, tag in enumerate(labels):
        if tag.startswith("I-"):
            kind = tag[2:]
            for i, prev in enumerate(labels):
                allowed[i, j] = prev in (f"B-{kind}", f"I-{kind}")
    return allowed


def viterbi_bio(log_probs: np.ndarray, labels: Sequence[str]) -> list[str]:
    """The most probable BIO-valid label path for one sentence's (words x labels) log-probs."""
    if len(log_probs) == 0:
        return []
    allowed = _allowed_transitions(tuple(labels))
    trans = np.where(allowed, 0.0, -1e9)
    start = np.array([-1e9 if t.startswith("I-") else 0.0 for t in labels])
    score = start + log_probs[0]
    back = np.zeros(log_probs.shape, dtype=np.int64)
    for t in range(1, len(log_probs)):
        cand = score[:, None] + trans
        back[t] = cand.argmax(axis=0)
        score = cand.max(axis=0) + log_probs[t]
    path = [int(score.argmax())]
    for t in range(len(log_probs) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return [labels[i] for i in reversed(path)]
