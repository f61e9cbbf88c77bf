"""The :class:`ThreadIndex`: thread titles' vectors (FAISS) with their metadata (SQLite).

It joins three pieces, each in its own module: :class:`~indexes.vectors.VectorIndex` (the
FAISS index, its type, tuning and HNSW tombstones), :class:`~indexes.metadata.MetadataStore`
(what each row is) and :mod:`indexes.persistence` (the files on disk and their checksums). Saved
indexes open memory-mapped and read-only, so several bot processes share the pages; the first
change copies what it touches into RAM.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import numpy as np

from indexes.errors import DamagedIndexError, ThreadIndexError
from indexes.metadata import MetadataStore, ThreadMeta
from indexes.persistence import (
    INDEX_FILE,
    INFO_FILE,
    META_FILE,
    checked_info,
    read_info,
    save_files,
    sha256_file,
)
from indexes.vectors import (
    TUNE_MARGIN,
    IndexSpec,
    VectorIndex,
    bitmap_selector,
    choose_spec,
    exact_topk,
    normalise,
    recall_at_k,
)

__all__ = ["INDEX_FILE", "INFO_FILE", "META_FILE", "TUNE_MARGIN", "Hit", "IndexSpec",
           "ThreadIndex", "ThreadIndexError", "ThreadMeta", "choose_spec", "exact_topk",
           "normalise", "recall_at_k", "sha256_file"]

T = TypeVar("T")
#: Tag filters kept ready (bot workers ask for the same few languages over and over).
FILTER_CACHE = 64


@dataclass(frozen=True)
class Hit:
    """One thread found for a query: its row, cosine similarity and metadata. The same object
    goes from the index to the reply (``preferred``: it carries a tag the search preferred,
    e.g. the asker's language)."""

    row: int
    score: float
    meta: ThreadMeta
    preferred: bool = False

    @property
    def title(self) -> str:
        return self.meta.title

    @property
    def url(self) -> str:
        return self.meta.url

    @property
    def tags(self) -> tuple[str, ...]:
        return self.meta.tags


class _OnVectors(Generic[T]):
    """An attribute of a :class:`ThreadIndex` that lives on its :class:`VectorIndex`."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, index: ThreadIndex, owner: type | None = None) -> T:
        return cast(T, getattr(index.vectors, self.name))

    def __set__(self, index: ThreadIndex, value: T) -> None:
        setattr(index.vectors, self.name, value)


class ThreadIndex:
    """Vectors of thread titles with their metadata; searchable by cosine similarity.

    ``ThreadIndex(dim, model_name)`` is an empty exact index (``meta_path``: keep its metadata in
    that SQLite file rather than in RAM); :meth:`build` picks the type by size; :meth:`open`
    loads a saved one (memory-mapped and read-only unless ``mmap=False``; the first :meth:`add`
    or :meth:`remove` then copies it into RAM: for an HNSW index :meth:`remove` copies only the
    metadata). Searching is thread-safe.
    """

    def __init__(self, dim: int, model_name: str, *, spec: IndexSpec | None = None,
                 model_version: str = "", meta_path: Path | None = None) -> None:
        self.dim = dim
        self.model_name = model_name
        self.model_version = model_version
        self.vectors = VectorIndex(dim, spec)
        self.meta_store = MetadataStore(meta_path)
        self._next_id = 0
        self._lock = threading.RLock()
        self._source_dir: Path | None = None
        self._filters: OrderedDict[frozenset[str], tuple[Any, Any, int]] = OrderedDict()

    #: The vector side's knobs, as callers and the saved info know them.
    nprobe = _OnVectors[int]()
    ef_search = _OnVectors[int]()
    tuned_recall = _OnVectors["float | None"]()

    @property
    def spec(self) -> IndexSpec:
        return self.vectors.spec

    # --- building ----------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, metas: Sequence[ThreadMeta], model_name: str, *,
              kind: str | None = None, model_version: str = "",
              target_recall: float = 0.95, seed: int = 0,
              tune_queries: np.ndarray | None = None) -> ThreadIndex:
        """A new index over ``vectors`` (one row per thread, same order as ``metas``); the type
        comes from :func:`choose_spec` unless ``kind`` names one, and IVF indexes are trained on
        a sample and tuned to ``target_recall`` (on ``tune_queries``, held-out query vectors,
        when given; see :meth:`tune`)."""
        if len(metas) == 0 or len(np.asarray(vectors)) == 0:
            raise ThreadIndexError("cannot build an index from an empty corpus")
        array = normalise(vectors, int(np.asarray(vectors).shape[-1]))
        index = cls(array.shape[1], model_name, spec=choose_spec(len(array), array.shape[1], kind),
                    model_version=model_version)
        if index.spec.needs_training:
            rng = np.random.default_rng(seed)
            take = min(len(array), index.spec.train_size())
            index.train(array[np.sort(rng.choice(len(array), take, replace=False))], seed=seed)
        index.add(array, metas)
        if index.spec.needs_training:
            index.tune(array, target_recall=target_recall, seed=seed, queries=tune_queries)
        return index

    @property
    def source_dir(self) -> Path | None:
        """The directory this index was opened from (None when built in memory)."""
        return self._source_dir

    @property
    def is_trained(self) -> bool:
        return self.vectors.is_trained

    def train(self, sample: np.ndarray, *, seed: int = 0) -> ThreadIndex:
        """Fit the coarse quantiser (and SQ/PQ codes) of an IVF index on ``sample``."""
        self.vectors.train(normalise(sample, self.dim), seed=seed)
        return self

    def _writable(self, *, vectors: bool = True) -> None:
        """Copy a memory-mapped, read-only index (unless ``vectors`` is false) and its metadata
        into RAM before changing them."""
        if self._source_dir is None:
            return
        if vectors:
            self.vectors.writable(self._source_dir / INDEX_FILE)
        self.meta_store.writable()

    def add(self, vectors: np.ndarray, metas: Sequence[ThreadMeta]) -> list[int]:
        """Append threads; returns their row ids."""
        array = normalise(vectors, self.dim)
        if len(array) != len(metas):
            raise ThreadIndexError(f"{len(array)} vectors but {len(metas)} metadata rows")
        with self._lock:
            if not self.is_trained:
                raise ThreadIndexError("this IVF index is not trained yet (call train first)")
            self._writable()
            ids = np.arange(self._next_id, self._next_id + len(array), dtype=np.int64)
            self.vectors.add(array, ids)
            rows = ids.tolist()
            self.meta_store.add(rows, metas)
            self._next_id += len(array)
            self._filters.clear()
        return rows

    def remove(self, rows: Iterable[int]) -> int:
        """Delete threads by row id (see :meth:`rows_of`); returns how many were removed.

        An HNSW graph keeps the nodes as tombstones that searches skip, and is compacted once
        they pass :data:`~indexes.vectors.TOMBSTONE_SHARE_MAX` of it; a re-added thread gets a
        new row id."""
        wanted = np.asarray(sorted(set(int(r) for r in rows)), dtype=np.int64)
        if len(wanted) == 0:
            return 0
        with self._lock:
            hnsw = self.spec.is_hnsw
            self._writable(vectors=not hnsw)
            present = self.meta_store.delete(wanted.tolist(), tombstone=hnsw)
            removed = self.vectors.remove(wanted, present)
            self._filters.clear()
            if self.vectors.needs_compaction():
                self.compact()
        return removed

    @property
    def tombstones(self) -> int:
        """How many removed threads an HNSW graph still holds (searches skip them)."""
        return len(self.vectors.tombstones)

    def compact(self, *, chunk: int = 100_000) -> int:
        """Rebuild an HNSW graph without its tombstones (row ids stay); returns how many went.
        Searches wait meanwhile (minutes at 1M on 2 cores)."""
        with self._lock:
            if not self.tombstones:
                return 0
            gone = self.vectors.compact(chunk=chunk)
            self._writable(vectors=False)
            self.meta_store.clear_tombstones()
            self._filters.clear()
        return gone

    def rows_of(self, post_ids: Iterable[str]) -> list[int]:
        """Row ids of the threads with these post ids (to :meth:`remove` them)."""
        with self._lock:
            return self.meta_store.rows_of([str(p) for p in post_ids])

    def __len__(self) -> int:
        """How many threads the index holds (an HNSW graph's tombstones not counted)."""
        return len(self.vectors)

    def tune(self, vectors: np.ndarray, *, target_recall: float = 0.95, k: int = 10,
             n_queries: int = 200, seed: int = 0, queries: np.ndarray | None = None) -> int:
        """See :meth:`VectorIndex.tune`."""
        with self._lock:
            return self.vectors.tune(vectors, target_recall=target_recall, k=k,
                                     n_queries=n_queries, seed=seed, queries=queries)

    # --- searching ---------------------------------------------------------------------
    def _filter(self, tags: Iterable[str]) -> tuple[Any, int]:
        """A selector of the rows having any of ``tags``, and how many there are; cached."""
        key = frozenset(tags)
        cached = self._filters.get(key)
        if cached is not None:
            self._filters.move_to_end(key)
            return cached[0], cached[2]
        mask = self.meta_store.tag_mask(sorted(key), self._next_id)
        count = int(mask.sum())
        selector, bitmap = bitmap_selector(mask)
        self._filters[key] = (selector, bitmap, count)
        while len(self._filters) > FILTER_CACHE:
            self._filters.popitem(last=False)
        return selector, count

    def search_rows(self, query_vectors: np.ndarray, k: int = 10,
                    filter: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row ids (``-1`` past the end) of the ``k`` nearest threads of each query,
        without reading metadata: the fast path for batches."""
        queries = normalise(query_vectors, self.dim)
        with self._lock:
            allowed = self._filter(filter) if filter is not None else None
            return self.vectors.search(queries, max(1, min(k, max(len(self), 1))),
                                       allowed=allowed)

    def search(self, query_vectors: np.ndarray, k: int = 10,
               filter: Iterable[str] | None = None) -> list[list[Hit]]:
        """The ``k`` nearest threads of each query; ``filter`` keeps threads with any of the
        tags."""
        queries = normalise(query_vectors, self.dim)
        with self._lock:
            if len(self) == 0:
                return [[] for _ in range(len(queries))]
            allowed = self._filter(filter) if filter is not None else None
            scores, rows = self.vectors.search(queries, min(k, len(self)), allowed=allowed)
            metas = self.meta_store.metas([int(r) for r in np.unique(rows) if r >= 0])
        return [[Hit(int(row), float(score), metas[int(row)])
                 for score, row in zip(score_row, row_ids, strict=True) if row >= 0]
                for score_row, row_ids in zip(scores, rows, strict=True)]

    def metas(self, rows: Sequence[int]) -> dict[int, ThreadMeta]:
        """Metadata of these rows (those that exist)."""
        with self._lock:
            return self.meta_store.metas(rows)

    # --- persistence -------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What ``info.json`` says of this index (without the checksums)."""
        return {
            "dim": self.dim, "model_name": self.model_name,
            "model_version": self.model_version, "count": len(self), "next_id": self._next_id,
            "tombstones": self.tombstones,
            "type": self.spec.kind, "spec": asdict(self.spec),
            "factory": self.spec.factory(self.dim), "nprobe": self.nprobe,
            "ef_search": self.ef_search,
            "tuned_recall_at_10": self.tuned_recall,
            "recommended_type": choose_spec(len(self), self.dim).kind,
        }

    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (see :mod:`indexes.persistence`)."""
        with self._lock:
            save_files(directory, self.vectors.write, self.meta_store.write, self.info())

    @staticmethod
    def read_info(directory: Path) -> dict[str, Any]:
        """The ``info.json`` of a saved index, or a :class:`ThreadIndexError`."""
        return read_info(directory)

    @classmethod
    def open(cls, directory: Path, model_name: str | None = None, *,
             model_version: str | None = None, mmap: bool = True,
             verify: bool = True) -> ThreadIndex:
        """Load a saved index (or the live version of an :class:`~indexes.store.IndexStore`
        root); ``model_name`` and ``model_version`` (if given) must match those it was built
        with, and (with ``verify``) its files their sha256 in ``info.json``."""
        directory, info = checked_info(directory, model_name, model_version, verify)
        index = cls(int(info["dim"]), info["model_name"], spec=IndexSpec(**info["spec"]),
                    model_version=info.get("model_version", ""))
        index.vectors.read(directory / INDEX_FILE, mmap=mmap)
        tombstones = int(info.get("tombstones", 0))
        if (int(index.vectors.faiss.d) != index.dim
                or index.vectors.ntotal != int(info["count"]) + tombstones):
            raise DamagedIndexError(f"{directory / INDEX_FILE} does not match info.json")
        index._next_id = int(info["next_id"])
        index.nprobe = int(info.get("nprobe", 1))
        index.ef_search = int(info.get("ef_search", 16))
        index.vectors.tuned_recall = info.get("tuned_recall_at_10")
        index.meta_store.close()
        index.meta_store = MetadataStore.open_published(directory / META_FILE)
        index.vectors.tombstones = index.meta_store.tombstones()
        if len(index.vectors.tombstones) != tombstones:
            raise DamagedIndexError(f"{directory / META_FILE} has "
                                   f"{len(index.vectors.tombstones)} tombstones, info.json says "
                                   f"{tombstones}")
        index._source_dir = directory
        return index

    def close(self) -> None:
        """Release the metadata connection (the FAISS index goes with the object)."""
        self.meta_store.close()
