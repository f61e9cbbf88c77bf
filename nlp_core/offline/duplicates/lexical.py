"""Lexical scoring of titles: word tokens and BM25."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9_]+(?:[.+#][a-z0-9_+#]+)*[#+]*")


def lexical_tokens(text: str) -> list[str]:
    """Lower-cased word tokens (``c++``, ``node.js``, ``12.04`` kept whole) minus stop words."""
    from nlp_core.text import STOPWORDS

    return [t for t in _WORD.findall(text.lower()) if t not in STOPWORDS]


class Bm25:
    """BM25 (``bm25s``) over a fixed list of texts; scores whole rows or returns the top k."""

    def fit(self, texts: Sequence[str]) -> Bm25:
        import bm25s

        self.n_docs_ = len(texts)
        self.model_ = bm25s.BM25()
        self.model_.index([lexical_tokens(t) or ["__empty__"] for t in texts],
                          show_progress=False)
        return self

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """``(len(queries), n_docs)`` BM25 scores."""
        out = np.zeros((len(queries), self.n_docs_), dtype=np.float32)
        vocab = self.model_.vocab_dict
        for i, query in enumerate(queries):
            tokens = [t for t in lexical_tokens(query) if t in vocab]
            if tokens:
                out[i] = self.model_.get_scores(tokens)
        return out

    def top_k(self, query: str, k: int,
              mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, scores)`` of the ``k`` best documents (``mask``: 1 where allowed)."""
        scores = self.scores([query])[0]
        if mask is not None:
            scores = np.where(mask > 0, scores, 0.0)
        k = min(k, len(scores))
        rows = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        rows = rows[np.argsort(-scores[rows])]
        keep = scores[rows] > 0
        return rows[keep], scores[rows][keep]
