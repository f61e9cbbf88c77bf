"""A competition problem: a table, its target, the train/test split, the validation scheme and
the leak-free features the models read. Built by :func:`build_problem` for any table, or by the
flights preset (``course_tools.compete.flights``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from course_tools.base import ToolInputError
from course_tools.compete.kinds import Scheme, Task, TaskChoice

MAX_CLASSES = 20
MIN_ROWS = 60
ID_NAMES = ("id", "ids", "student", "subject", "patient", "user", "customer", "person")


@dataclass
class Problem:
    """Everything the pipeline needs, row-aligned: ``table`` (raw columns, for the EDA and the
    mean encodings), ``y`` (0/1, class index or value), ``is_test``, and the model inputs."""

    name: str
    table: pd.DataFrame
    target: str
    y: np.ndarray
    task: Task
    classes: list[str]
    is_test: np.ndarray
    scheme: Scheme
    scheme_reason: str
    encode_cols: list[str]
    features: pd.DataFrame  # numeric model inputs besides the mean encodings
    baseline: pd.DataFrame  # raw columns (category codes) for the plain LightGBM
    order: np.ndarray | None = None  # row times (time scheme)
    order_is_datetime: bool = False  # order holds nanoseconds since the epoch
    asked_at: np.ndarray | None = None  # time scheme: when a row is predicted (default: order)
    known_at: np.ndarray | None = None  # time scheme: when its target is known (default: order)
    groups: np.ndarray | None = None  # row groups (group scheme)
    group_name: str = ""
    time_name: str = ""
    blocks: np.ndarray | None = None  # time scheme: validation block of each row (-1: none)
    notes: list[str] = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.task != "regression" else 1

    def encoding_times(self, rows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """For the expanding mean encodings: when each row is predicted, and when its target
        became known (None without a time order)."""
        if self.order is None:
            return None, None
        asked = self.asked_at if self.asked_at is not None else self.order
        known = self.known_at if self.known_at is not None else self.order
        return asked[rows], known[rows]

    def encoding_targets(self, rows: np.ndarray) -> np.ndarray:
        """What the mean encodings average: the target, or one-hot classes (multiclass)."""
        y = self.y[rows]
        if self.task == "multiclass":
            return np.eye(self.n_classes)[y.astype(int)]
        return y.astype(float)


def detect_task(values: pd.Series, choice: TaskChoice, column: str) -> Task:
    """Binary, multiclass or regression from the target's values (or check the user's choice)."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    n_unique = int(values.nunique())
    if choice == "regression":
        if not numeric:
            raise ToolInputError(f"the target {column!r} is not numeric (e.g. "
                                 f"{values.iloc[0]!r}), so it cannot be regressed; use "
                                 "task=binary or task=multiclass, or another target")
        return "regression"
    if choice == "binary":
        if n_unique != 2:
            raise ToolInputError(f"task=binary needs a target with 2 values; {column!r} has "
                                 f"{n_unique}. Use task=multiclass or task=regression.")
        return "binary"
    if choice == "multiclass":
        if not 2 < n_unique <= MAX_CLASSES:
            raise ToolInputError(f"task=multiclass needs 3 to {MAX_CLASSES} classes; {column!r}"
                                 f" has {n_unique}")
        return "multiclass"
    if n_unique < 2:
        raise ToolInputError(f"the target {column!r} has a single value, nothing to predict")
    if n_unique == 2:
        return "binary"
    if numeric:
        whole = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
        return "multiclass" if whole and n_unique <= 10 else "regression"
    if n_unique > MAX_CLASSES:
        raise ToolInputError(f"the target {column!r} is text with {n_unique} distinct values: "
                             f"too many classes (at most {MAX_CLASSES}), and text cannot be "
                             "regressed. Pick a label column or a numeric target.")
    return "multiclass"


def encode_target(values: pd.Series, task: Task) -> tuple[np.ndarray, list[str]]:
    """Target as numbers (0/1, class indices, floats) and the class names."""
    if task == "regression":
        return values.to_numpy(dtype=float), []
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(float if task == "binary" else int), [str(u) for u in uniques]


