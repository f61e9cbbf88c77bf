"""Blending and stacking out-of-fold predictions."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss

from course_tools.compete.ensemble import Blend, Stack, mean_of, out_of_fold


def _predictions(n: int = 3_000) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """A target, one informative model, one weaker one and a useless one, and 3 folds."""
    rng = np.random.default_rng(0)
    signal = rng.normal(size=n)
    y = (signal + rng.normal(scale=0.8, size=n) > 0).astype(float)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))

    good = sigmoid(2 * signal + rng.normal(scale=0.5, size=n))
    weak = sigmoid(signal + rng.normal(scale=2.0, size=n))
    useless = sigmoid(rng.normal(size=n))
    return [good, weak, useless], y, np.arange(n) % 3


def test_blend_weights_are_a_convex_mix_that_favours_the_good_model() -> None:
    preds, y, _ = _predictions()
    blend = Blend("binary").fit(preds, y)
    assert np.all(blend.weights_ >= 0) and np.isclose(blend.weights_.sum(), 1.0)
    assert blend.weights_[0] > 0.5 and blend.weights_[2] < 0.1
    assert log_loss(y, blend.predict(preds)) <= log_loss(y, mean_of(preds))


def test_stack_out_of_fold_scores_no_better_than_in_fold() -> None:
    preds, y, folds = _predictions()
    inside = Stack("binary").fit(preds, y).predict(preds)
    held_out = out_of_fold(Stack, "binary", preds, y, folds)
    assert log_loss(y, held_out) >= log_loss(y, inside)
    assert log_loss(y, held_out) < log_loss(y, preds[1])  # still beats the weak model
    coefficients = Stack("binary").fit(preds, y).coefficients()
    assert np.argmax(coefficients) == 0 and abs(coefficients[2]) < 0.2


def test_multiclass_and_regression_shapes() -> None:
    rng = np.random.default_rng(1)
    probs = [rng.dirichlet(np.ones(4), size=200) for _ in range(3)]
    y = rng.integers(0, 4, size=200)
    assert Stack("multiclass").fit(probs, y).predict(probs).shape == (200, 4)
    assert Blend("multiclass").fit(probs, y).predict(probs).shape == (200, 4)
    values = [rng.normal(size=200) for _ in range(3)]
    target = values[0] + 0.1 * rng.normal(size=200)
    assert Stack("regression").fit(values, target).predict(values).shape == (200,)
