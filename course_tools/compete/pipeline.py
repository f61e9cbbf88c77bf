"""The competition pipeline on a prepared :class:`Problem`: EDA, folds and leakage checks,
out-of-fold mean encodings, a plain LightGBM for reference, an optuna search, LightGBM, XGBoost
and CatBoost with early stopping on every fold, ensembles of their OOF predictions, and a
leaderboard of everything on the validation folds and on the test.

With ordered (time) folds the test is predicted by a refit on all training rows, with the
number of rounds the folds stopped at; with K-fold schemes, by the average of the fold models.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from course_tools.base import ToolContext, ToolInputError, ToolResult
from course_tools.compete.eda import eda_png, eda_summary
from course_tools.compete.encoding import TargetEncoder, encoding_scheme
from course_tools.compete.ensemble import Blend, Stack, mean_of, out_of_fold
from course_tools.compete.models import (
    KINDS,
    FitJob,
    FitResult,
    Kind,
    fit_model,
    higher_is_better,
    metric_name,
    score,
    tune_lightgbm,
)
from course_tools.compete.problem import Problem
from course_tools.compete.report import leaderboard_png, leaderboard_text
from course_tools.compete.validation import (
    Fold,
    adversarial_validation,
    leakage_checks,
    make_folds,
    single_feature_check,
)

TUNE_ROWS = 30_000
NAMES = {"lightgbm": "LightGBM", "xgboost": "XGBoost", "catboost": "CatBoost"}


@dataclass(frozen=True)
class RunSettings:
    """The knobs of one pipeline run (validated tool parameters, plus the thread count)."""

    n_folds: int = 5
    trials: int = 6
    max_train_rows: int = 60_000
    smoothing: float = 20.0
    noise: float = 0.01
    seed: int = 0
    threads: int = 1


@dataclass
class Matrices:
    """Model inputs: the fit rows' matrix and targets, and each set of rows to predict."""

    fit: np.ndarray
    y_fit: np.ndarray
    apply: list[np.ndarray]
    names: list[str]


@dataclass
class Entry:
    """One leaderboard row, with its validation (OOF) and test predictions."""

    key: str  # in metric names: test_auc_<key>
    name: str
    val: float
    test: float
    val_pred: np.ndarray = field(repr=False)
    test_pred: np.ndarray = field(repr=False)
    seconds: float = 0.0
    note: str = ""


def fold_matrices(problem: Problem, fit_rows: np.ndarray, apply_rows: list[np.ndarray],
                  settings: RunSettings) -> Matrices:
    """Features plus mean encodings fitted on ``fit_rows`` only: out of fold (or expanding in
    time) for the fit rows themselves, full statistics for every other row."""
    features = problem.features.to_numpy(dtype=np.float32)
    scheme = encoding_scheme(problem)
    encoder = TargetEncoder(problem.encode_cols, scheme=scheme, smoothing=settings.smoothing,
                            noise=settings.noise, random_state=settings.seed)
    columns = problem.table[problem.encode_cols]
    asked, known = problem.encoding_times(fit_rows)
    groups = problem.groups[fit_rows] if problem.groups is not None else None
    encoded = encoder.fit_transform(columns.iloc[fit_rows],
                                    problem.encoding_targets(fit_rows), order=asked,
                                    known_at=known, groups=groups)
    names = list(map(str, problem.features.columns)) + encoder.feature_names_
    fit = np.hstack([features[fit_rows], encoded]).astype(np.float32)
    apply = [np.hstack([features[rows], encoder.transform(columns.iloc[rows])]).astype(
        np.float32) for rows in apply_rows]
    return Matrices(fit, problem.y[fit_rows], apply, names)


def baseline_matrices(problem: Problem, fit_rows: np.ndarray,
                      apply_rows: list[np.ndarray]) -> Matrices:
    """The raw columns, as a plain model takes them."""
    raw = problem.baseline.to_numpy(dtype=np.float32)
    return Matrices(raw[fit_rows], problem.y[fit_rows], [raw[rows] for rows in apply_rows],
                    list(map(str, problem.baseline.columns)))


