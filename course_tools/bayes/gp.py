"""Gaussian-process regression written in numpy (RBF kernel + noise, hyperparameters by
maximising the log marginal likelihood), checked against scikit-learn's
``GaussianProcessRegressor`` with the same kernel, and plotted with its 95% band.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import Field

from course_tools import register
from course_tools.base import ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec
from course_tools.plots import figure_png, new_figure

# log-space bounds of (length scale, amplitude, noise std)
BOUNDS = [(np.log(1e-3), np.log(1e3))] * 2 + [(np.log(1e-4), np.log(1e2))]


class GaussianProcessRegression:
    """GP regression with an ``amplitude^2 * RBF(length_scale) + noise^2`` kernel.

    ``fit`` maximises the log marginal likelihood over the log hyperparameters (L-BFGS with
    analytic gradients, several restarts); ``predict`` returns the posterior mean and std.
    """

    def __init__(self, restarts: int = 5, random_state: int = 0) -> None:
        self.restarts = restarts
        self.random_state = random_state

    @staticmethod
    def _kernel(a: np.ndarray, b: np.ndarray, length: float, amp: float) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(amp**2 * np.exp(-0.5 * d2 / length**2))

    def _nlml(self, log_params: np.ndarray, X: np.ndarray, y: np.ndarray
              ) -> tuple[float, np.ndarray]:
        """Negative log marginal likelihood and its gradient in log-parameter space."""
        length, amp, noise = np.exp(log_params)
        n = len(y)
        d2 = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
        k_rbf = amp**2 * np.exp(-0.5 * d2 / length**2)
        K = k_rbf + (noise**2 + 1e-10) * np.eye(n)
        try:
            L = np.linalg.cholesky(K)
        except np.linalg.LinAlgError:
            return 1e25, np.zeros(3)
        alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
        nlml = 0.5 * y @ alpha + np.log(np.diag(L)).sum() + 0.5 * n * np.log(2 * np.pi)
        K_inv = np.linalg.solve(L.T, np.linalg.solve(L, np.eye(n)))
        inner = np.outer(alpha, alpha) - K_inv
        grads = [k_rbf * d2 / length**2, 2 * k_rbf, 2 * noise**2 * np.eye(n)]
        grad = np.array([-0.5 * np.sum(inner * g) for g in grads])
        return float(nlml), grad

    def fit(self, X: np.ndarray, y: np.ndarray) -> GaussianProcessRegression:
        from scipy.optimize import minimize

        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        self.y_mean_ = float(y.mean())
        yc = y - self.y_mean_
        rng = np.random.default_rng(self.random_state)
        best = None
        spread_x, spread_y = float(np.std(X)) or 1.0, float(np.std(yc)) or 1.0
        starts = [np.log(np.array([spread_x, spread_y, 0.1 * spread_y]))]
        starts += [rng.uniform(np.log(1e-2), np.log(1e2), size=3) for _ in range(self.restarts)]
        for x0 in starts:
            res = minimize(self._nlml, x0, args=(X, yc), jac=True, method="L-BFGS-B",
                           bounds=BOUNDS)
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None
        self.length_scale_, self.amplitude_, self.noise_ = (float(v) for v in np.exp(best.x))
        self.log_marginal_likelihood_ = -float(best.fun)
        self.X_train_ = X
        K = (self._kernel(X, X, self.length_scale_, self.amplitude_)
             + (self.noise_**2 + 1e-10) * np.eye(len(X)))
        self.L_ = np.linalg.cholesky(K)
        self.alpha_ = np.linalg.solve(self.L_.T, np.linalg.solve(self.L_, yc))
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std of the latent function (add ``noise_`` for observations)."""
        X = np.asarray(X, dtype=float)
        k_star = self._kernel(X, self.X_train_, self.length_scale_, self.amplitude_)
        mean = k_star @ self.alpha_ + self.y_mean_
        v = np.linalg.solve(self.L_, k_star.T)
        var = np.maximum(self.amplitude_**2 - (v * v).sum(axis=0), 0.0)
        return mean, np.sqrt(var)


class GPParams(ToolParams):
    """Parameters of the GP regression tool."""

    dataset: Literal["sine", "diabetes_bmi"] = Field(default="sine",
                                                     description="1-D regression data")
    n_train: int = Field(default=40, ge=3, le=2_000, description="training points")
    noise: float = Field(default=0.2, ge=0.0, le=10.0, description="noise std (sine only)")
    restarts: int = Field(default=5, ge=0, le=50, description="optimiser restarts")


