"""The three gradient-boosting libraries behind one picklable fit function, their scores, and an
optuna search over LightGBM's parameters.

:func:`fit_model` takes a :class:`FitJob` (arrays and settings, nothing else) so that a job's
folds and trials can run through ``ctx.fan_out`` as Ray tasks. With validation rows it stops
early on them; without, it trains the given number of rounds (a refit on all training rows).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from course_tools.compete.kinds import Task

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

Kind = Literal["lightgbm", "xgboost", "catboost"]
KINDS: tuple[Kind, ...] = ("lightgbm", "xgboost", "catboost")
LEARNING_RATE = 0.08
MAX_ROUNDS = 2_000
PATIENCE = 50


@dataclass
class FitJob:
    """One model to fit: library, its parameters, the data, and the rows to predict."""

    kind: Kind
    task: Task
    n_classes: int
    X_fit: np.ndarray
    y_fit: np.ndarray
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    predict: list[np.ndarray] = field(default_factory=list)  # predicted with the final model
    params: dict[str, Any] = field(default_factory=dict)
    rounds: int = 0  # without validation rows: train exactly this many rounds
    threads: int = 1
    seed: int = 0


@dataclass
class FitResult:
    """Predictions for ``FitJob.predict`` (and the validation rows first, when given), the
    number of rounds kept, and the fit's wall time."""

    val: np.ndarray | None
    predictions: list[np.ndarray]
    rounds: int
    seconds: float


def score(task: Task, y: np.ndarray, pred: np.ndarray) -> float:
    """The task's metric: ROC AUC (binary), macro one-vs-rest AUC (multiclass), RMSE."""
    from sklearn.metrics import roc_auc_score

    if task == "regression":
        return float(np.sqrt(np.mean((np.asarray(pred) - y) ** 2)))
    if task == "binary":
        return float(roc_auc_score(y, pred)) if len(np.unique(y)) > 1 else 0.5
    labels = np.arange(pred.shape[1])
    present = np.isin(labels, y)
    if present.sum() < 2:
        return 0.5
    onehot = np.eye(pred.shape[1])[y.astype(int)]
    return float(np.mean([roc_auc_score(onehot[:, k], pred[:, k])
                          for k in labels[present]]))


def metric_name(task: Task) -> str:
    return "rmse" if task == "regression" else "auc"


def higher_is_better(task: Task) -> bool:
    return task != "regression"


def fit_model(job: FitJob) -> FitResult:
    """Fit one model (early stopping on the validation rows when given) and predict."""
    start = time.perf_counter()
    fitter = {"lightgbm": _fit_lightgbm, "xgboost": _fit_xgboost,
              "catboost": _fit_catboost}[job.kind]
    predict, rounds = fitter(job)
    val = predict(job.X_val) if job.X_val is not None else None
    return FitResult(val, [predict(X) for X in job.predict], rounds,
                     time.perf_counter() - start)


def _fit_lightgbm(job: FitJob) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    import lightgbm as lgb

    objective = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
    params: dict[str, Any] = {
        "objective": objective[job.task], "learning_rate": LEARNING_RATE, "num_leaves": 31,
        "min_data_in_leaf": 20, "num_threads": job.threads, "seed": job.seed, "verbose": -1,
        "deterministic": True, "force_col_wise": True,
    }
    if job.task == "multiclass":
        params["num_class"] = job.n_classes
    params.update(job.params)
    train = lgb.Dataset(job.X_fit, job.y_fit, free_raw_data=False)
    if job.X_val is not None:
        valid = lgb.Dataset(job.X_val, job.y_val, reference=train)
        booster = lgb.train(params, train, num_boost_round=MAX_ROUNDS, valid_sets=[valid],
                            callbacks=[lgb.early_stopping(PATIENCE, verbose=False)])
        rounds = max(1, booster.best_iteration)
    else:
        rounds = max(1, job.rounds)
        booster = lgb.train(params, train, num_boost_round=rounds)

    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(X, num_iteration=rounds))

    return predict, rounds


