"""Our EM against scikit-learn's GaussianMixture from the same initialisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from course_tools.base import ToolContext
from course_tools.bayes.em import (
    EMParams,
    GaussianMixtureEM,
    compare_with_sklearn,
    load_data,
    logsumexp,
    train_em,
)
from course_tools.plots import is_png


def test_logsumexp_is_stable() -> None:
    a = np.array([[1000.0, 1000.0], [-1000.0, -1000.0]])
    assert np.allclose(logsumexp(a, axis=1), [1000 + np.log(2), -1000 + np.log(2)])


def test_same_log_likelihood_as_sklearn_from_same_start() -> None:
    params = EMParams(n_samples=600, n_features=3, n_components=3, seed=4)
    X = load_data(params)
    out = compare_with_sklearn(X, 3, seed=4, max_iter=300, tol=1e-8, repeats=1)
    ours, sk = out["ours"], out["sklearn"]
    assert isinstance(ours, GaussianMixtureEM)
    assert abs(ours.score(X) - sk.score(X)) < 1e-3  # type: ignore[attr-defined]
    assert np.allclose(np.sort(ours.weights_), np.sort(sk.weights_), atol=1e-4)  # type: ignore[attr-defined]
    # EM never decreases the likelihood.
    assert np.all(np.diff(ours.lower_bounds_) > -1e-9)


def test_em_tool_on_iris(tmp_path: Path) -> None:
    result = train_em(ToolContext(params=EMParams(dataset="iris", n_components=3, repeats=1),
                                  work_dir=tmp_path))
    assert result.metrics["log_likelihood_gap"] < 1e-3
    assert all(is_png(data) for _, data in result.images)
    assert "log_likelihood" in result.metrics