def cross_fit(ctx: ToolContext, problem: Problem, kind: Kind, params: dict[str, Any],
              folds: list[Fold], mats: list[Matrices], full: Matrices,
              settings: RunSettings) -> tuple[np.ndarray, np.ndarray, float, list[int]]:
    """Fit ``kind`` on every fold with early stopping (through ``ctx.fan_out``) and predict the
    test: OOF predictions, test predictions, summed fit seconds, rounds per fold.

    ``mats[k].apply`` holds fold k's validation rows, then (K-fold schemes) the test rows;
    ``full`` is fitted on all training rows and applies to the test."""
    refit = problem.scheme == "time"
    jobs = [FitJob(kind, problem.task, problem.n_classes, m.fit, m.y_fit, m.apply[0],
                   problem.y[f.val], predict=[] if refit else [m.apply[1]], params=params,
                   threads=settings.threads, seed=settings.seed)
            for f, m in zip(folds, mats, strict=True)]
    results: list[FitResult] = ctx.fan_out(fit_model, jobs)
    oof = np.concatenate([r.val for r in results if r.val is not None])
    rounds = [r.rounds for r in results]
    seconds = sum(r.seconds for r in results)
    if refit:
        # the refit sees more rows than any fold did: a few more rounds than they stopped at
        job = FitJob(kind, problem.task, problem.n_classes, full.fit, full.y_fit,
                     predict=[full.apply[0]], params=params,
                     rounds=int(np.ceil(np.mean(rounds) * 1.1)), threads=settings.threads,
                     seed=settings.seed)
        final: FitResult = ctx.fan_out(fit_model, [job])[0]
        test = final.predictions[0]
        seconds += final.seconds
    else:
        test = mean_of([r.predictions[0] for r in results])
    return oof, test, seconds, rounds