def load_data(p: GPParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) as column vectors / vectors."""
    rng = np.random.default_rng(p.seed)
    if p.dataset == "sine":
        def f(x: np.ndarray) -> np.ndarray:
            return np.asarray(np.sin(x) + 0.3 * np.cos(3 * x))
        x = rng.uniform(-4, 4, size=p.n_train)
        x_test = rng.uniform(-4, 4, size=500)
        return (x[:, None], f(x) + p.noise * rng.standard_normal(len(x)), x_test[:, None],
                f(x_test) + p.noise * rng.standard_normal(len(x_test)))
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    bmi = data.data[:, 2] / data.data[:, 2].std()
    target = (data.target - data.target.mean()) / data.target.std()
    idx = rng.permutation(len(bmi))
    tr, te = idx[: min(p.n_train, len(bmi) - 50)], idx[-50:]
    return bmi[tr, None], target[tr], bmi[te, None], target[te]


def train_gp(ctx: ToolContext[GPParams]) -> ToolResult:
    """Fit our GP and scikit-learn's, report held-out RMSE and the log marginal likelihood."""
    import warnings

    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    p = ctx.params
    ctx.report(0.05, f"loading {p.dataset}")
    x, y, x_test, y_test = load_data(p)
    ctx.report(0.2, "fitting our GP")
    t0 = time.perf_counter()
    gp = GaussianProcessRegression(restarts=p.restarts, random_state=p.seed).fit(x, y)
    seconds = time.perf_counter() - t0
    ctx.report(0.6, "fitting scikit-learn's GP")
    kernel = ConstantKernel(1.0, (1e-6, 1e6)) * RBF(1.0, (1e-3, 1e3)) + WhiteKernel(
        0.1, (1e-8, 1e4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        sk = GaussianProcessRegressor(kernel, normalize_y=False, n_restarts_optimizer=p.restarts,
                                      random_state=p.seed).fit(x, y - y.mean())
        sk_seconds = time.perf_counter() - t0
    mean_test, _ = gp.predict(x_test)
    rmse = float(np.sqrt(np.mean((mean_test - y_test) ** 2)))
    sk_rmse = float(np.sqrt(np.mean((sk.predict(x_test) + y.mean() - y_test) ** 2)))
    grid = np.linspace(x.min() - 0.5, x.max() + 0.5, 300)[:, None]
    mean, std = gp.predict(grid)
    band = 1.96 * np.sqrt(std**2 + gp.noise_**2)
    fig = new_figure(7, 4)
    ax = fig.add_subplot(1, 1, 1)
    ax.fill_between(grid[:, 0], mean - band, mean + band, alpha=0.2,
                    label="95% predictive band")
    ax.fill_between(grid[:, 0], mean - 1.96 * std, mean + 1.96 * std, alpha=0.3,
                    label="95% band of f")
    ax.plot(grid[:, 0], mean, label="posterior mean")
    ax.scatter(x[:, 0], y, s=12, color="black", label="training data", zorder=3)
    ax.set_title(f"GP regression on {p.dataset}: length {gp.length_scale_:.2f}, "
                 f"noise {gp.noise_:.2f}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ctx.report(1.0, "done")
    sk_lml = float(sk.log_marginal_likelihood_value_)
    metrics = {"log_marginal_likelihood": gp.log_marginal_likelihood_,
               "sklearn_log_marginal_likelihood": sk_lml, "test_rmse": rmse,
               "sklearn_test_rmse": sk_rmse, "length_scale": gp.length_scale_,
               "amplitude": gp.amplitude_, "noise": gp.noise_, "seconds": seconds,
               "sklearn_seconds": sk_seconds}
    text = (f"GP regression on {p.dataset} ({len(y)} points): length scale "
            f"{gp.length_scale_:.3f}, amplitude {gp.amplitude_:.3f}, noise {gp.noise_:.3f}; "
            f"log marginal likelihood {gp.log_marginal_likelihood_:.3f} (scikit-learn, same "
            f"kernel: {sk_lml:.3f}); held-out RMSE {rmse:.3f} (scikit-learn {sk_rmse:.3f}).")
    return ToolResult(text=text, metrics=metrics, images=[("gp.png", figure_png(fig))])


GP = register(ToolSpec(
    name="bayes.gp",
    course="bayes",
    summary="Gaussian-process regression (own numpy code, RBF + noise) with a 95% band plot.",
    commands=(
        ToolCommand("train", train_gp, GPParams, "fit a Gaussian process regressor",
                    heavy=False),
    ),
    examples=(
        "fit a gaussian process regression",
        "gaussian process regression demo",
        "fit a GP to noisy data and show the confidence band",
        "regress with a gaussian process kernel",
        "show gp posterior uncertainty",
        "gp regression with uncertainty",
    ),
    headline_metric="log_marginal_likelihood",
))

SPECS: list[ToolSpec] = [GP]
