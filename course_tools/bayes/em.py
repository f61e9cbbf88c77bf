"""EM for Gaussian mixtures with full covariances, written in numpy (log-sum-exp throughout),
and the ``bayes.em`` tool that checks it against scikit-learn's ``GaussianMixture`` started from
the very same parameters.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import Field

from course_tools import register
from course_tools.base import ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec
from course_tools.plots import figure_png, new_figure


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(a))) along ``axis`` without overflow."""
    top = a.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.exp(a - top).sum(axis=axis)) + np.squeeze(top, axis=axis)


def kmeans_init(
    X: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 20, reg: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means++ seeding and Lloyd steps; returns (weights, means, covariances)."""
    n = X.shape[0]
    centers = [X[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min([((X - c) ** 2).sum(axis=1) for c in centers], axis=0)
        centers.append(X[rng.choice(n, p=d2 / d2.sum())])
    means = np.array(centers)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        d2 = ((X[:, None, :] - means[None]) ** 2).sum(axis=2)
        labels = d2.argmin(axis=1)
        means = np.array([X[labels == j].mean(axis=0) if np.any(labels == j) else means[j]
                          for j in range(k)])
    resp = np.eye(k)[labels]
    nk = resp.sum(axis=0) + 10 * np.finfo(float).eps
    weights = nk / n
    covs = np.empty((k, X.shape[1], X.shape[1]))
    for j in range(k):
        diff = X - means[j]
        covs[j] = (resp[:, j] * diff.T) @ diff / nk[j] + reg * np.eye(X.shape[1])
    return weights, means, covs


class GaussianMixtureEM:
    """A Gaussian mixture fitted by EM, scikit-learn style (``fit`` returns self, learned ``_``).

    Stops when the mean log-likelihood per sample changes by less than ``tol`` between
    iterations, the same rule as scikit-learn's ``GaussianMixture``.
    """

    def __init__(self, n_components: int = 3, max_iter: int = 100, tol: float = 1e-3,
                 reg_covar: float = 1e-6, weights_init: np.ndarray | None = None,
                 means_init: np.ndarray | None = None,
                 covariances_init: np.ndarray | None = None, random_state: int = 0) -> None:
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.weights_init = weights_init
        self.means_init = means_init
        self.covariances_init = covariances_init
        self.random_state = random_state

    def _log_gaussians(self, X: np.ndarray) -> np.ndarray:
        """log N(x_i | mu_j, Sigma_j) for every sample and component, via Cholesky factors."""
        from scipy.linalg import solve_triangular

        n, d = X.shape
        out = np.empty((n, self.n_components))
        for j in range(self.n_components):
            chol = self.chol_[j]
            z = solve_triangular(chol, (X - self.means_[j]).T, lower=True)
            log_det = 2.0 * np.log(np.diag(chol)).sum()
            out[:, j] = -0.5 * (d * np.log(2 * np.pi) + log_det + (z * z).sum(axis=0))
        return out

    def _e_step(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(per-sample log-likelihood, log responsibilities)."""
        weighted = self._log_gaussians(X) + np.log(self.weights_)
        log_norm = logsumexp(weighted, axis=1)
        return log_norm, weighted - log_norm[:, None]

    def _m_step(self, X: np.ndarray, log_resp: np.ndarray) -> None:
        resp = np.exp(log_resp)
        nk = resp.sum(axis=0) + 10 * np.finfo(resp.dtype).eps
        self.weights_ = nk / X.shape[0]
        self.means_ = resp.T @ X / nk[:, None]
        d = X.shape[1]
        covs = np.empty((self.n_components, d, d))
        for j in range(self.n_components):
            diff = X - self.means_[j]
            covs[j] = (resp[:, j] * diff.T) @ diff / nk[j]
            covs[j].flat[:: d + 1] += self.reg_covar
        self._set_covariances(covs)

    def _set_covariances(self, covs: np.ndarray) -> None:
        self.covariances_ = covs
        self.chol_ = np.linalg.cholesky(covs)

    def fit(self, X: np.ndarray) -> GaussianMixtureEM:
        """Run EM from the given initial parameters (or a k-means++ start)."""
        X = np.asarray(X, dtype=float)
        if self.weights_init is None or self.means_init is None or self.covariances_init is None:
            rng = np.random.default_rng(self.random_state)
            weights, means, covs = kmeans_init(X, self.n_components, rng, reg=self.reg_covar)
        else:
            weights, means, covs = self.weights_init, self.means_init, self.covariances_init
        self.weights_ = np.array(weights, dtype=float)
        self.means_ = np.array(means, dtype=float)
        self._set_covariances(np.array(covs, dtype=float))
        self.lower_bounds_: list[float] = []
        self.converged_ = False
        lower = -np.inf
        self.n_iter_ = 0
        for iteration in range(1, self.max_iter + 1):
            self.n_iter_ = iteration
            log_norm, log_resp = self._e_step(X)
            self._m_step(X, log_resp)
            previous, lower = lower, float(log_norm.mean())
            self.lower_bounds_.append(lower)
            if abs(lower - previous) < self.tol:
                self.converged_ = True
                break
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Log-likelihood of each sample under the fitted mixture."""
        return self._e_step(np.asarray(X, dtype=float))[0]

    def score(self, X: np.ndarray) -> float:
        """Mean log-likelihood per sample."""
        return float(self.score_samples(X).mean())

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most responsible component of each sample."""
        return np.asarray(self._e_step(np.asarray(X, dtype=float))[1].argmax(axis=1))


class EMParams(ToolParams):
    """Parameters of the EM tool."""

    dataset: Literal["blobs", "iris", "wine"] = Field(default="blobs",
                                                      description="data to cluster")
    n_samples: int = Field(default=3_000, ge=20, le=200_000, description="samples (blobs only)")
    n_features: int = Field(default=2, ge=1, le=50, description="dimensions (blobs only)")
    n_components: int = Field(default=4, ge=1, le=50, description="mixture components")
    max_iter: int = Field(default=200, ge=1, le=10_000, description="max EM iterations")
    tol: float = Field(default=1e-6, gt=0.0, le=1.0,
                       description="stop when mean log-lik changes less")
    repeats: int = Field(default=3, ge=1, le=50, description="timing repeats (best of)")


def load_data(p: EMParams) -> np.ndarray:
    """The chosen dataset as a float matrix (iris/wine standardised)."""
    if p.dataset == "blobs":
        rng = np.random.default_rng(p.seed)
        centers = rng.uniform(-8, 8, size=(p.n_components, p.n_features))
        sizes = rng.multinomial(p.n_samples, np.full(p.n_components, 1 / p.n_components))
        parts = []
        for center, size in zip(centers, sizes, strict=True):
            a = rng.normal(size=(p.n_features, p.n_features)) * 0.8
            parts.append(center + rng.normal(size=(size, p.n_features)) @ a)
        return np.concatenate(parts)
    from sklearn import datasets

    X = (datasets.load_iris() if p.dataset == "iris" else datasets.load_wine()).data
    return np.asarray((X - X.mean(axis=0)) / X.std(axis=0))


def cluster_plot(X: np.ndarray, model: GaussianMixtureEM, title: str) -> bytes:
    """Samples coloured by component with 1 and 2 sigma covariance ellipses (PCA view if d > 2)."""
    from matplotlib.patches import Ellipse

    mean = X.mean(axis=0)
    if X.shape[1] > 2:
        _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
        proj = vt[:2].T
    else:
        proj = np.eye(X.shape[1], 2)
    fig = new_figure(6, 5)
    ax = fig.add_subplot(1, 1, 1)
    xy = (X - mean) @ proj
    if xy.shape[1] == 1:
        xy = np.column_stack([xy, np.zeros(len(xy))])
    labels = model.predict(X)
    ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=6, cmap="tab10", alpha=0.6)
    for j in range(model.n_components):
        centre = (model.means_[j] - mean) @ proj
        cov = proj.T @ model.covariances_[j] @ proj
        vals, vecs = np.linalg.eigh(cov)
        angle = float(np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1])))
        for k in (1, 2):
            ax.add_patch(Ellipse(tuple(centre), 2 * k * np.sqrt(vals[-1]),
                                 2 * k * np.sqrt(max(vals[0], 0.0)), angle=angle,
                                 fill=False, color="black", linewidth=1.2 / k))
        ax.plot(*centre, marker="x", color="black")
    ax.set_title(title)
    ax.set_xlabel("x1" if X.shape[1] <= 2 else "PC 1")
    ax.set_ylabel("x2" if X.shape[1] <= 2 else "PC 2")
    return figure_png(fig)


