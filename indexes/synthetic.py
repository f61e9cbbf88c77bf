"""Synthetic title vectors that keep the neighbourhood structure of real MiniLM embeddings.

The benchmark needs corpora of millions of vectors but has ~120k real titles. Copying each real
vector with isotropic noise (``indexes.bench.synthetic_chunk``) makes tight clumps, tens of
noisy copies of every title, whose neighbours all sit in one or two IVF lists, so recall
measured on such a corpus flatters the index. :class:`NeighbourhoodSampler` instead draws each
vector *between* real titles:

1. pick a real title ``i`` at random, with its ``k`` nearest real neighbours ``n_1..n_k``;
2. mix the ``k + 1`` vectors with Dirichlet(``alpha``) weights (a random point of their convex
   hull: small ``alpha`` stays near one of them, ``alpha = 1`` spreads over the hull);
3. add Gaussian noise of norm about ``sigma`` shaped like the real corpus's covariance (so it
   moves along directions real titles vary in, not into the hundreds of dimensions they
   never use), and renormalise.

``alpha`` and ``sigma`` are fitted by :func:`calibrate_sampler`, replaying the growth the
benchmark will do: from ``1/growth`` of the real corpus it grows a synthetic corpus as large as
the real one and compares, on the 10/25/50/75/90th percentiles, (a) each synthetic vector's
nearest-neighbour cosine among the others with each real title's among the real corpus, and (b)
held-out real titles' nearest-neighbour cosine against the synthetic corpus with theirs against
the real one. The pair with the smallest mean gap wins. Both quantile sets, and the same numbers
at the benchmark's full size, are reported, so how far the synthetic corpus is from a real one
stays visible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALPHA_GRID = (0.3, 1.0)
SIGMA_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)


def nn_similarity_quantiles(corpus: np.ndarray, probes: np.ndarray,
                            exclude_self: bool) -> list[float]:
    """10/25/50/75/90th percentiles of each probe's nearest-neighbour cosine in ``corpus``."""
    top = np.full(len(probes), -1.0, dtype=np.float32)
    for start in range(0, len(corpus), 100_000):
        scores = probes @ np.asarray(corpus[start:start + 100_000]).T
        if exclude_self:
            scores[scores > 0.99999] = -1.0  # the probe itself (and exact duplicates)
        top = np.maximum(top, scores.max(axis=1))
    return [float(v) for v in np.percentile(top, [10, 25, 50, 75, 90])]


def nearest_neighbours(vectors: np.ndarray, k: int, *, chunk: int = 1024) -> np.ndarray:
    """Row ids of each row's ``k`` nearest other rows (cosine, unit vectors), nearest first:
    brute force in chunks of ``chunk`` rows (BLAS product, then ``torch.topk``, ~4x faster
    than ``numpy.argpartition`` here: at 120k rows the top-k, not the product, was the cost)."""
    import torch

    n = len(vectors)
    k = min(k, n - 1)
    out = np.empty((n, k), dtype=np.int32)
    for start in range(0, n, chunk):
        scores = vectors[start:start + chunk] @ vectors.T
        scores[np.arange(len(scores)), np.arange(start, start + len(scores))] = -2.0
        out[start:start + chunk] = torch.topk(torch.from_numpy(scores), k, dim=1).indices.numpy()
    return out


