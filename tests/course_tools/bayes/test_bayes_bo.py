"""Bayesian optimisation against random search at a tiny budget (the real benchmark is
``python -m course_tools.bayes.bo``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from course_tools.base import ToolContext
from course_tools.bayes.bo import BOBenchParams, BOParams, run_benchmark, train_bo
from course_tools.plots import is_png


def test_bo_and_random_search_run_at_a_tiny_budget(tmp_path: Path) -> None:
    params = BOParams(dataset="breast_cancer", budget=6, n_initial=3, subsample=300)
    result = train_bo(ToolContext(params=params, work_dir=tmp_path))
    m = result.metrics
    assert 0.0 <= m["best_error"] < 0.2 and 0.0 <= m["random_best_error"] < 0.5
    assert is_png(result.images[0][1])


def test_benchmark_command_reports_medians(tmp_path: Path) -> None:
    params = BOBenchParams(dataset="breast_cancer", budget=4, n_initial=2, subsample=200,
                           seeds=2)
    result = run_benchmark(ToolContext(params=params, work_dir=tmp_path))
    assert 0 <= result.metrics["bo_wins"] + result.metrics["ties"] <= 2
    assert "median best CV error" in result.text


def test_bad_budgets_are_rejected() -> None:
    for bad in ({"budget": -5}, {"budget": 10**12}, {"budget": "lots"}, {"model": "xgboost"},
                {"dataset": "imagenet"}):
        with pytest.raises(ValidationError):
            BOParams.model_validate(bad)
