"""Finding tables, detecting the task and the validation scheme, and refusing bad input with
messages that say what to do."""

from __future__ import annotations

import numpy as np
import pytest

from course_tools.base import ToolInputError
from course_tools.compete.data import load, resolve
from course_tools.compete.problem import build_problem, detect_task
from course_tools.compete.validation import leakage_checks, make_folds


def test_tables_are_found_by_name_or_package() -> None:
    assert resolve("InstEval").name == "lme4/InstEval"
    assert resolve("nycflights13/FLIGHTS").name == "nycflights13/flights"
    with pytest.raises(ToolInputError, match="Did you mean InstEval"):
        resolve("instevall")
    with pytest.raises(ToolInputError, match="palmerpenguins/penguins"):
        resolve("penguins")  # in two packages


def test_size_limit_says_how_to_raise_it() -> None:
    with pytest.raises(ToolInputError, match=r"max_rows=336776"):
        load(resolve("flights"), max_rows=100_000)


@pytest.mark.parametrize(("table", "column", "task"), [
    ("modeldata/wa_churn", "churn", "binary"),
    ("palmerpenguins/penguins", "species", "multiclass"),
    ("lme4/InstEval", "y", "multiclass"),  # five whole-number ratings
    ("MASS/Boston", "medv", "regression"),
])
def test_task_is_detected_from_the_target(table: str, column: str, task: str) -> None:
    frame = load(resolve(table), max_rows=100_000)
    assert detect_task(frame[column], "auto", column) == task


def test_targets_that_cannot_work_are_refused() -> None:
    churn = load(resolve("modeldata/wa_churn"), max_rows=10_000)
    with pytest.raises(ToolInputError, match="not numeric"):
        detect_task(churn["churn"], "regression", "churn")
    with pytest.raises(ToolInputError, match="needs a target with 2 values"):
        detect_task(churn["payment_method"], "binary", "payment_method")
    with pytest.raises(ToolInputError, match="columns are: churn, female"):
        build_problem("modeldata/wa_churn", churn, "churned")


def test_dates_give_ordered_folds_and_a_later_test() -> None:
    economics = load(resolve("ggplot2/economics"), max_rows=10_000)
    problem = build_problem("ggplot2/economics", economics, "unemploy", n_folds=3)
    assert (problem.scheme, problem.task, problem.time_name) == ("time", "regression", "date")
    assert problem.order is not None and problem.order_is_datetime
    train, test = np.flatnonzero(~problem.is_test), np.flatnonzero(problem.is_test)
    folds = make_folds(problem, train, 3, seed=0)
    assert len(folds) == 3
    checks = {c.name: c for c in leakage_checks(problem, train, test, folds, seed=0)}
    assert checks["no test time before the last train time"].ok
    assert checks["every fold trains on the past only"].ok
    assert checks["mean encodings are out of fold"].ok


def test_students_are_grouped_so_none_spans_two_folds() -> None:
    frame = load(resolve("lme4/InstEval"), max_rows=100_000).head(6_000)
    problem = build_problem("lme4/InstEval", frame, "y", task="regression", n_folds=4)
    assert (problem.scheme, problem.group_name) == ("group", "s")  # found by itself
    assert "d" in problem.encode_cols  # lecturer ids get mean encodings
    train, test = np.flatnonzero(~problem.is_test), np.flatnonzero(problem.is_test)
    folds = make_folds(problem, train, 4, seed=0)
    checks = {c.name: c for c in leakage_checks(problem, train, test, folds, seed=0)}
    assert checks["no s in both train and test"].ok
    assert checks["no s in two folds"].ok


def test_plain_tables_get_stratified_folds() -> None:
    frame = load(resolve("carData/TitanicSurvival"), max_rows=10_000)
    problem = build_problem("carData/TitanicSurvival", frame, "survived", n_folds=5)
    assert problem.scheme == "stratified" and problem.classes == ["no", "yes"]
    assert set(problem.encode_cols) == {"sex", "passengerClass"}
    train, test = np.flatnonzero(~problem.is_test), np.flatnonzero(problem.is_test)
    folds = make_folds(problem, train, 5, seed=0)
    checks = {c.name: c for c in leakage_checks(problem, train, test, folds, seed=0)}
    assert checks["class balance equal across folds"].ok