def run_pipeline(ctx: ToolContext, problem: Problem, settings: RunSettings) -> ToolResult:
    """Everything, from the EDA to the leaderboard, as the job's result."""
    start = time.perf_counter()
    task = problem.task
    rng = np.random.default_rng(settings.seed)
    train_rows = np.flatnonzero(~problem.is_test)
    test_rows = np.flatnonzero(problem.is_test)
    notes = list(problem.notes)
    if len(train_rows) > settings.max_train_rows:
        notes.append(f"trained on a random {settings.max_train_rows:,} of the "
                     f"{len(train_rows):,} training rows (max_train_rows); the test keeps all "
                     f"{len(test_rows):,}")
        train_rows = np.sort(rng.choice(train_rows, settings.max_train_rows, replace=False))
    folds = make_folds(problem, train_rows, settings.n_folds, settings.seed)
    if len(folds) < 2 or len(test_rows) == 0:
        raise ToolInputError(f"{problem.name} is too small to split into a test and "
                             f"{settings.n_folds} validation folds; try fewer folds")
    val_rows = np.concatenate([f.val for f in folds])
    fold_of = np.concatenate([np.full(len(f.val), k) for k, f in enumerate(folds)])
    y_val, y_test = problem.y[val_rows], problem.y[test_rows]
    ctx.report(0.03, "exploring the data")
    images = [("eda.png", eda_png(problem, folds))]

    ctx.report(0.06, "mean encodings and leakage checks")
    refit = problem.scheme == "time"
    applies = [[f.val] if refit else [f.val, test_rows] for f in folds]
    mats = [fold_matrices(problem, f.fit, a, settings) for f, a in zip(folds, applies,
                                                                         strict=True)]
    full = fold_matrices(problem, train_rows, [test_rows], settings)
    base_mats = [baseline_matrices(problem, f.fit, a) for f, a in zip(folds, applies,
                                                                     strict=True)]
    base_full = baseline_matrices(problem, train_rows, [test_rows])
    checks = leakage_checks(problem, train_rows, test_rows, folds, settings.seed)
    checks.append(single_feature_check(pd.DataFrame(full.fit, columns=full.names),
                                       full.y_fit, task))
    # on the features as they are, not on the encodings (OOF and noisy in training only)
    adversarial, drifting = adversarial_validation(
        problem.features.iloc[train_rows], problem.features.iloc[test_rows], settings.seed,
        settings.threads)

    entries: list[Entry] = []

    def add(key: str, name: str, oof: np.ndarray, test: np.ndarray, seconds: float = 0.0,
            note: str = "") -> Entry:
        entry = Entry(key, name, score(task, y_val, oof), score(task, y_test, test), oof, test,
                      seconds, note)
        entries.append(entry)
        return entry

    ctx.report(0.12, "plain LightGBM on the raw columns")
    oof, test, seconds, rounds = cross_fit(ctx, problem, "lightgbm", {}, folds, base_mats,
                                           base_full, settings)
    baseline = add("plain_lightgbm", "plain LightGBM (raw columns)", oof, test, seconds,
                   f"rounds {_rounds(rounds)}")

    search = None
    if settings.trials:
        ctx.report(0.2, f"optuna: {settings.trials} LightGBM trials")
        k = len(folds) - 1 if refit else 0
        # trials read at most TUNE_ROWS of the fold's rows: a bounded, quick search
        keep = np.sort(rng.permutation(len(mats[k].fit))[:TUNE_ROWS])
        job = FitJob("lightgbm", task, problem.n_classes, mats[k].fit[keep],
                     mats[k].y_fit[keep], mats[k].apply[0], problem.y[folds[k].val],
                     threads=settings.threads, seed=settings.seed)
        search = tune_lightgbm(job, settings.trials, ctx.fan_out, seed=settings.seed,
                               on_trial=lambda n: ctx.report(
                                   0.2 + 0.25 * n / settings.trials,
                                   f"optuna trial {n}/{settings.trials}"))

    base_models: list[Entry] = []
    for i, kind in enumerate(KINDS):
        ctx.report(0.45 + 0.15 * i, f"{NAMES[kind]} on {len(folds)} folds")
        params = search.params if (kind == "lightgbm" and search is not None) else {}
        oof, test, seconds, rounds = cross_fit(ctx, problem, kind, params, folds, mats, full,
                                               settings)
        tuned = " (optuna)" if params else ""
        base_models.append(add(kind, f"{NAMES[kind]}{tuned} + features", oof, test, seconds,
                               f"rounds {_rounds(rounds)}"))

    ctx.report(0.92, "ensembles")
    val_preds = [e.val_pred for e in base_models]
    test_preds = [e.test_pred for e in base_models]
    ensembles = [add("mean", "mean of the three", mean_of(val_preds), mean_of(test_preds))]
    blend = Blend(task).fit(val_preds, y_val)
    weights = ", ".join(f"{NAMES[k]} {w:.2f}" for k, w in zip(KINDS, blend.weights_,
                                                                strict=True))
    ensembles.append(add("blend", "blend, weights fitted on OOF",
                         out_of_fold(Blend, task, val_preds, y_val, fold_of),
                         blend.predict(test_preds), note=weights))
    stack = Stack(task).fit(val_preds, y_val)
    meta = "logistic" if task != "regression" else "ridge"
    ensembles.append(add("stack", f"stack ({meta} meta-model on OOF)",
                         out_of_fold(Stack, task, val_preds, y_val, fold_of),
                         stack.predict(test_preds)))
    sign = 1.0 if higher_is_better(task) else -1.0
    best = max(ensembles, key=lambda e: sign * e.val)
    ctx.report(0.97, "leaderboard")

    metric = metric_name(task)
    gain = sign * (best.test - baseline.test)
    seconds_total = time.perf_counter() - start
    metrics: dict[str, float] = {
        f"best_{metric}": best.test, f"lightgbm_{metric}": baseline.test, "best_score":
        best.test, "gain_vs_lightgbm": gain, f"best_val_{metric}": best.val,
        "adversarial_auc": adversarial, "train_rows": float(len(train_rows)),
        "test_rows": float(len(test_rows)), "folds": float(len(folds)),
        "trials": float(settings.trials), "seconds": seconds_total,
    }
    for entry in entries:
        metrics[f"val_{metric}_{entry.key}"] = entry.val
        metrics[f"test_{metric}_{entry.key}"] = entry.test
    if search is not None:
        metrics[f"optuna_best_val_{metric}"] = search.best

    images.append(("leaderboard.png", leaderboard_png(entries, best.name, baseline.name,
                                                      metric.upper(), problem.name)))
    artifacts = _write_artifacts(ctx, problem, entries, best, test_rows, metric)
    text = _report_text(problem, settings, notes, folds, checks, adversarial, drifting,
                        search, entries, best, baseline, metric, weights, seconds_total)
    return ToolResult(text=text, metrics=metrics, images=images, artifacts=artifacts)