def _fit_xgboost(job: FitJob) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    import xgboost as xgb

    objective = {"binary": "binary:logistic", "multiclass": "multi:softprob",
                 "regression": "reg:squarederror"}
    params: dict[str, Any] = {
        "objective": objective[job.task], "eta": LEARNING_RATE, "max_depth": 6,
        "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 5,
        "tree_method": "hist", "nthread": job.threads, "seed": job.seed,
    }
    if job.task == "multiclass":
        params["num_class"] = job.n_classes
    params.update(job.params)
    train = xgb.DMatrix(job.X_fit, label=job.y_fit)
    if job.X_val is not None:
        valid = xgb.DMatrix(job.X_val, label=job.y_val)
        booster = xgb.train(params, train, num_boost_round=MAX_ROUNDS,
                            evals=[(valid, "val")], early_stopping_rounds=PATIENCE,
                            verbose_eval=False)
        rounds = int(booster.best_iteration) + 1
    else:
        rounds = max(1, job.rounds)
        booster = xgb.train(params, train, num_boost_round=rounds)

    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(xgb.DMatrix(X), iteration_range=(0, rounds)))

    return predict, rounds


def _fit_catboost(job: FitJob) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    from catboost import CatBoostClassifier, CatBoostRegressor

    loss = {"binary": "Logloss", "multiclass": "MultiClass", "regression": "RMSE"}
    params: dict[str, Any] = {
        "loss_function": loss[job.task], "learning_rate": LEARNING_RATE, "depth": 6,
        "random_seed": job.seed, "thread_count": job.threads, "verbose": False,
        "allow_writing_files": False,
    }
    params.update(job.params)
    model_class = CatBoostRegressor if job.task == "regression" else CatBoostClassifier
    if job.X_val is not None:
        model = model_class(iterations=MAX_ROUNDS, od_type="Iter", od_wait=PATIENCE,
                            use_best_model=True, **params)
        model.fit(job.X_fit, job.y_fit, eval_set=(job.X_val, job.y_val))
        rounds = int(model.get_best_iteration() or 0) + 1
    else:
        rounds = max(1, job.rounds)
        model = model_class(iterations=rounds, **params)
        model.fit(job.X_fit, job.y_fit)

    def predict(X: np.ndarray) -> np.ndarray:
        if job.task == "regression":
            return np.asarray(model.predict(X))
        proba = np.asarray(model.predict_proba(X))
        return proba[:, 1] if job.task == "binary" else proba

    return predict, rounds


def search_space(trial: Any) -> dict[str, Any]:
    """LightGBM parameters an optuna trial proposes."""
    return {
        "num_leaves": trial.suggest_int("num_leaves", 15, 255, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 400, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


@dataclass
class Search:
    """What an optuna search found: the best parameters and every trial's score."""

    params: dict[str, Any]
    best: float
    scores: list[float]


def tune_lightgbm(job: FitJob, trials: int, fan_out: Callable[[Callable[[Any], Any],
                  Sequence[Any]], list[Any]], *, seed: int, batch: int = 2,
                  on_trial: Callable[[int], None] | None = None) -> Search | None:
    """Search LightGBM's parameters on one fold with optuna's TPE sampler, ``batch`` trials
    at a time through ``fan_out``; None when ``trials`` is 0."""
    if trials <= 0:
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, trials),
                                         constant_liar=True)
    study = optuna.create_study(
        direction="maximize" if higher_is_better(job.task) else "minimize", sampler=sampler)
    scores: list[float] = []
    assert job.y_val is not None
    while len(scores) < trials:
        asked = [study.ask() for _ in range(min(batch, trials - len(scores)))]
        candidates = [search_space(trial) for trial in asked]
        results = fan_out(fit_model, [replace(job, params=c, predict=[]) for c in candidates])
        for trial, result in zip(asked, results, strict=True):
            assert result.val is not None
            value = score(job.task, job.y_val, result.val)
            study.tell(trial, value)
            scores.append(value)
        if on_trial is not None:
            on_trial(len(scores))
    best = {**study.best_params, "bagging_freq": 1}
    return Search(best, float(study.best_value), scores)
