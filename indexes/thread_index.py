"""The :class:`ThreadIndex`: FAISS vectors plus thread metadata in SQLite.

This first version is an exact ``IndexFlatIP`` (cosine on L2-normalised vectors). The API is the
contract its callers rely on; the index type inside may change.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class ThreadIndexError(ValueError):
    """Bad input to, or a broken state of, a thread index (the message says which)."""


@dataclass(frozen=True)
class ThreadMeta:
    """What we know of one thread: its StackOverflow id (if any), title, tags and source."""

    post_id: str | None
    title: str
    tags: tuple[str, ...] = ()
    source: str = ""

    @property
    def url(self) -> str:
        """The thread's page, or a search for its title when the id is unknown."""
        from urllib.parse import quote_plus

        if self.post_id:
            return f"https://stackoverflow.com/questions/{self.post_id}"
        return f"https://stackoverflow.com/search?q={quote_plus(self.title)}"


@dataclass(frozen=True)
class Hit:
    """One search result."""

    row: int
    score: float
    meta: ThreadMeta


class ThreadIndex:
    """Vectors of thread titles with their metadata; searchable by cosine similarity."""

    def __init__(self, dim: int, model_name: str) -> None:
        import faiss

        self.dim = dim
        self.model_name = model_name
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._meta: dict[int, ThreadMeta] = {}
        self._next_id = 0

    # --- building ----------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, metas: Sequence[ThreadMeta], model_name: str) -> ThreadIndex:
        """A new index over ``vectors`` (one row per thread, same order as ``metas``)."""
        if len(metas) == 0:
            raise ThreadIndexError("cannot build an index from an empty corpus")
        index = cls(int(np.asarray(vectors).shape[1]), model_name)
        index.add(vectors, metas)
        return index

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ThreadIndexError(
                f"vectors have shape {array.shape}, but this index holds {self.dim}-d vectors"
            )
        if not np.isfinite(array).all():
            raise ThreadIndexError("vectors contain NaN or infinite values")
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return np.ascontiguousarray(array / norms, dtype=np.float32)

    def add(self, vectors: np.ndarray, metas: Sequence[ThreadMeta]) -> list[int]:
        """Append threads; returns their row ids."""
        array = self._check(vectors)
        if len(array) != len(metas):
            raise ThreadIndexError(f"{len(array)} vectors but {len(metas)} metadata rows")
        ids = np.arange(self._next_id, self._next_id + len(array), dtype=np.int64)
        self._index.add_with_ids(array, ids)
        for row, meta in zip(ids.tolist(), metas, strict=True):
            self._meta[row] = meta
        self._next_id += len(array)
        return ids.tolist()

    def remove(self, rows: Iterable[int]) -> int:
        """Delete threads by row id; returns how many were removed."""
        wanted = np.asarray(sorted(set(rows)), dtype=np.int64)
        removed = int(self._index.remove_ids(wanted))
        for row in wanted.tolist():
            self._meta.pop(row, None)
        return removed

    def __len__(self) -> int:
        return int(self._index.ntotal)

    # --- searching ---------------------------------------------------------------------
    def search(self, query_vectors: np.ndarray, k: int = 10,
               filter: Iterable[str] | None = None) -> list[list[Hit]]:
        """The ``k`` nearest threads of each query; ``filter`` keeps threads with any of the tags."""
        import faiss

        queries = self._check(query_vectors)
        if len(self) == 0:
            return [[] for _ in range(len(queries))]
        params = None
        if filter is not None:
            tags = set(filter)
            allowed = np.asarray(
                [row for row, meta in self._meta.items() if tags.intersection(meta.tags)],
                dtype=np.int64,
            )
            if len(allowed) == 0:
                return [[] for _ in range(len(queries))]
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, rows = self._index.search(queries, min(k, len(self)), params=params)
        results: list[list[Hit]] = []
        for score_row, id_row in zip(scores, rows, strict=True):
            results.append([
                Hit(int(row), float(score), self._meta[int(row)])
                for score, row in zip(score_row, id_row, strict=True) if row >= 0
            ])
        return results

    # --- persistence -------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write ``index.faiss``, ``meta.sqlite3`` and ``info.json`` into ``directory``."""
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(directory / "index.faiss"))
        db_path = directory / "meta.sqlite3"
        db_path.unlink(missing_ok=True)
        with sqlite3.connect(db_path) as db:
            db.execute("CREATE TABLE threads (row INTEGER PRIMARY KEY, post_id TEXT, title TEXT,"
                       " tags TEXT, source TEXT)")
            db.executemany(
                "INSERT INTO threads VALUES (?, ?, ?, ?, ?)",
                [(row, m.post_id, m.title, "|".join(m.tags), m.source)
                 for row, m in self._meta.items()],
            )
        info: dict[str, Any] = {"dim": self.dim, "model_name": self.model_name,
                                "count": len(self), "next_id": self._next_id, "type": "flat"}
        (directory / "info.json").write_text(json.dumps(info, indent=2))

    @classmethod
    def open(cls, directory: Path, model_name: str | None = None) -> ThreadIndex:
        """Load a saved index; ``model_name`` (if given) must match the one it was built with."""
        import faiss

        info_path = directory / "info.json"
        if not info_path.is_file():
            raise ThreadIndexError(f"no thread index in {directory}")
        info = json.loads(info_path.read_text())
        if model_name is not None and info["model_name"] != model_name:
            raise ThreadIndexError(
                f"index in {directory} was built with {info['model_name']!r}, not {model_name!r}"
            )
        index = cls(int(info["dim"]), info["model_name"])
        index._index = faiss.read_index(str(directory / "index.faiss"))
        index._next_id = int(info["next_id"])
        with sqlite3.connect(directory / "meta.sqlite3") as db:
            for row, post_id, title, tags, source in db.execute("SELECT * FROM threads"):
                index._meta[int(row)] = ThreadMeta(post_id, title,
                                                   tuple(t for t in tags.split("|") if t), source)
        return index
