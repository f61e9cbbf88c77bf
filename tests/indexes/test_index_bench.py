"""The benchmark's synthetic corpus, and (slow) one small `bench index` run end to end."""

from __future__ import annotations

import numpy as np
import pytest

from indexes import ThreadMeta
from indexes.bench import NOISE_GRID, calibrate_noise, nn_similarity_quantiles, synthetic_chunk

Corpus = tuple[np.ndarray, list[ThreadMeta]]


def test_synthetic_vectors_keep_real_neighbourhoods(title_corpus: Corpus) -> None:
    vectors, _ = title_corpus
    synthetic, parents = synthetic_chunk(vectors, 0.6, 2000, seed=3)
    assert synthetic.shape == (2000, 384) and synthetic.dtype == np.float32
    assert np.allclose(np.linalg.norm(synthetic, axis=1), 1.0, atol=1e-5)
    assert parents.min() >= 0 and parents.max() < len(vectors)
    similarity_to_parent = np.einsum("ij,ij->i", synthetic, vectors[parents])
    assert 0.8 < float(np.median(similarity_to_parent)) < 0.9  # about 1/sqrt(1+0.6^2)
    again, _ = synthetic_chunk(vectors, 0.6, 2000, seed=3)
    assert np.array_equal(synthetic, again)  # chunks are reproducible from their seed
    uniform = np.random.default_rng(0).standard_normal((2000, 384)).astype(np.float32)
    uniform /= np.linalg.norm(uniform, axis=1, keepdims=True)
    real_nn = nn_similarity_quantiles(vectors, vectors[:200], exclude_self=True)
    assert nn_similarity_quantiles(uniform, uniform[:200], exclude_self=True)[2] < 0.3
    assert real_nn[2] > 0.4  # real titles have near neighbours; uniform vectors do not


def test_calibration_picks_the_closest_noise_scale(title_corpus: Corpus) -> None:
    vectors, _ = title_corpus
    fitted = calibrate_noise(vectors, n_probes=200)
    assert fitted["sigma"] in NOISE_GRID
    gaps = {row["sigma"]: row["gap"] for row in fitted["grid"]}
    assert gaps[fitted["sigma"]] == min(gaps.values())
    assert fitted["real_quantiles"] == sorted(fitted["real_quantiles"])


@pytest.mark.slow
def test_bench_index_reports_the_promised_metrics(shared_data_dir: object) -> None:
    from indexes.bench import bench_index

    result = bench_index(3000, 384, real=False, json=True, n_queries=200, st_queries=20)
    for key in ("recall_at_10", "p50_ms", "p99_ms", "qps", "speedup_vs_numpy", "rss_mb"):
        assert isinstance(result[key], float), key
    assert result["n"] == 3000 and result["type"] == "flat" and result["recall_at_10"] == 1.0
