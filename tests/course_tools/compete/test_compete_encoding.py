"""Mean encodings are out of fold: a row's encoding never reads its own target, and a column
unique to each row carries no signal (an in-fold encoding would reproduce the target)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from course_tools.compete.data import load, resolve
from course_tools.compete.encoding import TargetEncoder


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, np.ndarray]:
    """3,000 rows of the real telecom churn table and its 0/1 target."""
    frame = load(resolve("modeldata/wa_churn"), max_rows=10_000).head(3_000)
    return frame, (frame["churn"] == "Yes").to_numpy(dtype=float)


@pytest.fixture(scope="module")
def flights_slice() -> pd.DataFrame:
    """Four days of real departures, with a late flag and a time of day."""
    frame = load(resolve("nycflights13/flights"), max_rows=400_000)
    frame = frame[(frame["month"] == 3) & (frame["day"] <= 4)].dropna(subset=["dep_delay"])
    return frame.assign(late=(frame["dep_delay"] > 15).astype(float),
                        t=frame["day"] * 1440 + frame["hour"] * 60 + frame["minute"]
                        ).reset_index(drop=True)


def test_row_unique_noise_column_gets_no_signal(churn: tuple[pd.DataFrame, np.ndarray]) -> None:
    _, y = churn
    ids = pd.DataFrame({"row_id": np.arange(len(y))})
    naive = ids.assign(y=y).groupby("row_id")["y"].transform("mean").to_numpy()
    assert roc_auc_score(y, naive) == 1.0  # what an in-fold encoding leaks
    oof = TargetEncoder(["row_id"], n_splits=5).fit_transform(ids, y)[:, 0]
    assert abs(roc_auc_score(y, oof) - 0.5) < 0.05
    expanding = TargetEncoder(["row_id"], scheme="expanding").fit_transform(
        ids, y, order=np.arange(len(y)))[:, 0]
    # no earlier row shares the id: the prior only, the mean of all earlier rows
    assert np.isnan(expanding[0])
    assert np.allclose(expanding[1:], np.cumsum(y)[:-1] / np.arange(1, len(y)))


@pytest.mark.parametrize("scheme", ["kfold", "expanding"])
def test_a_rows_encoding_never_reads_its_own_target(
        churn: tuple[pd.DataFrame, np.ndarray], scheme: str) -> None:
    frame, y = churn
    columns = ["payment_method", "contract", "internet_service"]
    order = np.arange(len(y)) // 10  # ten rows share each time step
    encoder = TargetEncoder(columns, scheme=scheme, n_splits=5)  # type: ignore[arg-type]
    before = encoder.fit_transform(frame[columns], y, order=order)
    rows = np.random.default_rng(0).choice(len(y), size=50, replace=False)
    for row in rows:
        flipped = y.copy()
        flipped[row] = 1 - flipped[row]
        after = TargetEncoder(columns, scheme=scheme, n_splits=5).fit_transform(  # type: ignore[arg-type]
            frame[columns], flipped, order=order)
        assert np.array_equal(after[row], before[row], equal_nan=True)
        same = (after == before) | (np.isnan(after) & np.isnan(before))
        changed = np.flatnonzero(~same.all(axis=1))
        assert len(changed) > 0  # the flip does reach other rows
        if scheme == "expanding":  # and only later ones
            assert order[changed].min() > order[row]


def test_expanding_mean_is_the_smoothed_mean_of_strictly_earlier_rows(
        flights_slice: pd.DataFrame) -> None:
    frame = flights_slice
    y, t = frame["late"].to_numpy(), frame["t"].to_numpy()
    smoothing = 20.0
    got = TargetEncoder(["carrier"], scheme="expanding", smoothing=smoothing).fit_transform(
        frame[["carrier"]], y, order=t)[:, 0]
    for row in np.random.default_rng(1).choice(len(frame), size=60, replace=False):
        if t[row] == t.min():
            continue
        prior = y[t < t[row]].mean()
        earlier = (frame["carrier"].to_numpy() == frame["carrier"][row]) & (t < t[row])
        expected = (y[earlier].sum() + smoothing * prior) / (earlier.sum() + smoothing)
        assert got[row] == pytest.approx(expected)


def test_expanding_mean_reads_only_outcomes_known_when_the_row_is_predicted(
        flights_slice: pd.DataFrame) -> None:
    """A flight asked an hour before departure cannot see an earlier flight still waiting."""
    frame = flights_slice
    y, t = frame["late"].to_numpy(), frame["t"].to_numpy()
    known = t + np.minimum(frame["dep_delay"].to_numpy(), 15)
    asked = t - 60
    got = TargetEncoder(["origin"], scheme="expanding", smoothing=5.0).fit_transform(
        frame[["origin"]], y, order=asked, known_at=known)[:, 0]
    origin = frame["origin"].to_numpy()
    for row in np.random.default_rng(2).choice(len(frame), size=60, replace=False):
        others = np.arange(len(frame)) != row
        seen = others & (known < asked[row])
        if not seen.any():
            assert np.isnan(got[row])
            continue
        same = seen & (origin == origin[row])
        expected = (y[same].sum() + 5.0 * y[seen].mean()) / (same.sum() + 5.0)
        assert got[row] == pytest.approx(expected)


def test_new_rows_get_full_statistics_and_unseen_levels_the_prior(
        churn: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, y = churn
    encoder = TargetEncoder(["contract"], smoothing=0.0)
    encoder.fit_transform(frame[["contract"]], y)
    levels = pd.DataFrame({"contract": ["Month-to-month", "Two year", "never seen"]})
    encoded = encoder.transform(levels)[:, 0]
    rates = pd.Series(y).groupby(frame["contract"]).mean()
    assert encoded[0] == pytest.approx(rates["Month-to-month"])
    assert encoded[1] == pytest.approx(rates["Two year"])
    assert encoded[2] == pytest.approx(y.mean())
    assert encoded[0] > 2 * encoded[1]  # month-to-month customers churn far more


def test_groups_stay_in_one_fold_and_multiclass_targets_get_one_column_per_class() -> None:
    frame = load(resolve("lme4/InstEval"), max_rows=100_000).head(4_000)
    classes = np.eye(5)[frame["y"].to_numpy() - 1]
    encoder = TargetEncoder(["d"], n_splits=4)
    encoded = encoder.fit_transform(frame[["d"]], classes, groups=frame["s"].to_numpy())
    assert encoded.shape == (len(frame), 5)
    assert encoder.feature_names_ == [f"te_d_{k}" for k in range(5)]
    assert np.allclose(encoded.sum(axis=1), 1.0)  # smoothed class shares still sum to one
    folds = encoder._fold_ids(len(frame), frame["s"].to_numpy())
    per_student = pd.Series(folds).groupby(frame["s"].to_numpy()).nunique()
    assert per_student.max() == 1
