"""Fitted TF-IDF vectorisers frozen into plain arrays, so a trained model predicts without
scikit-learn.

Training uses scikit-learn's ``TfidfVectorizer`` / ``HashingVectorizer``; :meth:`FrozenTfidf.
from_sklearn` copies what they learned (vocabulary or hashing width, idf weights) and reproduces
their ``transform`` for the analyzers amlbot uses: word n-grams of a custom tokenizer, and
``char_wb`` n-grams. Importing scikit-learn costs about a second (it pulls in scipy.stats and
pandas); a loaded bot does not pay it, and the saved form is JSON and ``.npy``, never a pickle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_WHITE_SPACES = re.compile(r"\s\s+")
Features = tuple[np.ndarray, np.ndarray]  # (column indices, values) of one text


def word_ngrams(tokens: list[str], ngram_range: tuple[int, int]) -> list[str]:
    """scikit-learn's word n-grams of ``tokens`` (n from ``ngram_range``, joined by spaces)."""
    low, high = ngram_range
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high + 1, len(tokens) + 1)):
        grams.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return grams


def char_wb_ngrams(text: str, ngram_range: tuple[int, int]) -> list[str]:
    """scikit-learn's ``char_wb`` n-grams: within each space-padded word, a short word once."""
    low, high = ngram_range
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", text).split():
        padded = f" {word} "
        for n in range(low, high + 1):
            if len(padded) <= n:
                grams.append(padded)
                break
            grams.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
    return grams


