"""Ensembles of the base models' out-of-fold predictions: a plain average, a blend with weights
fitted on the OOF, and a stacked meta-model (logistic regression on logits, multinomial
logistic regression on log-probabilities, or ridge regression).

Each ensemble's validation score is itself out of fold: it is fitted on the other folds' OOF
rows and scored on the held-out fold's, so fitting the ensemble cannot flatter it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from course_tools.compete.kinds import Task

EPS = 1e-6


def _stack_inputs(preds: Sequence[np.ndarray], task: Task) -> np.ndarray:
    """Base predictions as meta-model inputs: logits, log-probabilities, or values."""
    if task == "binary":
        p = np.clip(np.column_stack(preds), EPS, 1 - EPS)
        return np.asarray(np.log(p / (1 - p)))
    if task == "multiclass":
        return np.asarray(np.log(np.clip(np.concatenate(preds, axis=1), EPS, 1.0)))
    return np.column_stack(preds)


class Blend:
    """A weighted average of the base predictions; weights >= 0, summing to 1, chosen to
    minimise the log loss (classification) or squared error (regression) on the OOF rows."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def _combine(self, preds: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
        return np.asarray(sum(w * p for w, p in zip(weights, preds, strict=True)))

    def _loss(self, combined: np.ndarray, y: np.ndarray) -> float:
        if self.task == "regression":
            return float(np.mean((combined - y) ** 2))
        if self.task == "binary":
            p = np.clip(combined, EPS, 1 - EPS)
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        p = np.clip(combined[np.arange(len(y)), y.astype(int)], EPS, 1.0)
        return float(-np.mean(np.log(p)))

    def fit(self, preds: Sequence[np.ndarray], y: np.ndarray) -> Blend:
        from scipy.optimize import minimize

        def objective(logits: np.ndarray) -> float:
            weights = np.exp(logits - logits.max())
            return self._loss(self._combine(preds, weights / weights.sum()), y)

        result = minimize(objective, np.zeros(len(preds)), method="Nelder-Mead",
                          options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 400})
        weights = np.exp(result.x - result.x.max())
        self.weights_ = weights / weights.sum()
        return self

    def predict(self, preds: Sequence[np.ndarray]) -> np.ndarray:
        return self._combine(preds, self.weights_)


class Stack:
    """A linear meta-model on the base models' predictions."""

    def __init__(self, task: Task, regularisation: float = 1.0) -> None:
        self.task = task
        self.regularisation = regularisation

    def fit(self, preds: Sequence[np.ndarray], y: np.ndarray) -> Stack:
        from sklearn.linear_model import LogisticRegression, Ridge

        X = _stack_inputs(preds, self.task)
        model: Any
        if self.task == "regression":
            model = Ridge(alpha=self.regularisation)
        else:
            model = LogisticRegression(C=1.0 / self.regularisation, max_iter=1000)
        self.model_ = model.fit(X, y.astype(int) if self.task != "regression" else y)
        return self

    def predict(self, preds: Sequence[np.ndarray]) -> np.ndarray:
        X = _stack_inputs(preds, self.task)
        if self.task == "regression":
            return np.asarray(self.model_.predict(X))
        proba = np.asarray(self.model_.predict_proba(X))
        return proba[:, 1] if self.task == "binary" else proba

    def coefficients(self) -> np.ndarray:
        return np.asarray(self.model_.coef_).ravel()


def mean_of(preds: Sequence[np.ndarray]) -> np.ndarray:
    return np.asarray(np.mean(np.stack(preds), axis=0))


def out_of_fold(make: type[Blend] | type[Stack], task: Task, preds: Sequence[np.ndarray],
                y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The ensemble's own OOF predictions: for each fold, fitted on the other folds' rows."""
    out = np.zeros_like(preds[0], dtype=float)
    for fold in np.unique(folds):
        held = folds == fold
        ensemble = make(task).fit([p[~held] for p in preds], y[~held])
        out[held] = ensemble.predict([p[held] for p in preds])
    return out
