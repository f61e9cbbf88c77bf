"""Mean (target) encodings that never read a row's own target.

The course's regularisations, all in :class:`TargetEncoder`:

* **out of fold**: a training row's encoding comes from the other K folds only
  (``scheme="kfold"``; folds never split a group when ``groups`` are given);
* **expanding mean**: for time-ordered data, from the rows known strictly before the row's
  time (``scheme="expanding"``; rows at the same time do not see each other);
* **smoothing** toward the global mean: ``(sum + a * prior) / (count + a)``, where the prior is
  itself out of fold (the other folds' mean, or the mean of all earlier rows);
* **noise**: Gaussian noise on the training rows' encodings only.

New rows (validation, test) are encoded with the statistics of every training row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from course_tools.compete.problem import Problem

Scheme = Literal["kfold", "expanding"]


def encoding_scheme(problem: Problem) -> Scheme:
    """Expanding means for time-ordered problems, K-fold OOF means otherwise."""
    return "expanding" if problem.scheme == "time" else "kfold"


def _as_matrix(y: np.ndarray) -> np.ndarray:
    """Targets as a float (n, k) matrix (k > 1 for one-hot multiclass targets)."""
    array = np.asarray(y, dtype=float)
    return array[:, None] if array.ndim == 1 else array


class TargetEncoder:
    """Out-of-fold, smoothed, optionally noisy mean encodings of categorical columns.

    ``fit_transform(X, y)`` returns the training rows' encodings (each from other rows only)
    and remembers full statistics; ``transform(X)`` encodes new rows. Unseen categories and
    missing values (a category of their own) fall back to the prior.
    """

    def __init__(self, columns: Sequence[str], *, scheme: Scheme = "kfold", n_splits: int = 5,
                 smoothing: float = 20.0, noise: float = 0.0, random_state: int = 0) -> None:
        self.columns = list(columns)
        self.scheme = scheme
        self.n_splits = n_splits
        self.smoothing = smoothing
        self.noise = noise
        self.random_state = random_state

    def feature_names(self, n_targets: int) -> list[str]:
        if n_targets == 1:
            return [f"te_{col}" for col in self.columns]
        return [f"te_{col}_{k}" for col in self.columns for k in range(n_targets)]

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> TargetEncoder:
        """Remember each category's target sum and count over all rows of ``X``."""
        Y = _as_matrix(y)
        self.prior_ = Y.mean(axis=0)
        self.n_targets_ = Y.shape[1]
        self.categories_: dict[str, pd.Index] = {}
        self.sums_: dict[str, np.ndarray] = {}
        self.counts_: dict[str, np.ndarray] = {}
        for col in self.columns:
            codes, uniques = pd.factorize(X[col], use_na_sentinel=False)
            self.categories_[col] = pd.Index(uniques)
            self.counts_[col] = np.bincount(codes, minlength=len(uniques)).astype(float)
            self.sums_[col] = np.stack([np.bincount(codes, weights=Y[:, k],
                                                    minlength=len(uniques))
                                        for k in range(self.n_targets_)], axis=1)
        self.feature_names_ = self.feature_names(self.n_targets_)
        return self

    def _smooth(self, sums: np.ndarray, counts: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """``(sum + a * prior) / (count + a)``, and the prior itself where nothing was seen."""
        weight = counts[:, None] + self.smoothing
        mean = sums / np.where(weight > 0, weight, 1.0)
        return np.asarray(np.where(weight > 0, mean + self.smoothing * prior / np.where(
            weight > 0, weight, 1.0), prior))

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Encode new rows with the statistics of every row seen by :meth:`fit`."""
        out = []
        for col in self.columns:
            index = self.categories_[col].get_indexer(X[col])
            seen = index >= 0
            sums = np.zeros((len(X), self.n_targets_))
            counts = np.zeros(len(X))
            sums[seen] = self.sums_[col][index[seen]]
            counts[seen] = self.counts_[col][index[seen]]
            out.append(self._smooth(sums, counts, self.prior_))
        return np.concatenate(out, axis=1) if out else np.zeros((len(X), 0))

    def fit_transform(self, X: pd.DataFrame, y: np.ndarray, *, order: np.ndarray | None = None,
                      known_at: np.ndarray | None = None,
                      groups: np.ndarray | None = None) -> np.ndarray:
        """The training rows' own encodings, each computed without that row's target.

        The expanding scheme needs ``order``, the time each row is predicted at; a row reads
        the rows whose target was known strictly before that (``known_at``, by default their
        own ``order``). ``groups`` keeps a group's rows in one fold of the K-fold scheme.
        """
        self.fit(X, y)
        Y = _as_matrix(y)
        if self.scheme == "expanding":
            if order is None:
                raise ValueError("the expanding scheme needs the rows' order (times)")
            order = np.asarray(order)
            known = order if known_at is None else np.asarray(known_at)
            encoded = self._expanding(X, Y, order, known)
        else:
            encoded = self._out_of_fold(X, Y, groups)
        if self.noise > 0:
            rng = np.random.default_rng(self.random_state)
            scale = self.noise * max(float(Y.std()), 1e-12)
            encoded = encoded + rng.normal(0.0, scale, size=encoded.shape)
        return encoded

    def _fold_ids(self, n: int, groups: np.ndarray | None) -> np.ndarray:
        rng = np.random.default_rng(self.random_state)
        if groups is None:
            return np.asarray(rng.permutation(n) % self.n_splits)
        _, group_codes = np.unique(groups, return_inverse=True)
        group_fold = rng.permutation(group_codes.max() + 1) % self.n_splits
        return np.asarray(group_fold[group_codes])

    def _out_of_fold(self, X: pd.DataFrame, Y: np.ndarray,
                     groups: np.ndarray | None) -> np.ndarray:
        folds = self._fold_ids(len(X), groups)
        out = np.zeros((len(X), len(self.columns) * self.n_targets_))
        for j, col in enumerate(self.columns):
            codes = self.categories_[col].get_indexer(X[col])
            n_cats = len(self.categories_[col])
            block = slice(j * self.n_targets_, (j + 1) * self.n_targets_)
            for fold in range(self.n_splits):
                inside = folds == fold
                if not inside.any():
                    continue
                outside = ~inside
                counts = self.counts_[col] - np.bincount(codes[inside], minlength=n_cats)
                sums = self.sums_[col] - np.stack(
                    [np.bincount(codes[inside], weights=Y[inside, k], minlength=n_cats)
                     for k in range(self.n_targets_)], axis=1)
                prior = Y[outside].mean(axis=0) if outside.any() else self.prior_
                rows = codes[inside]
                out[inside, block] = self._smooth(sums[rows], counts[rows], prior)
        return out

    def _expanding(self, X: pd.DataFrame, Y: np.ndarray, order: np.ndarray,
                   known_at: np.ndarray) -> np.ndarray:
        """Means over the rows known strictly before each row's time, smoothed toward the mean
        of all such rows; rows with none at all get NaN (no history: the models' missing
        value)."""
        out = np.zeros((len(X), len(self.columns) * self.n_targets_))
        sums, counts = known_before(np.zeros(len(X), dtype=np.int64), known_at, Y, order)
        with np.errstate(invalid="ignore", divide="ignore"):
            prior = sums / counts[:, None]
        for j, col in enumerate(self.columns):
            codes = self.categories_[col].get_indexer(X[col]).astype(np.int64)
            sums, counts = known_before(codes, known_at, Y, order)
            block = slice(j * self.n_targets_, (j + 1) * self.n_targets_)
            out[:, block] = (sums + self.smoothing * prior) / (counts[:, None] + self.smoothing)
        return out


def known_before(codes: np.ndarray, known_at: np.ndarray, Y: np.ndarray,
                 query_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row i: the sums of ``Y`` and the count over the other rows j of the same code
    with ``known_at[j] < query_at[i]``."""
    times, ranks = np.unique(np.concatenate([known_at, query_at]), return_inverse=True)
    known_rank, query_rank = ranks[: len(codes)], ranks[len(codes):]
    span = np.int64(len(times) + 1)
    keys = codes * span + known_rank
    sort = np.argsort(keys, kind="stable")
    cumulative = np.vstack([np.zeros((1, Y.shape[1])), np.cumsum(Y[sort], axis=0)])
    upper = np.searchsorted(keys[sort], codes * span + query_rank, side="left")
    lower = np.searchsorted(keys[sort], codes * span, side="left")
    own = known_at < query_at  # a row known before its own time would count itself
    sums = cumulative[upper] - cumulative[lower] - own[:, None] * Y
    counts = (upper - lower - own).astype(float)
    return sums, counts
