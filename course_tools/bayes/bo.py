"""Bayesian optimisation of a real model's hyperparameters against random search at the same
evaluation budget.

The objective is the 3-fold cross-validated error of an SVC (log C, log gamma) or a gradient
boosting classifier (learning rate, depth, trees, subsample) on a dataset that ships with
scikit-learn (handwritten digits or breast cancer). BO is scikit-optimize's ``gp_minimize``
(GP surrogate, expected improvement); random search samples the same space with the same
priors (log-uniform where BO's space is). ``benchmark`` repeats both over many seeds and
compares the medians:

    python -m course_tools.bayes.bo --seeds 10 --budget 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field

from course_tools import register
from course_tools.base import ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec
from course_tools.plots import figure_png, new_figure

Model = Literal["svc", "gbm"]
Dataset = Literal["digits", "breast_cancer"]


class BOParams(ToolParams):
    """Parameters of one BO-versus-random-search run."""

    model: Model = Field(default="svc", description="model whose hyperparameters are tuned")
    dataset: Dataset = Field(default="digits", description="scikit-learn dataset")
    budget: int = Field(default=20, ge=3, le=500, description="objective evaluations per method")
    n_initial: int = Field(default=5, ge=1, le=100, description="random points before BO's model")
    subsample: int = Field(default=0, ge=0, le=100_000, description="use this many rows (0 = all)")


class BOBenchParams(BOParams):
    """Parameters of the multi-seed benchmark."""

    seeds: int = Field(default=10, ge=1, le=50, description="seeds (seed, seed+1, ...)")


def search_space(model: Model) -> list[Any]:
    """The skopt dimensions of a model's hyperparameters."""
    from skopt.space import Integer, Real

    if model == "svc":
        return [Real(1e-3, 1e3, prior="log-uniform", name="C"),
                Real(1e-6, 1e0, prior="log-uniform", name="gamma")]
    return [Real(1e-3, 1.0, prior="log-uniform", name="learning_rate"),
            Integer(1, 6, name="max_depth"),
            Integer(10, 200, name="n_estimators"),
            Real(0.3, 1.0, name="subsample")]


def make_objective(
    model: Model, dataset: Dataset, subsample: int, seed: int
) -> Callable[[list[Any]], float]:
    """3-fold cross-validated error rate of the model at a hyperparameter point."""
    from sklearn import datasets
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    data = datasets.load_digits() if dataset == "digits" else datasets.load_breast_cancer()
    X, y = data.data, data.target
    if subsample and subsample < len(X):
        idx = np.random.default_rng(12345).permutation(len(X))[:subsample]
        X, y = X[idx], y[idx]
    folds = StratifiedKFold(3, shuffle=True, random_state=0)  # same folds for every method

    def objective(point: list[Any]) -> float:
        if model == "svc":
            estimator: Any = make_pipeline(StandardScaler(), SVC(C=point[0], gamma=point[1]))
        else:
            estimator = GradientBoostingClassifier(
                learning_rate=point[0], max_depth=int(point[1]), n_estimators=int(point[2]),
                subsample=point[3], random_state=seed)
        return float(1.0 - cross_val_score(estimator, X, y, cv=folds).mean())

    return objective


def run_pair(
    p: BOParams, seed: int, progress: Callable[[float, str], None] | None = None
) -> dict[str, Any]:
    """Bayesian optimisation and random search at the same budget, on one seed."""
    from skopt import gp_minimize
    from skopt.space import Space

    objective = make_objective(p.model, p.dataset, p.subsample, seed)
    space = search_space(p.model)
    calls = {"n": 0}

    def counted(point: list[Any]) -> float:
        calls["n"] += 1
        if progress is not None:
            progress(calls["n"] / (2 * p.budget), f"evaluation {calls['n']}/{2 * p.budget}")
        return objective(point)

    t0 = time.perf_counter()
    bo = gp_minimize(counted, space, n_calls=p.budget, n_initial_points=min(p.n_initial,
                     p.budget), acq_func="EI", random_state=seed)
    t_bo = time.perf_counter() - t0
    t0 = time.perf_counter()
    # Random search over the same space and priors (skopt's dummy_minimize breaks on
    # scikit-learn >= 1.6, so sample the points directly).
    points = Space(space).rvs(n_samples=p.budget, random_state=seed)
    rs_vals = np.array([counted(point) for point in points])
    rs_best = int(rs_vals.argmin())
    t_rs = time.perf_counter() - t0
    return {
        "seed": seed,
        "bo_best_error": float(bo.fun), "random_best_error": float(rs_vals[rs_best]),
        "bo_best_point": [float(v) for v in bo.x],
        "random_best_point": [float(v) for v in points[rs_best]],
        "bo_curve": np.minimum.accumulate(bo.func_vals).tolist(),
        "random_curve": np.minimum.accumulate(rs_vals).tolist(),
        "bo_seconds": t_bo, "random_seconds": t_rs,
    }


