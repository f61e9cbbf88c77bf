"""The exploratory summary of a problem: a few lines of text and one figure of six panels
(target distribution, missing values, cardinalities, the target over time or per group, the
target per level of a categorical column, and the validation scheme)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from course_tools.compete.problem import Problem, order_as_datetime
from course_tools.compete.validation import Fold
from course_tools.plots import figure_png, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TOP = 12


def _target_label(problem: Problem) -> str:
    if problem.task == "binary":
        return f"share {problem.classes[-1]}"
    if problem.task == "multiclass":
        return "mean class index"
    return f"mean {problem.target}"


def eda_summary(problem: Problem) -> list[str]:
    """Plain-text facts: size, target balance, most-missing and highest-cardinality columns."""
    table = problem.table
    lines = [f"{len(table):,} rows × {table.shape[1]} columns; {int((~problem.is_test).sum()):,}"
             f" train and {int(problem.is_test.sum()):,} test rows; task: {problem.task}"]
    if problem.task == "regression":
        y = problem.y
        lines.append(f"target {problem.target}: mean {y.mean():.3g}, std {y.std():.3g}, "
                     f"range {y.min():.3g} to {y.max():.3g}")
    else:
        counts = np.bincount(problem.y.astype(int), minlength=problem.n_classes) / len(problem.y)
        shares = ", ".join(f"{c} {s:.1%}" for c, s in zip(problem.classes, counts, strict=True))
        lines.append(f"target {problem.target}: {shares}")
    missing = table.isna().mean().sort_values(ascending=False)
    missing = missing[missing > 0]
    if len(missing):
        lines.append("missing values: " + ", ".join(f"{c} {v:.1%}"
                                                    for c, v in missing.head(5).items()))
    else:
        lines.append("no missing values")
    cards = table.nunique().sort_values(ascending=False)
    high = [f"{c} ({n:,})" for c, n in cards.items()
            if c in problem.encode_cols or c == problem.group_name][:5]
    if high:
        lines.append("categorical / id columns by cardinality: " + ", ".join(high))
    return lines


def eda_png(problem: Problem, folds: list[Fold]) -> bytes:
    """The six-panel EDA figure as PNG bytes."""
    fig = new_figure(13, 7.5)
    axes = [fig.add_subplot(2, 3, i + 1) for i in range(6)]
    table, y = problem.table, problem.y
    _target_panel(axes[0], problem)
    missing = table.isna().mean().sort_values(ascending=False).head(TOP)
    axes[1].barh([str(c) for c in missing.index][::-1], missing.to_numpy()[::-1] * 100)
    axes[1].set_title("missing values (% of rows)")
    cards = table.nunique().sort_values(ascending=False).head(TOP)
    axes[2].barh([str(c) for c in cards.index][::-1], cards.to_numpy()[::-1])
    axes[2].set_xscale("log")
    axes[2].xaxis.set_minor_formatter(NullFormatter())
    axes[2].set_title("distinct values per column (log)")
    _over_time_or_group(axes[3], problem)
    column = _best_category(problem)
    if column is not None:
        frame = pd.DataFrame({"level": table[column].astype(str), "y": y})
        stats = frame.groupby("level")["y"].agg(["mean", "size"]).sort_values(
            "size", ascending=False).head(TOP)
        axes[4].barh(stats.index[::-1], stats["mean"].to_numpy()[::-1])
        axes[4].set_title(f"{_target_label(problem)} by {column} (largest levels)")
    else:
        axes[4].set_axis_off()
    _folds_panel(axes[5], problem, folds)
    return figure_png(fig)


def _times(problem: Problem, values: np.ndarray) -> np.ndarray | pd.DatetimeIndex:
    return order_as_datetime(values) if problem.order_is_datetime else values


def _date_axis(ax: Axes) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _folds_panel(ax: Axes, problem: Problem, folds: list[Fold]) -> None:
    """Each fold as a bar: its fit rows and its validation rows (spans in time, or counts)."""
    for k, fold in enumerate(folds):
        if problem.order is not None:
            for rows, colour in ((fold.fit, "tab:blue"), (fold.val, "tab:orange")):
                ends = _times(problem, np.array([problem.order[rows].min(),
                                                 problem.order[rows].max()]))
                ax.plot(ends, [k, k], color=colour, linewidth=8, solid_capstyle="butt")
        else:
            ax.barh(k, len(fold.fit), color="tab:blue")
            ax.barh(k, len(fold.val), left=len(fold.fit), color="tab:orange")
    ax.set_yticks(range(len(folds)), [f"fold {k + 1}" for k in range(len(folds))])
    ax.set_title(f"{problem.scheme} folds: fit (blue), validate (orange)")
    ax.set_xlabel(problem.time_name or "rows")
    if problem.order_is_datetime:
        _date_axis(ax)


def _target_panel(ax: Axes, problem: Problem) -> None:
    y, test = problem.y, problem.is_test
    if problem.task == "regression":
        ax.hist([y[~test], y[test]], bins=30, label=["train", "test"])
    else:
        positions = np.arange(problem.n_classes)
        for shift, rows, label in ((-0.2, ~test, "train"), (0.2, test, "test")):
            shares = np.bincount(y[rows].astype(int), minlength=problem.n_classes) / max(
                1, rows.sum())
            ax.bar(positions + shift, shares, width=0.4, label=label)
        ax.set_xticks(positions, problem.classes, rotation=30)
    ax.set_title(f"target: {problem.target}")
    ax.legend(fontsize=8)


def _over_time_or_group(ax: Axes, problem: Problem) -> None:
    y = problem.y
    if problem.order is not None:
        bins = pd.qcut(problem.order, q=min(52, max(2, len(y) // 200)), duplicates="drop",
                       labels=False)
        frame = pd.DataFrame({"t": problem.order, "y": y, "bin": bins})
        stats = frame.groupby("bin").agg(t=("t", "mean"), y=("y", "mean"))
        ax.plot(_times(problem, stats["t"].to_numpy()), stats["y"], marker=".")
        split = _times(problem, np.array([problem.order[problem.is_test].min()]))[0]
        ax.axvline(split, color="grey", linestyle="--", label="test starts")
        if problem.order_is_datetime:
            _date_axis(ax)
        ax.set_xlabel(problem.time_name)
        ax.set_title(f"{_target_label(problem)} over time")
        ax.legend(fontsize=8)
        return
    if problem.groups is not None:
        per_group = pd.Series(y).groupby(problem.groups).mean()
        ax.hist(per_group.to_numpy(), bins=30)
        ax.set_title(f"{_target_label(problem)} per {problem.group_name} "
                     f"({len(per_group):,} groups)")
        return
    ax.hist(np.arange(len(y))[problem.is_test], bins=30, label="test rows")
    ax.set_title("test rows are a stratified random sample")
    ax.legend(fontsize=8)


def _best_category(problem: Problem) -> str | None:
    """The categorical column with the most levels that still fits a bar chart."""
    options = [(int(problem.table[c].nunique()), str(c)) for c in problem.encode_cols]
    options = [(n, c) for n, c in options if n >= 2]
    small = [o for o in options if o[0] <= 40]
    return max(small or options)[1] if options else None