def _rounds(rounds: list[int]) -> str:
    return "/".join(str(r) for r in rounds)


def _write_artifacts(ctx: ToolContext, problem: Problem, entries: list[Entry], best: Entry,
                     test_rows: np.ndarray, metric: str) -> dict[str, Any]:
    board = ctx.work_dir / "leaderboard.json"
    board.write_text(json.dumps([{"model": e.name, f"val_{metric}": e.val,
                                  f"test_{metric}": e.test, "seconds": e.seconds,
                                  "note": e.note} for e in entries], indent=2))
    predictions = ctx.work_dir / "test_predictions.csv"
    pred = best.test_pred if best.test_pred.ndim == 2 else best.test_pred[:, None]
    columns = ([f"p_{c}" for c in problem.classes] if problem.task == "multiclass" else
               ["p_" + problem.classes[-1]] if problem.task == "binary" else ["prediction"])
    with predictions.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "target", *columns])
        for row, target, values in zip(test_rows, problem.y[test_rows], pred, strict=True):
            writer.writerow([int(row), f"{target:g}", *(f"{v:.5f}" for v in values)])
    return {"leaderboard": board, "test_predictions": predictions}


def _report_text(problem: Problem, settings: RunSettings, notes: list[str], folds: list[Fold],
                 checks: list[Any], adversarial: float, drifting: list[str], search: Any,
                 entries: list[Entry], best: Entry, baseline: Entry, metric: str,
                 weights: str, seconds: float) -> str:
    upper = metric.upper()
    better = "higher" if higher_is_better(problem.task) else "lower"
    lines = [f"Competition pipeline on {problem.name}: predict {problem.target} "
             f"({problem.task}, {upper}, {better} is better)", "", "Data:"]
    lines += [f"• {line}" for line in eda_summary(problem)]
    lines += [f"• {note}" for note in notes]
    lines += ["", f"Validation: {problem.scheme} — {problem.scheme_reason}. "
              f"{len(folds)} folds, {sum(len(f.val) for f in folds):,} validation rows."]
    lines += ["", "Leakage checks:"] + [f"• {check.line()}" for check in checks]
    shift = ("train and test look alike" if adversarial < 0.6 else
             "train and test differ" if adversarial < 0.8 else "train and test differ a lot")
    lines.append(f"• adversarial validation AUC {adversarial:.3f} ({shift}; it leans on "
                 f"{', '.join(drifting)})")
    scheme = ("expanding means in time order" if problem.scheme == "time"
              else "5-fold out-of-fold means" + (" (folds by group)" if problem.groups
                                                 is not None else ""))
    encoded = ", ".join(map(str, problem.encode_cols)) or "no columns"
    lines += ["", f"Mean encodings of {encoded}: {scheme}, smoothed toward the global mean "
              f"(weight {settings.smoothing:g}), noise {settings.noise:g}·std on training rows."]
    if search is not None:
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in search.params.items())
        lines.append(f"Optuna ({len(search.scores)} trials on one fold): best {upper} "
                     f"{search.best:.4f} with {shown}.")
    lines += ["", "Leaderboard (validation = out of fold):", leaderboard_text(entries, upper)]
    gain = (best.test - baseline.test) * (1 if higher_is_better(problem.task) else -1)
    verdict = f"better by {gain:.4f}" if gain > 0 else f"not better: {gain:+.4f}"
    lines += ["", f"Best ensemble (chosen on validation): {best.name} — test {upper} "
              f"{best.test:.4f} against {baseline.test:.4f} for plain LightGBM "
              f"({verdict}). Blend weights: {weights}.",
              f"Ran in {seconds:.0f} s."]
    return "\n".join(lines)
