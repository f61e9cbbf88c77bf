"""The neighbourhood sampler that grows synthetic corpora from real title vectors."""

from __future__ import annotations

import numpy as np
import pytest

from indexes import ThreadMeta
from indexes.synthetic import (
    ALPHA_GRID,
    SIGMA_GRID,
    NeighbourhoodSampler,
    calibrate_sampler,
    nearest_neighbours,
    nn_similarity_quantiles,
)

Corpus = tuple[np.ndarray, list[ThreadMeta]]


def test_nearest_neighbours_are_exact_and_leave_each_row_out(title_corpus: Corpus) -> None:
    vectors, _ = title_corpus
    table = nearest_neighbours(vectors, 5, chunk=128)
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -2.0)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    assert table.shape == (len(vectors), 5)
    assert not (table == np.arange(len(vectors))[:, None]).any()
    assert np.allclose(np.take_along_axis(scores, table, axis=1),
                       np.take_along_axis(scores, expected, axis=1))


def test_sampled_vectors_lie_among_real_neighbours_not_on_them(title_corpus: Corpus) -> None:
    vectors, _ = title_corpus
    sampler = NeighbourhoodSampler(k=10, alpha=0.3, sigma=0.4).fit(vectors)
    assert sampler.neighbours_.shape == (len(vectors), 10)
    synthetic, parents = sampler.sample(2000, seed=3)
    assert synthetic.shape == (2000, 384) and synthetic.dtype == np.float32
    assert np.allclose(np.linalg.norm(synthetic, axis=1), 1.0, atol=1e-5)
    assert parents.min() >= 0 and parents.max() < len(vectors)
    again, _ = sampler.sample(2000, seed=3)
    assert np.array_equal(synthetic, again)  # chunks are reproducible from their seed
    # near the real neighbourhood: the parent or one of its neighbours is close...
    members = np.concatenate([parents[:, None], sampler.neighbours_[parents]], axis=1)
    closest = np.einsum("nd,nkd->nk", synthetic, vectors[members]).max(axis=1)
    assert 0.7 < float(np.median(closest)) < 0.99
    # ...but no copy of it, and it has real neighbours as real titles do (uniform vectors do not)
    assert float(np.percentile(closest, 99)) < 0.999
    real_nn = nn_similarity_quantiles(vectors, vectors[:200], exclude_self=True)
    synthetic_nn = nn_similarity_quantiles(vectors, synthetic[:200], exclude_self=False)
    assert synthetic_nn[2] > real_nn[2]  # seeded from these very titles
    uniform = np.random.default_rng(0).standard_normal((200, 384)).astype(np.float32)
    uniform /= np.linalg.norm(uniform, axis=1, keepdims=True)
    assert nn_similarity_quantiles(vectors, uniform, exclude_self=False)[2] < 0.3


def test_sampler_must_be_fitted_first() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        NeighbourhoodSampler().sample(3, seed=0)


def test_calibration_picks_the_closest_mix_and_noise(title_corpus: Corpus) -> None:
    vectors, _ = title_corpus
    fitted = calibrate_sampler(vectors[:700], vectors[700:], growth=2, n_probes=200)
    assert fitted["alpha"] in ALPHA_GRID and fitted["sigma"] in SIGMA_GRID
    assert fitted["seed_titles"] == 350 and len(fitted["grid"]) == len(ALPHA_GRID) * len(
        SIGMA_GRID)
    best = min(fitted["grid"], key=lambda row: row["gap"])
    assert (best["alpha"], best["sigma"]) == (fitted["alpha"], fitted["sigma"])
    assert fitted["real_self_quantiles"] == sorted(fitted["real_self_quantiles"])
    # more noise always pushes the synthetic vectors apart
    medians = [row["self_quantiles"][2] for row in fitted["grid"] if row["alpha"] == 0.3]
    assert medians == sorted(medians, reverse=True)