def _is_datetime_like(values: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    if values.dtype != object:
        return False
    sample = values.dropna().astype(str).head(50)
    return len(sample) > 0 and bool(sample.str.match(r"^\d{4}-\d{2}-\d{2}").all())


def _looks_like_id(name: str, values: pd.Series, n_rows: int) -> bool:
    """An integer or text column of repeated identifiers (a student, a patient...)."""
    n_unique = int(values.nunique())
    if not 20 <= n_unique <= n_rows // 2:
        return False
    lowered = name.lower()
    named = lowered in ID_NAMES or lowered.endswith("_id") or lowered.endswith("id")
    coded = len(lowered) <= 2 and pd.api.types.is_integer_dtype(values)
    return named or coded


def build_problem(name: str, frame: pd.DataFrame, target: str, *, task: TaskChoice = "auto",
                  group: str | None = None, time: str | None = None, test_size: float = 0.2,
                  n_folds: int = 5, seed: int = 0) -> Problem:
    """Prepare any table: the task, the validation scheme (time, group or stratified K-fold)
    with a test split made the same way, the columns to mean-encode and the model inputs."""
    if target not in frame.columns:
        raise ToolInputError(f"{name} has no column {target!r}; its columns are: "
                             f"{', '.join(map(str, frame.columns))}")
    for label, column in (("group", group), ("time", time)):
        if column is not None and (column not in frame.columns or column == target):
            raise ToolInputError(f"{label}={column!r} is not a column of {name} (other than "
                                 f"the target); columns: {', '.join(map(str, frame.columns))}")
    notes: list[str] = []
    missing = frame[target].isna()
    if missing.any():
        notes.append(f"dropped {int(missing.sum())} rows without a target")
        frame = frame[~missing].reset_index(drop=True)
    if len(frame) < MIN_ROWS:
        raise ToolInputError(f"{name} has only {len(frame)} rows with a target; a validation "
                             f"scheme needs at least {MIN_ROWS}")
    kind = detect_task(frame[target], task, target)
    y, classes = encode_target(frame[target], kind)
    if kind != "regression":
        counts = np.bincount(y.astype(int), minlength=len(classes))
        rare = counts < max(n_folds, 2) * 2
        if rare.any():
            keep_classes = np.flatnonzero(~rare)
            if len(keep_classes) < 2:
                raise ToolInputError(f"the classes of {target!r} are too small to validate "
                                     "(fewer than two per fold)")
            notes.append(f"dropped {int(counts[rare].sum())} rows of {int(rare.sum())} classes "
                         f"with fewer than {max(n_folds, 2) * 2} rows")
            keep = ~rare[y.astype(int)]
            frame = frame[keep].reset_index(drop=True)
            y, classes = encode_target(frame[target], kind)
            if kind == "multiclass" and len(classes) == 2:
                kind = "binary"
                y = y.astype(float)

    columns = [c for c in frame.columns if c != target]
    if time is None:
        time = next((c for c in columns if _is_datetime_like(frame[c])), None)
    if group is None and time is None:
        group = next((c for c in columns if _looks_like_id(str(c), frame[c], len(frame))), None)

    rng = np.random.default_rng(seed)
    order = groups = blocks = None
    order_is_datetime = False
    if time is not None:
        stamps = pd.to_datetime(frame[time], errors="coerce") if _is_datetime_like(
            frame[time]) else pd.to_numeric(frame[time], errors="coerce")
        if stamps.isna().all():
            raise ToolInputError(f"time={time!r} holds no dates or numbers")
        order = _as_order(stamps)
        order_is_datetime = pd.api.types.is_datetime64_any_dtype(stamps)
        cut = np.quantile(order, 1 - test_size)
        is_test = order > cut
        scheme: Scheme = "time"
        reason = (f"rows are ordered by {time!r}: the test is the latest {test_size:.0%}, and "
                  "each validation fold trains on the past only (ordered folds)")
        blocks = time_blocks(order, is_test, n_folds)
    elif group is not None:
        groups = frame[group].to_numpy()
        unique = pd.unique(groups)
        needed = 2 * (n_folds + 1)
        if len(unique) < needed:
            raise ToolInputError(f"group={group!r} has only {len(unique)} distinct values; "
                                 f"grouped folds and a grouped test need at least {needed} "
                                 "(an id shared by a few rows: a student, a patient...)")
        test_groups = set(rng.choice(unique, size=max(1, int(round(test_size * len(unique)))),
                                     replace=False).tolist())
        is_test = np.isin(groups, list(test_groups))
        scheme = "group"
        reason = (f"{group!r} identifies {len(unique)} groups with repeated rows: a model must "
                  "generalise to unseen groups, so folds and test hold whole groups")
    else:
        is_test = _stratified_test(y, kind, test_size, rng)
        scheme = "stratified" if kind != "regression" else "kfold"
        reason = ("no time or group structure: stratified K-fold keeps the class balance in "
                  "every fold" if kind != "regression" else
                  "no time or group structure: shuffled K-fold")

    encode_cols: list[str] = []
    features: dict[str, np.ndarray] = {}
    baseline: dict[str, np.ndarray] = {}
    for col in columns:
        if col in (group, time):
            continue
        values = frame[col]
        n_unique = int(values.nunique())
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            numeric = values.astype(float).to_numpy()
            features[str(col)] = numeric
            baseline[str(col)] = numeric
            if _looks_like_id(str(col), values, len(frame)):
                encode_cols.append(col)
            continue
        if _is_datetime_like(values):
            stamp = _as_order(pd.to_datetime(values, errors="coerce"))
            features[str(col)] = stamp
            baseline[str(col)] = stamp
            continue
        if n_unique > 0.5 * len(frame):
            notes.append(f"left out {col!r}: {n_unique} distinct texts in {len(frame)} rows "
                         "look like free text or row ids")
            continue
        codes = pd.factorize(values)[0].astype(float)
        codes[codes < 0] = np.nan
        baseline[str(col)] = codes
        if n_unique <= 30:
            features[str(col)] = codes
        encode_cols.append(col)
    if group is not None and scheme == "group":
        # the group itself is unseen at test time; its mean encoding would be the prior there
        notes.append(f"{group!r} is the grouping id and is not a feature")
    if not features and not encode_cols:
        raise ToolInputError(f"{name} has no usable feature columns besides {target!r}")
    return Problem(
        name=name, table=frame, target=target, y=y, task=kind, classes=classes,
        is_test=np.asarray(is_test, dtype=bool), scheme=scheme, scheme_reason=reason,
        encode_cols=encode_cols, features=pd.DataFrame(features),
        baseline=pd.DataFrame(baseline), order=order, order_is_datetime=order_is_datetime,
        groups=groups, group_name=group or "",
        time_name=time or "", blocks=blocks, notes=notes,
    )


def _as_order(stamps: pd.Series) -> np.ndarray:
    """Dates or numbers as comparable floats (missing ones sort first)."""
    if pd.api.types.is_datetime64_any_dtype(stamps):
        values = datetime_order(stamps.to_numpy(dtype="datetime64[ns]"))
        values[stamps.isna().to_numpy()] = np.nan
    else:
        values = stamps.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    return np.where(np.isfinite(values), values, finite.min() if finite.size else 0.0)


def datetime_order(stamps: np.ndarray) -> np.ndarray:
    """datetime64 values as float nanoseconds since the epoch (the problem's ``order``)."""
    return np.asarray(stamps.astype("datetime64[ns]").astype("int64"), dtype=float)


def order_as_datetime(order: np.ndarray) -> pd.DatetimeIndex:
    """The inverse of :func:`datetime_order`, for plots and messages."""
    return pd.to_datetime(np.asarray(order).astype("int64"))


def time_blocks(order: np.ndarray, is_test: np.ndarray, n_folds: int,
                share: float = 0.5) -> np.ndarray:
    """Validation block of each training row (-1: only ever trained on): the latest ``share``
    of the training period cut into ``n_folds`` consecutive blocks."""
    blocks = np.full(len(order), -1)
    train = ~is_test
    edges = np.quantile(order[train], np.linspace(1 - share, 1, n_folds + 1))
    for k in range(n_folds):
        inside = train & (order > edges[k]) & (order <= edges[k + 1])
        blocks[inside] = k
    return blocks


def _stratified_test(y: np.ndarray, task: Task, test_size: float,
                     rng: np.random.Generator) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    stratify = y if task != "regression" else None
    _, test_rows = train_test_split(rows, test_size=test_size,
                                    random_state=int(rng.integers(2**31 - 1)), stratify=stratify)
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test_rows] = True
    return is_test
