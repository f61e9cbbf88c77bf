"""Metropolis–Hastings on Bayesian logistic regression (breast cancer)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from course_tools.base import JobCancelled, ToolContext
from course_tools.bayes.mcmc import (
    LogisticPosterior,
    MCMCParams,
    load_breast_cancer_split,
    metropolis_hastings,
    r_hat,
    train_mcmc,
)
from course_tools.plots import is_png


def test_mh_recovers_a_gaussian() -> None:
    """On a model whose posterior is known in closed form-ish: a 1-feature, intercept-free
    logistic regression with lots of data is close to its Laplace approximation."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2_000, 1))
    y = (rng.random(2_000) < 1 / (1 + np.exp(-1.5 * X[:, 0]))).astype(float)
    post = LogisticPosterior(X, y, prior_scale=10.0)
    theta_map, cov = post.map_and_covariance()
    draws, acc, _ = metropolis_hastings(post, np.zeros((4, 1)), np.linalg.cholesky(cov),
                                        3_000, 500, rng)
    assert 0.1 < acc < 0.6
    assert abs(draws.mean() - theta_map[0]) < 0.05
    assert abs(draws.std() - np.sqrt(cov[0, 0])) < 0.03
    assert r_hat(draws).max() < 1.05


def test_posterior_mean_signs_on_breast_cancer(tmp_path: Path) -> None:
    result = train_mcmc(ToolContext(params=MCMCParams(samples=1_500, burn_in=1_000, chains=2),
                                    work_dir=tmp_path))
    posterior = json.loads(result.artifacts["posterior_summary"].read_text())
    # Target 1 = benign: bigger, more irregular tumours lower the odds of "benign".
    assert posterior["worst texture"]["mean"] < 0
    assert posterior["worst radius"]["mean"] < 0
    assert result.metrics["accuracy"] > 0.9
    # Signs of the large coefficients agree with the MAP estimate.
    X_tr, _, y_tr, _, names = load_breast_cancer_split(0.25, 0)
    theta_map, _ = LogisticPosterior(X_tr, y_tr, 2.5).map_and_covariance()
    for j, name in enumerate(names):
        if abs(theta_map[j]) > 1.5:
            assert np.sign(posterior[name]["mean"]) == np.sign(theta_map[j]), name
    assert is_png(result.images[0][1])


# Without a working cancel 1M samples would run for a long time: the timeout fails it.
@pytest.mark.timeout(300)
def test_cancel_mid_run() -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        with pytest.raises(JobCancelled):
            train_mcmc(ToolContext(params=MCMCParams(samples=1_000_000), work_dir=Path("."),
                                   cancel_event=cancel))
    finally:
        timer.cancel()