def compare_with_sklearn(
    X: np.ndarray, n_components: int, seed: int, max_iter: int, tol: float, repeats: int
) -> dict[str, object]:
    """Fit ours and scikit-learn's GaussianMixture from one k-means++ start; times are best of
    ``repeats`` (EM only, the shared initialisation is not timed)."""
    from sklearn.mixture import GaussianMixture

    weights, means, covs = kmeans_init(X, n_components, np.random.default_rng(seed))
    precisions = np.linalg.inv(covs)
    ours_times, sk_times = [], []
    ours: GaussianMixtureEM | None = None
    sk: GaussianMixture | None = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours = GaussianMixtureEM(n_components, max_iter=max_iter, tol=tol, weights_init=weights,
                                 means_init=means, covariances_init=covs).fit(X)
        ours_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        # init_params only matters for the parameters not given; all three are given here.
        sk = GaussianMixture(n_components, covariance_type="full", max_iter=max_iter, tol=tol,
                             weights_init=weights, means_init=means,
                             precisions_init=precisions, init_params="random_from_data",
                             random_state=seed).fit(X)
        sk_times.append(time.perf_counter() - t0)
    assert ours is not None and sk is not None
    return {"ours": ours, "sklearn": sk, "ours_seconds": min(ours_times),
            "sklearn_seconds": min(sk_times)}