class NeighbourhoodSampler:
    """Draws synthetic unit vectors among real ones: a Dirichlet(``alpha``) mix of a real
    vector and its ``k`` nearest real neighbours, plus covariance-shaped noise of norm about
    ``sigma`` (see the module docstring). ``fit`` on the real vectors, then ``sample``."""

    def __init__(self, k: int = 10, alpha: float = 0.3, sigma: float = 0.4) -> None:
        self.k = k
        self.alpha = alpha
        self.sigma = sigma

    def fit(self, real: np.ndarray, neighbours: np.ndarray | None = None
            ) -> NeighbourhoodSampler:
        """Learn the real vectors (``parents_``), their neighbour table (``neighbours_``; pass
        ``neighbours``, from :func:`nearest_neighbours`, to reuse one computed before) and the
        noise's shape (``noise_basis_``: rows whose Gaussian combination has the real
        covariance's directions and unit expected norm)."""
        parents = np.array(real, dtype=np.float32)
        parents /= np.linalg.norm(parents, axis=1, keepdims=True)
        if len(parents) < 2:
            raise ValueError("need at least two real vectors to sample between")
        if neighbours is not None and neighbours.shape != (len(parents), min(self.k,
                                                                            len(parents) - 1)):
            raise ValueError(f"neighbour table of shape {neighbours.shape} does not fit "
                             f"{len(parents)} vectors and k = {self.k}")
        self.parents_ = parents
        self.neighbours_ = (nearest_neighbours(parents, self.k) if neighbours is None
                            else neighbours)
        sample = parents[np.linspace(0, len(parents) - 1, min(len(parents), 20_000)).astype(int)]
        centred = sample - sample.mean(axis=0)
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(centred))
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        self.noise_basis_ = np.ascontiguousarray(
            (eigenvectors * np.sqrt(eigenvalues / eigenvalues.sum())).T, dtype=np.float32)
        return self

    def sample(self, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` synthetic vectors (float32, unit length) and the real row each was grown
        from; the same ``seed`` gives the same vectors."""
        if not hasattr(self, "parents_"):
            raise ValueError("NeighbourhoodSampler is not fitted yet (call fit first)")
        rng = np.random.default_rng(seed)
        parents = rng.integers(0, len(self.parents_), size=size)
        members = np.concatenate([parents[:, None], self.neighbours_[parents]], axis=1)
        weights = rng.dirichlet(np.full(members.shape[1], self.alpha), size).astype(np.float32)
        vectors = np.einsum("nk,nkd->nd", weights, self.parents_[members])
        noise = rng.standard_normal((size, self.noise_basis_.shape[0]), dtype=np.float32)
        vectors += np.float32(self.sigma) * (noise @ self.noise_basis_)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors, dtype=np.float32), parents


def calibrate_sampler(base: np.ndarray, held_out: np.ndarray, growth: int = 1, *,
                      k: int = 10, n_probes: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The ``alpha`` and ``sigma`` whose synthetic corpus, grown ``growth``-fold from a random
    ``1/growth`` of ``base`` up to ``len(base)`` vectors, matches ``base`` best: the mean gap
    of the nearest-neighbour cosine quantiles of its own vectors and of the ``held_out`` real
    titles (not in ``base``) against it, to those of ``base``. Returns the pair, the real
    quantiles and the whole grid."""
    rng = np.random.default_rng(seed)
    growth = max(1, int(growth))
    probes = base[np.sort(rng.choice(len(base), min(n_probes, len(base)), replace=False))]
    held_out = held_out[:n_probes]
    real_self = nn_similarity_quantiles(base, probes, exclude_self=True)
    real_queries = nn_similarity_quantiles(base, held_out, exclude_self=False)
    seeds = base[np.sort(rng.choice(len(base), max(k + 1, len(base) // growth), replace=False))]
    table: list[dict[str, Any]] = []
    fitted: NeighbourhoodSampler | None = None
    for alpha in ALPHA_GRID:
        for sigma in SIGMA_GRID:
            sampler = NeighbourhoodSampler(k, alpha, sigma)
            if fitted is None:
                fitted = sampler.fit(seeds)
            else:  # same seeds: reuse the neighbour table and noise shape
                sampler.parents_, sampler.neighbours_, sampler.noise_basis_ = (
                    fitted.parents_, fitted.neighbours_, fitted.noise_basis_)
            synthetic, _ = sampler.sample(len(base), seed + 1)
            own = nn_similarity_quantiles(synthetic, synthetic[:len(probes)], exclude_self=True)
            queries = nn_similarity_quantiles(synthetic, held_out, exclude_self=False)
            gap = float(np.mean(np.abs(np.subtract(own, real_self)))
                        + np.mean(np.abs(np.subtract(queries, real_queries)))) / 2
            table.append({"alpha": alpha, "sigma": sigma, "self_quantiles": own,
                          "query_quantiles": queries, "gap": gap})
    best = min(table, key=lambda row: float(row["gap"]))
    return {"k": k, "alpha": best["alpha"], "sigma": best["sigma"], "growth": growth,
            "seed_titles": len(seeds), "real_self_quantiles": real_self,
            "real_query_quantiles": real_queries, "grid": table}
