"""The flights preset's history features use only outcomes known at prediction time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from course_tools.compete.data import load, resolve
from course_tools.compete.flights import (
    LATE_MINUTES,
    calendar_features,
    history_features,
    known_outcome_stats,
    schedule_minutes,
)

HORIZON = 60
PRIOR = 0.2


@pytest.fixture(scope="module")
def week() -> pd.DataFrame:
    """A week of real departures (with its cancellations)."""
    frame = load(resolve("nycflights13/flights"), max_rows=400_000)
    return frame[(frame["month"] == 7) & frame["day"].between(8, 14)].reset_index(drop=True)


def _known_at(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    scheduled = schedule_minutes(frame)
    delay = frame["dep_delay"].to_numpy(dtype=float)
    late = np.where(np.isnan(delay), 1.0, (delay > LATE_MINUTES).astype(float))
    left = np.where(np.isnan(delay), np.inf, scheduled + np.nan_to_num(delay))
    return np.minimum(left, scheduled + LATE_MINUTES), late


def test_airport_rate_matches_a_brute_force_count(week: pd.DataFrame) -> None:
    features = history_features(week, HORIZON, PRIOR)
    known, late = _known_at(week)
    query = schedule_minutes(week) - HORIZON
    origin = week["origin"].to_numpy()
    for row in np.random.default_rng(0).choice(len(week), size=80, replace=False):
        others = np.arange(len(week)) != row
        window = others & (origin == origin[row]) & (known <= query[row]) & (
            known > query[row] - 120)
        expected = (late[window].sum() + 5 * PRIOR) / (window.sum() + 5)
        assert features["late_airport_2h"][row] == pytest.approx(expected)
        assert features["known_airport_2h"][row] == window.sum()


def test_outcomes_known_after_the_prediction_time_change_nothing(week: pd.DataFrame) -> None:
    before = history_features(week, HORIZON, PRIOR)
    known, _ = _known_at(week)
    query = schedule_minutes(week) - HORIZON
    cutoff = np.quantile(query, 0.5)
    rewritten = week.copy()
    future = known > cutoff
    # new outcomes that are still learnt after the cutoff: any delay for flights scheduled
    # well after it, "very late" for the ones scheduled before it
    rng = np.random.default_rng(1)
    later = schedule_minutes(week) > cutoff + 5
    new = np.where(later, rng.choice([-5.0, 0.0, 40.0, 200.0], len(week)), 200.0)
    rewritten.loc[future, "dep_delay"] = new[future]
    after = history_features(rewritten, HORIZON, PRIOR)
    asked_before = query <= cutoff
    pd.testing.assert_frame_equal(before[asked_before], after[asked_before])
    assert not before[~asked_before].equals(after[~asked_before])


def test_a_flights_own_outcome_is_never_counted() -> None:
    keys = np.array(["JFK", "JFK", "LGA"])
    known = np.array([0, 5, 0])
    late = np.array([1.0, 0.0, 1.0])
    sums, counts = known_outcome_stats(keys, known, late, query_at=np.array([10, 10, 10]),
                                       window=None)
    assert sums.tolist() == [0.0, 1.0, 0.0]
    assert counts.tolist() == [1.0, 1.0, 0.0]


def test_calendar_features_are_bounded_and_know_the_holidays(week: pd.DataFrame) -> None:
    calendar = calendar_features(week)
    assert calendar["days_to_holiday"].between(0, 7).all()
    # 8-14 July 2013: Independence Day was on the 4th, so 4 to 7 days earlier (clipped at 7)
    assert calendar["days_since_holiday"].min() == 4
    assert set(calendar["day_of_week"]) == set(range(7))