def train_em(ctx: ToolContext[EMParams]) -> ToolResult:
    """Fit the mixture by our EM and by scikit-learn from the same start; plot the clusters."""
    import warnings

    p = ctx.params
    ctx.report(0.05, f"loading {p.dataset}")
    X = load_data(p)
    ctx.report(0.2, "fitting (ours and scikit-learn, same initialisation)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning at small max_iter
        out = compare_with_sklearn(X, p.n_components, p.seed, p.max_iter, p.tol, p.repeats)
    ours, sk = out["ours"], out["sklearn"]
    assert isinstance(ours, GaussianMixtureEM)
    ctx.report(0.8, "plotting")
    ll_ours, ll_sk = ours.score(X), float(sk.score(X))  # type: ignore[attr-defined]
    t_ours, t_sk = float(out["ours_seconds"]), float(out["sklearn_seconds"])  # type: ignore[arg-type]
    metrics = {
        "log_likelihood": ll_ours,
        "sklearn_log_likelihood": ll_sk,
        "log_likelihood_gap": abs(ll_ours - ll_sk),
        "iterations": float(ours.n_iter_),
        "sklearn_iterations": float(sk.n_iter_),  # type: ignore[attr-defined]
        "seconds": t_ours,
        "sklearn_seconds": t_sk,
        "time_ratio": t_ours / max(t_sk, 1e-9),
    }
    png = cluster_plot(X, ours, f"EM, {p.n_components} Gaussians on {p.dataset} "
                                f"(mean log-lik {ll_ours:.4f})")
    curve_fig = new_figure(5, 3.5)
    ax = curve_fig.add_subplot(1, 1, 1)
    ax.plot(range(1, len(ours.lower_bounds_) + 1), ours.lower_bounds_, marker=".")
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("mean log-likelihood")
    ax.set_title("EM monotonically increases the likelihood")
    ax.grid(alpha=0.3)
    ctx.report(1.0, "done")
    text = (f"EM on {p.dataset} ({X.shape[0]}x{X.shape[1]}, {p.n_components} components): "
            f"mean log-likelihood {ll_ours:.5f} after {ours.n_iter_} iterations in "
            f"{t_ours * 1000:.1f} ms; scikit-learn from the same start: {ll_sk:.5f} after "
            f"{sk.n_iter_} iterations in {t_sk * 1000:.1f} ms "  # type: ignore[attr-defined]
            f"(gap {abs(ll_ours - ll_sk):.2e}, time ratio {metrics['time_ratio']:.2f}).")
    return ToolResult(text=text, metrics=metrics,
                      images=[("clusters.png", png), ("em_curve.png", figure_png(curve_fig))])


EM = register(ToolSpec(
    name="bayes.em",
    course="bayes",
    summary="EM for Gaussian mixtures (own numpy code) checked against scikit-learn.",
    commands=(
        ToolCommand("train", train_em, EMParams,
                    "fit a Gaussian mixture by EM and compare with scikit-learn", heavy=False),
    ),
    examples=(
        "fit a gaussian mixture with EM",
        "expectation maximization for a mixture of gaussians",
        "cluster points with a gmm",
        "show me gaussian mixture clusters with ellipses",
        "cluster the iris data with expectation maximisation",
        "run EM on some blobs",
    ),
    headline_metric="log_likelihood",
))

SPECS: list[ToolSpec] = [EM]
