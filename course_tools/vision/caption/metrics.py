"""Caption metrics as the COCO evaluation computes them: corpus BLEU-1..4 and CIDEr-D.

The scorers are pycocoevalcap's own (pure Python); only its tokeniser (which needs Java) is
replaced by :func:`~.data.tokenize`. METEOR and SPICE are left out because they need Java.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from course_tools.vision.caption.data import tokenize


def caption_scores(candidates: Sequence[str], references: Sequence[Sequence[str]]
                   ) -> dict[str, float]:
    """``bleu1``..``bleu4`` and ``cider`` of one candidate per image against its references."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    if len(candidates) != len(references) or not candidates:
        raise ValueError("need one candidate per image and at least one image")
    bleu = BleuScorer(n=4)
    cider = CiderScorer(n=4, sigma=6.0)
    for candidate, refs in zip(candidates, references, strict=True):
        if not refs:
            raise ValueError("every image needs at least one reference")
        hypothesis = " ".join(tokenize(candidate))
        tokenised = [" ".join(tokenize(r)) for r in refs]
        bleu += (hypothesis, tokenised)
        cider += (hypothesis, tokenised)
    bleu_scores, _ = bleu.compute_score(option="closest", verbose=0)
    cider_score, _ = cider.compute_score()
    out = {f"bleu{n + 1}": float(score) for n, score in enumerate(bleu_scores)}
    out["cider"] = float(cider_score)
    return out


def nearest_neighbours(train: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query vector, the index of the most cosine-similar training vector and that
    similarity."""
    a = _unit(train)
    b = _unit(queries)
    sims = b @ a.T
    best = sims.argmax(axis=1)
    return best, sims[np.arange(len(b)), best]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8))
