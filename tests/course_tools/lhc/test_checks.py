"""The Flavours-of-Physics agreement (KS) and correlation (CvM) checks on known distributions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp, norm

from course_tools.lhc.checks import CVM_LIMIT, KS_LIMIT, cvm_flatness, ks_distance


def test_ks_matches_scipy_without_weights() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 3_000), rng.normal(0.2, 1.1, 2_000)
    assert ks_distance(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


def test_ks_of_shifted_gaussians_is_known() -> None:
    rng = np.random.default_rng(1)
    shift = 0.5
    a, b = rng.normal(0, 1, 50_000), rng.normal(shift, 1, 50_000)
    expected = 2 * norm.cdf(shift / 2) - 1  # the CDFs differ most half-way between the means
    assert ks_distance(a, b) == pytest.approx(expected, abs=0.015)
    assert ks_distance(a, rng.normal(0, 1, 50_000)) < 0.02 < KS_LIMIT


def test_ks_weights_act_like_repeated_events() -> None:
    a = np.array([0.1, 0.2, 0.3])
    b = np.array([0.1, 0.2, 0.2, 0.3, 0.3, 0.3])
    weighted = ks_distance(a, np.array([0.1, 0.2, 0.3]), None, np.array([1.0, 2.0, 3.0]))
    assert weighted == pytest.approx(ks_distance(a, b))
    # ties between the samples are not a difference
    assert ks_distance(np.ones(10), np.ones(7)) == 0.0


def test_cvm_is_small_for_predictions_independent_of_mass() -> None:
    rng = np.random.default_rng(2)
    mass = rng.uniform(1.6, 1.95, 5_000)
    assert cvm_flatness(rng.random(5_000), mass) < CVM_LIMIT


def test_cvm_flags_predictions_that_follow_the_mass() -> None:
    rng = np.random.default_rng(3)
    mass = rng.uniform(1.6, 1.95, 5_000)
    sculpted = mass + rng.normal(0, 0.1, 5_000)
    mild = mass + rng.normal(0, 1.0, 5_000)
    assert cvm_flatness(sculpted, mass) > CVM_LIMIT
    assert cvm_flatness(sculpted, mass) > cvm_flatness(mild, mass)
    # a monotonic transformation of the output changes nothing (only ranks count)
    assert cvm_flatness(np.exp(sculpted), mass) == pytest.approx(cvm_flatness(sculpted, mass))


def _challenge_cvm(predictions: np.ndarray, masses: np.ndarray, n_neighbours: int = 200,
                   step: int = 50) -> float:
    """The challenge's own rank-based code (evaluation.compute_cvm), for comparison."""
    predictions = predictions[np.argsort(masses)]
    ranks = np.argsort(np.argsort(predictions, kind="mergesort"), kind="mergesort")
    total = len(ranks)
    target = np.arange(1, total + 1, dtype=float) / total
    cvms = []
    for start in range(0, total - n_neighbours + 1, step):
        window = np.cumsum(np.bincount(ranks[start:start + n_neighbours], minlength=total))
        cvms.append(np.mean((target - window / window[-1]) ** 2))
    return float(np.mean(cvms))


def test_cvm_equals_the_challenge_formula_without_ties() -> None:
    rng = np.random.default_rng(4)
    mass = rng.uniform(1.6, 1.95, 3_000)
    prediction = mass * 0.3 + rng.random(3_000)
    assert cvm_flatness(prediction, mass) == pytest.approx(_challenge_cvm(prediction, mass))


def test_cvm_is_not_fooled_by_tied_outputs() -> None:
    # 60% of the outputs are one value, independent of mass: a ranking would order the ties
    # by mass and report a correlation that is not there
    rng = np.random.default_rng(5)
    mass = rng.uniform(1.6, 1.95, 4_000)
    prediction = np.where(rng.random(4_000) < 0.6, 0.1, rng.random(4_000))
    assert _challenge_cvm(prediction, mass) > CVM_LIMIT
    assert cvm_flatness(prediction, mass) < CVM_LIMIT


def test_cvm_needs_enough_events() -> None:
    with pytest.raises(ValueError, match="at least 200"):
        cvm_flatness(np.zeros(50), np.zeros(50))