def convergence_png(runs: list[dict[str, Any]], title: str) -> bytes:
    """Best error so far against evaluations (median and range over runs)."""
    fig = new_figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    for key, label in (("bo_curve", "Bayesian optimisation (GP + EI)"),
                       ("random_curve", "random search")):
        curves = np.array([r[key] for r in runs])
        xs = np.arange(1, curves.shape[1] + 1)
        line = ax.plot(xs, np.median(curves, axis=0), label=label)[0]
        if len(runs) > 1:
            ax.fill_between(xs, curves.min(axis=0), curves.max(axis=0), alpha=0.15,
                            color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("objective evaluations")
    ax.set_ylabel("best 3-fold CV error so far")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return figure_png(fig)


def _describe(p: BOParams, point: list[float]) -> str:
    names = [d.name for d in search_space(p.model)]
    return ", ".join(f"{n}={v:.3g}" for n, v in zip(names, point, strict=True))


def train_bo(ctx: ToolContext[BOParams]) -> ToolResult:
    """One seed: tune the model by BO and by random search; plot both convergence curves."""
    p = ctx.params
    run = run_pair(p, p.seed, ctx.report)
    ctx.report(1.0, "done")
    metrics = {"best_error": run["bo_best_error"], "random_best_error": run["random_best_error"],
               "best_accuracy": 1.0 - run["bo_best_error"],
               "random_best_accuracy": 1.0 - run["random_best_error"],
               "bo_seconds": run["bo_seconds"], "random_seconds": run["random_seconds"]}
    text = (f"Tuned {p.model} on {p.dataset} with {p.budget} evaluations each. Bayesian "
            f"optimisation: CV accuracy {metrics['best_accuracy']:.4f} at "
            f"{_describe(p, run['bo_best_point'])}; random search: "
            f"{metrics['random_best_accuracy']:.4f} at "
            f"{_describe(p, run['random_best_point'])}.")
    png = convergence_png([run], f"{p.model} on {p.dataset}, seed {p.seed}")
    return ToolResult(text=text, metrics=metrics, images=[("convergence.png", png)])


def benchmark(p: BOBenchParams, progress: Callable[[float, str], None] | None = None
              ) -> dict[str, Any]:
    """BO against random search over ``p.seeds`` seeds; medians of the best errors."""
    runs = []
    for i in range(p.seeds):
        seed = p.seed + i
        inner = (None if progress is None else
                 (lambda f, d, i=i: progress((i + f) / p.seeds, f"seed {i + 1}: {d}")))
        runs.append(run_pair(p, seed, inner))
    bo = [r["bo_best_error"] for r in runs]
    rs = [r["random_best_error"] for r in runs]
    return {"runs": runs, "bo_median_error": statistics.median(bo),
            "random_median_error": statistics.median(rs),
            "bo_wins": sum(b < r for b, r in zip(bo, rs, strict=True)),
            "ties": sum(b == r for b, r in zip(bo, rs, strict=True))}


def run_benchmark(ctx: ToolContext[BOBenchParams]) -> ToolResult:
    """The multi-seed comparison as a tool command."""
    p = ctx.params
    out = benchmark(p, ctx.report)
    ctx.report(1.0, "done")
    metrics = {"best_error": out["bo_median_error"],
               "random_best_error": out["random_median_error"],
               "bo_wins": float(out["bo_wins"]), "ties": float(out["ties"])}
    text = (f"{p.model} on {p.dataset}, {p.budget} evaluations, {p.seeds} seeds: median best CV "
            f"error {out['bo_median_error']:.4f} with Bayesian optimisation vs "
            f"{out['random_median_error']:.4f} with random search; BO better on "
            f"{out['bo_wins']}/{p.seeds} seeds ({out['ties']} ties).")
    png = convergence_png(out["runs"], f"{p.model} on {p.dataset}: median over {p.seeds} seeds")
    return ToolResult(text=text, metrics=metrics, images=[("convergence.png", png)])


BO = register(ToolSpec(
    name="bayes.bo",
    course="bayes",
    summary="Bayesian optimisation (GP + EI) of SVC/GBM hyperparameters vs random search.",
    commands=(
        ToolCommand("train", train_bo, BOParams,
                    "tune a model by Bayesian optimisation and by random search (one seed)"),
        ToolCommand("benchmark", run_benchmark, BOBenchParams,
                    "compare BO and random search over many seeds (median best error)"),
    ),
    examples=(
        "tune an svm with bayesian optimisation",
        "optimise the hyperparameters of a model with bayesian optimization",
        "bayesian hyperparameter tuning vs random search",
        "use expected improvement to tune C and gamma",
        "compare bayesian optimization and random search",
        "hyperparameter search with gaussian processes",
    ),
    headline_metric="best_error",
))

SPECS: list[ToolSpec] = [BO]


def main(argv: list[str] | None = None) -> None:
    """Command line: the benchmark, printed as JSON."""
    parser = argparse.ArgumentParser(description="BO vs random search benchmark")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--model", default="svc")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    params = BOBenchParams.model_validate({"seeds": args.seeds, "budget": args.budget,
                                           "model": args.model, "dataset": args.dataset})
    out = benchmark(params, lambda f, d: print(f"{f:5.1%} {d}", flush=True))
    summary = {k: v for k, v in out.items() if k != "runs"}
    summary["per_seed"] = [(r["seed"], r["bo_best_error"], r["random_best_error"])
                           for r in out["runs"]]
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