class FrozenTfidf:
    """``transform`` of a fitted TF-IDF vectoriser (sublinear or raw tf, idf, L2 norm).

    ``analyzer`` is ``"word"`` (``tokenizer`` gives the tokens) or ``"char_wb"``; features are
    looked up in ``vocabulary``, or hashed into ``n_features`` columns (MurmurHash3, as
    ``HashingVectorizer`` does) when it is ``None``.
    """

    def __init__(self, *, analyzer: str, ngram_range: tuple[int, int], lowercase: bool,
                 idf: np.ndarray | None, sublinear_tf: bool,
                 vocabulary: dict[str, int] | None = None, n_features: int = 0,
                 tokenizer: Callable[[str], list[str]] | None = None) -> None:
        if analyzer not in ("word", "char_wb"):
            raise ValueError(f"unsupported analyzer {analyzer!r}")
        if analyzer == "word" and tokenizer is None:
            raise ValueError("a word analyzer needs its tokenizer")
        self.analyzer = analyzer
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.lowercase = lowercase
        self.idf = None if idf is None else np.asarray(idf, dtype=np.float64)
        self.sublinear_tf = sublinear_tf
        self.vocabulary = vocabulary
        self.n_features = len(vocabulary) if vocabulary is not None else int(n_features)
        self.tokenizer = tokenizer

    @classmethod
    def from_sklearn(cls, fitted: Any,
                     tokenizer: Callable[[str], list[str]] | None = None) -> FrozenTfidf:
        """Freeze a fitted ``TfidfVectorizer``, or a ``HashingVectorizer`` + ``TfidfTransformer``
        pipeline (``norm=None`` and ``alternate_sign=False`` on the hashing side)."""
        steps = [step for _, step in fitted.steps] if hasattr(fitted, "steps") else [fitted]
        vectorizer, weighting = steps[0], steps[-1]
        if getattr(weighting, "norm", None) != "l2":
            raise ValueError("only L2-normalised TF-IDF can be frozen")
        hashing = not hasattr(vectorizer, "vocabulary_")
        if hashing and (vectorizer.norm is not None or vectorizer.alternate_sign):
            raise ValueError("hashing must count (norm=None, alternate_sign=False)")
        if vectorizer.stop_words is not None or vectorizer.strip_accents is not None:
            raise ValueError("stop words and accent stripping are not reproduced")
        return cls(
            analyzer=str(vectorizer.analyzer), ngram_range=tuple(vectorizer.ngram_range),
            lowercase=bool(vectorizer.lowercase),
            idf=np.asarray(weighting.idf_) if getattr(weighting, "use_idf", True) else None,
            sublinear_tf=bool(weighting.sublinear_tf),
            vocabulary=None if hashing else {str(k): int(v)
                                             for k, v in vectorizer.vocabulary_.items()},
            n_features=int(vectorizer.n_features) if hashing else 0,
            tokenizer=tokenizer)

    def _grams(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.analyzer == "char_wb":
            return char_wb_ngrams(text, self.ngram_range)
        assert self.tokenizer is not None
        return word_ngrams(self.tokenizer(text), self.ngram_range)

    def _columns(self, grams: list[str]) -> list[int]:
        if self.vocabulary is not None:
            lookup = self.vocabulary.get
            return [c for c in map(lookup, grams) if c is not None]
        import mmh3

        n = self.n_features
        columns = []
        for gram in grams:
            h = mmh3.hash(gram.encode("utf-8"), 0, signed=True)
            columns.append((2147483647 - (n - 1)) % n if h == -2147483648 else abs(h) % n)
        return columns

    def transform_one(self, text: str) -> Features:
        """Column indices (sorted) and L2-normalised TF-IDF values of one text."""
        columns = self._columns(self._grams(text))
        if not columns:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        index, counts = np.unique(np.asarray(columns, dtype=np.int64), return_counts=True)
        values = counts.astype(np.float64)
        if self.sublinear_tf:
            values = np.log(values) + 1.0
        if self.idf is not None:
            values *= self.idf[index]
        norm = float(np.sqrt(values @ values))
        return index, values / norm if norm > 0 else values

    def transform_dense(self, texts: Sequence[str]) -> np.ndarray:
        """Dense ``(len(texts), n_features)`` float32 matrix (for tests and small batches)."""
        out = np.zeros((len(texts), self.n_features), dtype=np.float32)
        for row, text in enumerate(texts):
            index, values = self.transform_one(text)
            out[row, index] = values
        return out

    # --- persistence ----------------------------------------------------------------------
    def save(self, directory: Path, name: str) -> None:
        """Write ``<name>.json`` (settings, vocabulary) and ``<name>.idf.npy``."""
        directory.mkdir(parents=True, exist_ok=True)
        spec = {"analyzer": self.analyzer, "ngram_range": list(self.ngram_range),
                "lowercase": self.lowercase, "sublinear_tf": self.sublinear_tf,
                "n_features": self.n_features, "vocabulary": self.vocabulary,
                "has_idf": self.idf is not None}
        (directory / f"{name}.json").write_text(json.dumps(spec), encoding="utf-8")
        if self.idf is not None:
            np.save(directory / f"{name}.idf.npy", self.idf)

    @classmethod
    def load(cls, directory: Path, name: str,
             tokenizer: Callable[[str], list[str]] | None = None) -> FrozenTfidf:
        """Read what :meth:`save` wrote (JSON and ``.npy`` only)."""
        spec = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
        idf = np.load(directory / f"{name}.idf.npy", allow_pickle=False) \
            if spec["has_idf"] else None
        return cls(analyzer=spec["analyzer"], ngram_range=tuple(spec["ngram_range"]),
                   lowercase=spec["lowercase"], idf=idf, sublinear_tf=spec["sublinear_tf"],
                   vocabulary=spec["vocabulary"], n_features=spec["n_features"],
                   tokenizer=tokenizer)


class LinearScorer:
    """``x @ coef + intercept`` over feature blocks laid side by side: sparse TF-IDF blocks (each
    with a weight) and an optional dense block (sentence embeddings), without building ``x``."""

    def __init__(self, blocks: Sequence[tuple[FrozenTfidf, float]], coef: np.ndarray,
                 intercept: np.ndarray) -> None:
        self.blocks = list(blocks)
        self.coef = coef
        self.intercept = intercept
        self.offsets = np.cumsum([0] + [b.n_features for b, _ in self.blocks])

    @property
    def dense_offset(self) -> int:
        """Where a dense block's columns start in ``coef``."""
        return int(self.offsets[-1])

    def scores(self, texts: Sequence[str], dense: np.ndarray | None = None) -> np.ndarray:
        """``(len(texts), n_outputs)`` float32 scores."""
        out = np.empty((len(texts), self.coef.shape[1]), dtype=np.float32)
        for row, text in enumerate(texts):
            total = self.intercept.astype(np.float64)
            for (block, weight), offset in zip(self.blocks, self.offsets, strict=False):
                index, values = block.transform_one(text)
                if len(index):
                    total = total + (values * weight) @ self.coef[index + offset]
            out[row] = total
        if dense is not None:
            start = self.dense_offset
            out += np.asarray(dense, dtype=np.float32) @ self.coef[start:start + dense.shape[1]]
        return out
