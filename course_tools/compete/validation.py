"""Validation folds for a problem's scheme, and the leakage checks run before any model.

Folds index rows of the problem; every fold's rows come from the training split only. The
checks say in words what they verified (ordered folds, disjoint groups, out-of-fold encodings),
and adversarial validation measures how well a model tells the training rows from the test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from course_tools.compete.encoding import TargetEncoder, encoding_scheme
from course_tools.compete.problem import Problem, order_as_datetime


@dataclass(frozen=True)
class Fold:
    """Rows a fold's models are fitted on, and the rows they are validated on."""

    fit: np.ndarray
    val: np.ndarray


@dataclass(frozen=True)
class Check:
    """One leakage check: what was verified, whether it held, and the numbers behind it."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'WARN'} {self.name}: {self.detail}"


def make_folds(problem: Problem, train_rows: np.ndarray, n_folds: int, seed: int) -> list[Fold]:
    """The scheme's folds over ``train_rows``: ordered (time), grouped or (stratified) K-fold."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    if problem.scheme == "time":
        assert problem.blocks is not None and problem.order is not None
        folds = []
        for block in sorted(set(problem.blocks[train_rows].tolist()) - {-1}):
            val = train_rows[problem.blocks[train_rows] == block]
            fit = train_rows[problem.order[train_rows] < problem.order[val].min()]
            if len(fit) and len(val):
                folds.append(Fold(fit, val))
        return folds
    if problem.scheme == "group":
        assert problem.groups is not None
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(train_rows, groups=problem.groups[train_rows])
    elif problem.scheme == "stratified":
        splits = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(
            train_rows, problem.y[train_rows])
    else:
        splits = KFold(n_folds, shuffle=True, random_state=seed).split(train_rows)
    return [Fold(train_rows[a], train_rows[b]) for a, b in splits]


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of a 0/1 target (0.5 when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return 0.5
    return float(roc_auc_score(y, score))


def leakage_checks(problem: Problem, train_rows: np.ndarray, test_rows: np.ndarray,
                   folds: list[Fold], seed: int) -> list[Check]:
    """The scheme's own checks, plus an out-of-fold encoding self-test on the training rows."""
    checks: list[Check] = []
    if problem.scheme == "time":
        order = problem.order
        assert order is not None
        last_train, first_test = order[train_rows].max(), order[test_rows].min()
        checks.append(Check("no test time before the last train time", bool(
            first_test >= last_train), f"train ends {_when(last_train, problem)}, test starts "
            f"{_when(first_test, problem)}"))
        ordered = all(order[f.fit].max() < order[f.val].min() for f in folds)
        checks.append(Check("every fold trains on the past only", ordered,
                            f"{len(folds)} ordered folds, each validated on a later block"))
        if problem.known_at is not None and problem.asked_at is not None:
            known, asked = problem.known_at, problem.asked_at
            in_time = all(known[f.fit].max() < asked[f.val].min() for f in folds)
            last_known, first_asked = known[train_rows].max(), asked[test_rows].min()
            checks.append(Check(
                "every training outcome is known before the first prediction it serves",
                bool(in_time and last_known < first_asked),
                f"in every fold, and for the test: last training outcome known "
                f"{_when(last_known, problem)}, first test prediction "
                f"{_when(first_asked, problem)}"))
    if problem.scheme == "group":
        groups = problem.groups
        assert groups is not None
        shared = set(groups[train_rows]) & set(groups[test_rows])
        checks.append(Check(f"no {problem.group_name} in both train and test", not shared,
                            f"{len(shared)} shared of {len(set(groups))} groups"))
        crossing = sum(len(set(groups[f.fit]) & set(groups[f.val])) for f in folds)
        checks.append(Check(f"no {problem.group_name} in two folds", crossing == 0,
                            f"{crossing} groups cross a fold boundary"))
    if problem.scheme == "stratified":
        rates = [np.bincount(problem.y[f.val].astype(int), minlength=problem.n_classes)
                 / len(f.val) for f in folds]
        spread = float(np.max(np.ptp(np.array(rates), axis=0)))
        checks.append(Check("class balance equal across folds", spread < 0.05,
                            f"largest spread of a class rate between folds {spread:.3f}"))
    if problem.scheme in ("stratified", "kfold"):
        seen = pd.util.hash_pandas_object(problem.baseline, index=False).to_numpy()
        copies = int(np.isin(seen[test_rows], seen[train_rows]).sum())
        checks.append(Check("no test row repeats a training row", copies == 0,
                            f"{copies} of {len(test_rows)} test rows have an identical "
                            "training row"))
    checks.append(_noise_encoding_check(problem, train_rows, seed))
    return checks


def _when(value: float, problem: Problem) -> str:
    if problem.order_is_datetime:
        return f"{order_as_datetime(np.array([value]))[0]:%Y-%m-%d %H:%M}"
    return f"{value:g}"


def _noise_encoding_check(problem: Problem, train_rows: np.ndarray, seed: int) -> Check:
    """A column unique to each row, encoded out of fold, predicts the target exactly as well as
    no column at all (the encoder's prior alone); an in-fold encoding would reproduce it."""
    rows = train_rows[np.argsort(problem.order[train_rows], kind="stable")] if (
        problem.order is not None) else train_rows
    y = (problem.y[rows] == problem.y[rows].max()) if problem.task != "regression" else (
        problem.y[rows] > np.median(problem.y[rows]))
    asked, known = problem.encoding_times(rows)
    columns = pd.DataFrame({"row_id": np.arange(len(rows)), "nothing": np.zeros(len(rows))})
    encoded = TargetEncoder(["row_id", "nothing"], scheme=encoding_scheme(problem),
                            random_state=seed).fit_transform(columns, y.astype(float),
                                                             order=asked, known_at=known)
    encoded = np.where(np.isnan(encoded), y.mean(), encoded)  # the first time step: no past
    auc, baseline = (binary_auc(y.astype(int), encoded[:, k]) for k in (0, 1))
    same = bool(np.allclose(encoded[:, 0], encoded[:, 1], rtol=0.0, atol=1e-9))
    return Check("mean encodings are out of fold", same,
                 f"a row-unique noise column, mean-encoded, predicts the target with AUC "
                 f"{auc:.3f}, as the prior alone does ({baseline:.3f}); an in-fold encoding "
                 "would give 1.000")


def single_feature_check(X: pd.DataFrame, y: np.ndarray, task: str) -> Check:
    """No one feature predicts the target almost perfectly (a leaked answer column)."""
    best_name, best = "", 0.0
    for name in X.columns:
        values = X[name].to_numpy(dtype=float)
        values = np.where(np.isfinite(values), values, np.nanmedian(values) if np.isfinite(
            values).any() else 0.0)
        if task == "regression":
            score = abs(float(pd.Series(values).corr(pd.Series(y), method="spearman")) or 0.0)
        else:
            positive = (y == y.max()).astype(int)
            score = abs(binary_auc(positive, values) - 0.5) * 2
        if np.isfinite(score) and score > best:
            best_name, best = str(name), score
    what = "|rank correlation|" if task == "regression" else "Gini (2·|AUC−0.5|)"
    return Check("no single feature gives the answer away (else check it is no leak)",
                 best < 0.95,
                 f"strongest single feature {best_name!r}: {what} {best:.3f}")


def adversarial_validation(X_train: pd.DataFrame, X_test: pd.DataFrame, seed: int,
                           threads: int, max_rows: int = 10_000) -> tuple[float, list[str]]:
    """How well LightGBM tells training rows from test rows (3-fold CV AUC on up to
    ``max_rows`` of each), and the features it leans on most."""
    import lightgbm as lgb
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    a = X_train.iloc[rng.permutation(len(X_train))[:max_rows]]
    b = X_test.iloc[rng.permutation(len(X_test))[:max_rows]]
    X = pd.concat([a, b], ignore_index=True)
    is_test = np.r_[np.zeros(len(a)), np.ones(len(b))]
    scores = np.zeros(len(X))
    folds = StratifiedKFold(3, shuffle=True, random_state=seed)
    gains = np.zeros(X.shape[1])
    for fit, val in folds.split(X, is_test):
        model = lgb.LGBMClassifier(n_estimators=100, learning_rate=0.1, num_leaves=31,
                                   n_jobs=threads, random_state=seed, verbose=-1)
        model.fit(X.iloc[fit], is_test[fit])
        scores[val] = np.asarray(model.predict_proba(X.iloc[val]))[:, 1]
        gains += model.booster_.feature_importance("gain")
    top = [str(X.columns[i]) for i in np.argsort(gains)[::-1][:3]]
    return binary_auc(is_test, scores), top
