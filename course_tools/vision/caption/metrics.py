"""Caption metrics as the COCO evaluation computes them: corpus BLEU-1..4 and CIDEr-D.

The scorers are pycocoevalcap's own (pure Python); only its tokeniser (which needs Java) is
replaced by :func:`~.data.tokenize`. METEOR and SPICE are left out because they need Java.
"""

from __future__ import annotations

from collections import Counter
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


class CiderD:
    """CIDEr-D of one caption against one image's references, with the n-gram document
    frequencies of a fixed reference corpus (the training captions): the reward of
    self-critical training. Equal to pycocoevalcap's per-image score when the corpus is the
    scored set itself.
    """

    def __init__(self, references: Sequence[Sequence[Sequence[str]]], n: int = 4,
                 sigma: float = 6.0) -> None:
        self.n = n
        self.sigma = sigma
        counts = [[_ngrams(words, n) for words in refs] for refs in references]
        frequency: Counter[tuple[str, ...]] = Counter()
        for refs in counts:
            frequency.update({gram for ref in refs for gram in ref})
        self.log_documents = float(np.log(max(1, len(references))))
        self.log_frequency = {gram: float(np.log(f)) for gram, f in frequency.items()}
        self.references = [[self._vector(ref) for ref in refs] for refs in counts]

    def _vector(self, counts: Counter[tuple[str, ...]]
                ) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
        """tf-idf weights and their norm per n-gram order, and the length CIDEr-D uses."""
        vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(self.n)]
        for gram, tf in counts.items():
            vec[len(gram) - 1][gram] = tf * (self.log_documents
                                             - self.log_frequency.get(gram, 0.0))
        norms = [float(np.sqrt(sum(w * w for w in v.values()))) for v in vec]
        # pycocoevalcap counts bigrams as the length; kept so the scores agree
        length = sum(tf for gram, tf in counts.items() if len(gram) == 2)
        return vec, norms, length

    def score(self, words: Sequence[str], index: int) -> float:
        """CIDEr-D (0-10) of a tokenised caption for reference image ``index``."""
        vec, norms, length = self._vector(_ngrams(words, self.n))
        total = 0.0
        refs = self.references[index]
        for ref_vec, ref_norms, ref_length in refs:
            penalty = float(np.exp(-((length - ref_length) ** 2) / (2 * self.sigma**2)))
            for k in range(self.n):
                if norms[k] == 0 or ref_norms[k] == 0:
                    continue
                dot = sum(min(w, ref_vec[k].get(g, 0.0)) * ref_vec[k].get(g, 0.0)
                          for g, w in vec[k].items())
                total += dot / (norms[k] * ref_norms[k]) * penalty
        return 10.0 * total / self.n / max(1, len(refs))


def _ngrams(words: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i: i + k]) for k in range(1, n + 1)
                   for i in range(len(words) - k + 1))
