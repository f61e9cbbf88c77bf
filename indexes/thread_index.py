"""The :class:`ThreadIndex`: FAISS vectors plus thread metadata in SQLite.

The index type follows the corpus size (:func:`choose_spec`, the thresholds are written down in
``docs/benchmarks/indexes.md``):

* ``flat``: exact ``IndexFlatIP`` below :data:`FLAT_MAX` vectors;
* ``hnsw-sq8``: ``HNSW32,SQ8``, a graph over SQ8 codes, below :data:`HNSW_MAX`;
* ``ivf-sq8``: ``IVF{nlist}_HNSW32,SQ8`` (1 byte per dimension) up to :data:`SQ8_MAX`;
* ``ivf-pq``: ``IVF{nlist}_HNSW32,PQ{dim/4}`` (a byte per 4 dims) above it.

Vectors are L2-normalised, so inner product is cosine. IVF indexes carry an ``nprobe``, HNSW
ones an ``ef_search``, tuned by :meth:`ThreadIndex.tune` to reach a target recall@10 against
exact search (on held-out queries when the builder has them). Metadata (post id,
title, tags, source) lives in SQLite beside the vectors, never in pickles, and is read per hit, so
an index of millions of threads does not hold its titles in RAM. Saved indexes open
memory-mapped and read-only, so several bot processes share the pages.

An HNSW graph cannot delete nodes, so :meth:`ThreadIndex.remove` leaves *tombstones* there: the
thread's metadata goes, its FAISS id is kept in the ``tombstones`` table of ``meta.sqlite3`` and
every search skips it (an ``IDSelectorNot`` over a bitmap of them). Once they pass
:data:`TOMBSTONE_SHARE_MAX` of the graph, :meth:`ThreadIndex.compact` rebuilds it without them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Below this many vectors an exact scan is fast enough. The faiss-cpu wheel we install has no
#: AVX2 build, so a single-query scan of 100k x 384 takes ~12 ms (numpy's BLAS: ~4 ms); at 20k it
#: is ~1.3 ms, and IVF-SQ8 above that answers in under a millisecond.
FLAT_MAX = 20_000
#: Below this many vectors an HNSW graph over SQ8 codes: this faiss-cpu wheel scans SQ8 codes
#: without SIMD (~180 ns a code), so IVF-SQ8 at 1M needed nprobe 22 (11k codes, 1.9 ms CPU) for
#: recall@10 0.95 on held-out real titles, only 29x numpy; the graph visits ~1-2k codes. Above
#: it the graph (~260 B a vector, read into RAM, not memory-mapped) and its build time grow
#: too large, and IVF's memory-mapped lists win.
HNSW_MAX = 2_000_000
#: Links per node of the HNSW graph (FAISS's usual 32).
HNSW_M = 32
#: Candidates kept while linking a new node into the graph (FAISS's default is 40). At 1M real-
#: like vectors, 200 reaches at ef_search 96 the recall 40 reaches at 192 (about twice the
#: queries a second, no extra memory) for twice the build time.
HNSW_EF_CONSTRUCTION = 200
#: Tuning aims this much above the target recall: a few hundred tuning queries estimate recall
#: to about +-0.01, and the target should hold on the queries that come later.
TUNE_MARGIN = 0.01
#: Up to this many vectors SQ8 codes (dim bytes per vector) fit one machine's RAM comfortably;
#: above it product quantisation (dim/4 bytes) keeps 24M threads near 2.5 GB.
SQ8_MAX = 20_000_000
#: Version of the on-disk layout; bumped when files or tables change (3: the ``tombstones``
#: table, which an older reader would ignore and then fail on hits without metadata).
FORMAT_VERSION = 3
#: Layouts this version opens: format 2 is format 3 without tombstones.
READABLE_FORMATS = (2, 3)
#: An HNSW graph is rebuilt without its removed nodes (:meth:`ThreadIndex.compact`) once they
#: are this share of it: every search walks past them and widens ``efSearch`` to make up.
TOMBSTONE_SHARE_MAX = 0.2
INDEX_FILE = "index.faiss"
META_FILE = "meta.sqlite3"
INFO_FILE = "info.json"
#: Batches up to this size search on one OpenMP thread: a single query gains nothing from a
#: second thread, and on a busy machine its spin-waits cost 5-10x in latency (measured).
SINGLE_THREAD_QUERIES = 8


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


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index holds the vectors: ``kind`` is flat, hnsw-sq8, ivf-sq8 or ivf-pq."""

    kind: str = "flat"
    nlist: int = 0
    pq_m: int = 0
    hnsw_m: int = 0
    hnsw_ef_construction: int = 0  # 0: FAISS's default

    def factory(self, dim: int) -> str:
        """The ``faiss.index_factory`` string of this spec."""
        if self.kind == "hnsw-sq8":
            return f"HNSW{self.hnsw_m},SQ8"
        quantizer = f"IVF{self.nlist}_HNSW32" if self.nlist >= 1024 else f"IVF{self.nlist}"
        if self.kind == "ivf-sq8":
            return f"{quantizer},SQ8"
        if self.kind == "ivf-pq":
            return f"{quantizer},PQ{self.pq_m}x8"
        return "Flat"

    @property
    def is_ivf(self) -> bool:
        return self.kind.startswith("ivf")

    @property
    def is_hnsw(self) -> bool:
        return self.kind.startswith("hnsw")

    @property
    def needs_training(self) -> bool:
        """IVF (centroids, codes) and HNSW-SQ8 (code ranges) indexes train on a sample."""
        return self.is_ivf or self.is_hnsw

    def train_size(self) -> int:
        """How many vectors train the coarse quantiser: FAISS wants 30-256 per centroid; on a
        2-core machine we take 16 (k-means cost grows with it, recall barely does once nprobe is
        tuned), and PQ codebooks want at least 64k."""
        return max(16 * self.nlist, 65_536 if self.kind in ("ivf-pq", "hnsw-sq8") else 0)


def choose_spec(n: int, dim: int, kind: str | None = None) -> IndexSpec:
    """The index type for ``n`` vectors (after FAISS's guidelines: exact below 100k; IVF with
    compressed codes above. FAISS suggests ``nlist`` of 4-16*sqrt(n); we take 2*sqrt(n) as a
    power of two, since k-means on a 2-core machine is the slow part of a build and the tuned
    ``nprobe`` makes up the recall)."""
    if kind is None:
        kind = ("flat" if n < FLAT_MAX else "hnsw-sq8" if n < HNSW_MAX
                else "ivf-sq8" if n < SQ8_MAX else "ivf-pq")
    if kind == "flat":
        return IndexSpec("flat")
    if kind == "hnsw-sq8":
        return IndexSpec("hnsw-sq8", hnsw_m=HNSW_M, hnsw_ef_construction=HNSW_EF_CONSTRUCTION)
    if kind not in ("ivf-sq8", "ivf-pq"):
        raise ThreadIndexError(
            f"unknown index kind {kind!r} (flat, hnsw-sq8, ivf-sq8 or ivf-pq)")
    nlist = 2 ** round(math.log2(max(2 * math.sqrt(max(n, 1)), 16)))
    nlist = int(min(max(nlist, 16), 65_536, max(16, n // 39)))
    # PQ with 4 dims per byte: PQ96 for 384-d (104 bytes a vector with its id); dim/8 codes
    # lost too much recall@10 on MiniLM titles (0.75 at nprobe = nlist, 4.5k real titles).
    pq_m = (dim // 4 if dim % 4 == 0 else dim) if kind == "ivf-pq" else 0
    return IndexSpec(kind, nlist, pq_m)


def normalise(vectors: np.ndarray, dim: int) -> np.ndarray:
    """``vectors`` as C-contiguous float32 rows of unit length; a clear error when they are not
    ``dim`` wide, or hold NaN or infinite values."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ThreadIndexError(
            f"vectors have shape {array.shape}, but this index holds {dim}-d vectors"
        )
    if not np.isfinite(array).all():
        raise ThreadIndexError("vectors contain NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # an all-zero row stays zero: similar to nothing
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS threads (row INTEGER PRIMARY KEY, post_id TEXT, title TEXT,"
    " tags TEXT, source TEXT)",
    "CREATE TABLE IF NOT EXISTS thread_tags (tag TEXT NOT NULL, row INTEGER NOT NULL,"
    " PRIMARY KEY (tag, row)) WITHOUT ROWID",
    # FAISS ids of removed threads still in an HNSW graph (no metadata rows any more)
    "CREATE TABLE IF NOT EXISTS tombstones (row INTEGER PRIMARY KEY)",
)


def _meta_from_row(post_id: str | None, title: str, tags: str, source: str) -> ThreadMeta:
    return ThreadMeta(post_id or None, title, tuple(t for t in tags.split("|") if t), source)


class ThreadIndex:
    """Vectors of thread titles with their metadata; searchable by cosine similarity.

    ``ThreadIndex(dim, model_name)`` is an empty exact index (``meta_path``: keep its metadata in
    that SQLite file rather than in RAM); :meth:`build` picks the type by
    size; :meth:`open` loads a saved one (memory-mapped and read-only unless ``mmap=False``; the
    first :meth:`add` or :meth:`remove` then copies it into RAM: for an HNSW index :meth:`remove`
    copies only the metadata). Searching is thread-safe.
    """

    def __init__(self, dim: int, model_name: str, *, spec: IndexSpec | None = None,
                 model_version: str = "", meta_path: Path | None = None) -> None:
        self.dim = dim
        self.model_name = model_name
        self.model_version = model_version
        self.spec = spec or IndexSpec("flat")
        self.nprobe = 1
        self.ef_search = 16
        self.tuned_recall: float | None = None
        self._index: Any = self._new_faiss_index()
        # Metadata lives in RAM unless ``meta_path`` names a file (large builds stream into one).
        self._db = sqlite3.connect(str(meta_path) if meta_path else ":memory:",
                                   check_same_thread=False)
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._next_id = 0
        self._lock = threading.RLock()
        self._source_dir: Path | None = None
        self._mapped = False  # the FAISS index is the read-only, memory-mapped file
        self._db_mapped = False  # so is the metadata
        self._filters: OrderedDict[frozenset[str], tuple[Any, Any, int]] = OrderedDict()
        # Removed ids still in an HNSW graph (sorted), and the selector that skips them.
        self._tombstones = np.zeros(0, dtype=np.int64)
        self._alive: tuple[Any, ...] | None = None

    def _new_faiss_index(self) -> Any:
        import faiss

        if self.spec.kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if self.spec.is_hnsw:  # the graph has no ids of its own
            graph: Any = faiss.index_factory(self.dim, self.spec.factory(self.dim),
                                             faiss.METRIC_INNER_PRODUCT)
            if self.spec.hnsw_ef_construction:
                graph.hnsw.efConstruction = self.spec.hnsw_ef_construction
            return faiss.IndexIDMap2(graph)
        return faiss.index_factory(self.dim, self.spec.factory(self.dim),
                                   faiss.METRIC_INNER_PRODUCT)

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
        return bool(self._index.is_trained)

    def train(self, sample: np.ndarray, *, seed: int = 0) -> ThreadIndex:
        """Fit the coarse quantiser (and SQ/PQ codes) of an IVF index on ``sample``."""
        import faiss

        array = normalise(sample, self.dim)
        if self.spec.is_hnsw:
            self._index.train(array)
            return self
        if not self.spec.is_ivf:
            return self
        if len(array) < self.spec.nlist:
            raise ThreadIndexError(
                f"{len(array)} training vectors for {self.spec.nlist} lists; need at least as many"
            )
        ivf = faiss.extract_index_ivf(self._index)
        ivf.cp.seed = seed
        ivf.cp.niter = 10
        ivf.cp.max_points_per_centroid = max(1, math.ceil(len(array) / self.spec.nlist))
        faiss.omp_set_num_threads(min(2, os.cpu_count() or 1))
        self._index.train(array)
        return self

    def _ensure_writable(self, *, vectors: bool = True) -> None:
        """Copy a memory-mapped, read-only index (unless ``vectors`` is false) and its metadata
        into RAM before changing them."""
        import faiss

        if self._source_dir is None:
            return
        if vectors and self._mapped:
            self._index = faiss.read_index(str(self._source_dir / INDEX_FILE))
            self._mapped = False
        if self._db_mapped:
            memory = sqlite3.connect(":memory:", check_same_thread=False)
            self._db.backup(memory)
            self._db.close()
            self._db = memory
            for statement in _SCHEMA:  # a format-2 file has no tombstones table
                self._db.execute(statement)
            self._db_mapped = False

    def add(self, vectors: np.ndarray, metas: Sequence[ThreadMeta]) -> list[int]:
        """Append threads; returns their row ids."""
        array = normalise(vectors, self.dim)
        if len(array) != len(metas):
            raise ThreadIndexError(f"{len(array)} vectors but {len(metas)} metadata rows")
        with self._lock:
            if not self.is_trained:
                raise ThreadIndexError("this IVF index is not trained yet (call train first)")
            self._ensure_writable()
            ids = np.arange(self._next_id, self._next_id + len(array), dtype=np.int64)
            self._index.add_with_ids(array, ids)
            rows = ids.tolist()
            with self._db:
                self._db.executemany(
                    "INSERT INTO threads VALUES (?, ?, ?, ?, ?)",
                    [(row, m.post_id, m.title, "|".join(m.tags), m.source)
                     for row, m in zip(rows, metas, strict=True)],
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO thread_tags VALUES (?, ?)",
                    [(tag, row) for row, m in zip(rows, metas, strict=True) for tag in m.tags],
                )
            self._next_id += len(array)
            self._filters.clear()
        return rows

    def remove(self, rows: Iterable[int]) -> int:
        """Delete threads by row id (see :meth:`rows_of`); returns how many were removed.

        An HNSW graph keeps the nodes as tombstones that searches skip, and is compacted once
        they pass :data:`TOMBSTONE_SHARE_MAX` of it; a re-added thread gets a new row id."""
        wanted = np.asarray(sorted(set(int(r) for r in rows)), dtype=np.int64)
        if len(wanted) == 0:
            return 0
        import faiss

        with self._lock:
            self._ensure_writable(vectors=not self.spec.is_hnsw)
            present, pairs = [], []  # (tag, row): thread_tags' primary key, no scan per row
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500].tolist()
                marks = ",".join("?" * len(chunk))
                for row, tags in self._db.execute(
                        f"SELECT row, tags FROM threads WHERE row IN ({marks})", chunk):
                    present.append(int(row))
                    pairs += [(tag, row) for tag in tags.split("|") if tag]
            if self.spec.is_hnsw:
                removed = len(present)
            else:
                removed = int(self._index.remove_ids(faiss.IDSelectorBatch(wanted)))
            with self._db:
                self._db.executemany("DELETE FROM threads WHERE row = ?",
                                     [(r,) for r in wanted.tolist()])
                self._db.executemany("DELETE FROM thread_tags WHERE tag = ? AND row = ?", pairs)
                if self.spec.is_hnsw:
                    self._db.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)",
                                         [(r,) for r in present])
            if self.spec.is_hnsw and present:
                self._tombstones = np.union1d(self._tombstones,
                                              np.asarray(present, dtype=np.int64))
                self._alive = None
            self._filters.clear()
            if len(self._tombstones) > TOMBSTONE_SHARE_MAX * int(self._index.ntotal):
                self.compact()
        return removed

    @property
    def tombstones(self) -> int:
        """How many removed threads an HNSW graph still holds (searches skip them)."""
        return len(self._tombstones)

    def compact(self, *, chunk: int = 100_000) -> int:
        """Rebuild an HNSW graph without its tombstones (row ids stay); returns how many went.

        The kept vectors are decoded from their SQ8 codes and re-added with the same trained
        ranges, so they keep their codes: the graph is the one a build over the remaining
        threads with those ranges gives. Searches wait meanwhile (minutes at 1M on 2 cores)."""
        import faiss

        with self._lock:
            if not len(self._tombstones):
                return 0
            old = self._index
            ids = faiss.vector_to_array(old.id_map).astype(np.int64)
            keep = ~np.isin(ids, self._tombstones)
            old_graph: Any = faiss.downcast_index(old.index)  # IndexHNSWSQ
            old_codes: Any = faiss.downcast_index(old_graph.storage)
            fresh = self._new_faiss_index()
            graph: Any = faiss.downcast_index(fresh.index)
            codes: Any = faiss.downcast_index(graph.storage)
            faiss.copy_array_to_vector(faiss.vector_to_array(old_codes.sq.trained),
                                       codes.sq.trained)
            codes.is_trained = graph.is_trained = fresh.is_trained = True
            graph.hnsw.efConstruction = old_graph.hnsw.efConstruction
            for start in range(0, len(ids), chunk):
                stop = min(start + chunk, len(ids))
                mask = keep[start:stop]
                if mask.any():
                    decoded = old_graph.reconstruct_n(start, stop - start)
                    fresh.add_with_ids(np.ascontiguousarray(decoded[mask]),
                                       np.ascontiguousarray(ids[start:stop][mask]))
            self._ensure_writable(vectors=False)
            with self._db:
                self._db.execute("DELETE FROM tombstones")
            gone = len(self._tombstones)
            self._index, self._mapped = fresh, False
            self._tombstones = np.zeros(0, dtype=np.int64)
            self._alive = None
            self._filters.clear()
        return gone

    def rows_of(self, post_ids: Iterable[str]) -> list[int]:
        """Row ids of the threads with these post ids (to :meth:`remove` them)."""
        ids = [str(p) for p in post_ids]
        rows: list[int] = []
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows += [int(r) for (r,) in self._db.execute(
                    f"SELECT row FROM threads WHERE post_id IN ({marks})", chunk)]
        return sorted(rows)

    def __len__(self) -> int:
        """How many threads the index holds (an HNSW graph's tombstones not counted)."""
        return int(self._index.ntotal) - len(self._tombstones)

    # --- tuning ------------------------------------------------------------------------
    def tune(self, vectors: np.ndarray, *, target_recall: float = 0.95, k: int = 10,
             n_queries: int = 200, seed: int = 0, queries: np.ndarray | None = None) -> int:
        """Pick the smallest ``nprobe`` (``ef_search`` for HNSW) whose recall@k against exact
        search reaches ``target_recall`` + :data:`TUNE_MARGIN`; if none does, the smallest
        within 0.005 of the best recall seen. ``vectors`` are the indexed vectors (row ``i`` of
        the index is ``vectors[i]``; may be memory-mapped). The queries are ``queries`` when
        given: vectors *not* in the index, distributed like the real queries (e.g. held-out
        titles), which is what the recall should hold for; else ``n_queries`` indexed rows, each
        one's own row left out."""
        if not self.spec.needs_training:
            return 1
        n = len(vectors)
        if queries is not None and len(queries) > 0:
            queries = normalise(queries, self.dim)
            picks = np.full(len(queries), -1, dtype=np.int64)  # no own row to leave out
        else:
            rng = np.random.default_rng(seed + 1)
            picks = np.sort(rng.choice(n, min(n_queries, n), replace=False))
            queries = normalise(np.asarray(vectors[picks]), self.dim)
        exact = exact_topk(vectors, queries, k + 1)
        truth = [[int(r) for r in row if r != own][:k]
                 for row, own in zip(exact, picks, strict=True)]
        if self.spec.is_hnsw:  # efSearch on a sqrt(2) ladder, 16 to 1024
            candidates = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
        else:
            nlist = self.spec.nlist
            candidates = sorted({min(nlist, 2 ** i) for i in range(int(math.log2(nlist)) + 1)}
                                | {min(nlist, int(2 ** (i + 0.5))) for i in range(1, 16)})
        goal = min(target_recall + TUNE_MARGIN, 1.0)
        seen: list[tuple[int, float]] = []
        for breadth in candidates:
            found = self._search_rows(queries, k + 1, nprobe=breadth)[1]
            seen.append((breadth, recall_at_k(
                truth, [[int(r) for r in row if r != own][:k]
                        for row, own in zip(found, picks, strict=True)])))
            if seen[-1][1] >= goal:
                break
        if seen[-1][1] < goal:  # out of reach: the cheapest breadth near the best there is
            goal = max(got for _, got in seen) - 0.005
        chosen, recall = next((b, got) for b, got in seen if got >= goal)
        if self.spec.is_hnsw:
            self.ef_search = chosen
        else:
            self.nprobe = chosen
        self.tuned_recall = recall
        return chosen

    # --- searching ---------------------------------------------------------------------
    def _filter(self, tags: Iterable[str]) -> tuple[Any, int]:
        """An ``IDSelectorBitmap`` of the rows having any of ``tags`` and how many there are;
        cached, since bot workers ask for the same few tags over and over."""
        import faiss

        key = frozenset(tags)
        cached = self._filters.get(key)
        if cached is not None:
            self._filters.move_to_end(key)
            return cached[0], cached[2]
        wanted = sorted(key)
        mask = np.zeros(max(self._next_id, 1), dtype=bool)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = np.fromiter((r for (r,) in self._db.execute(
                f"SELECT row FROM thread_tags WHERE tag IN ({marks})", chunk)), dtype=np.int64)
            mask[rows] = True
        count = int(mask.sum())
        bitmap = np.packbits(mask, bitorder="little")  # IDSelectorBitmap's n counts bytes
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        self._filters[key] = (selector, bitmap, count)
        while len(self._filters) > 64:
            self._filters.popitem(last=False)
        return selector, count

    def _not_removed(self) -> Any:
        """An ``IDSelectorNot`` over a bitmap of the tombstones: what an HNSW search may return
        (ids past the bitmap, added later, are allowed)."""
        import faiss

        if self._alive is None:
            mask = np.zeros(int(self._tombstones[-1]) + 1, dtype=bool)
            mask[self._tombstones] = True
            bitmap = np.packbits(mask, bitorder="little")
            removed = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            # the selectors hold raw pointers: keep what they point at alive with them
            self._alive = (faiss.IDSelectorNot(removed), removed, bitmap)
        return self._alive[0]

    def _search_rows(self, queries: np.ndarray, k: int, *, nprobe: int | None = None,
                     filter: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        total = int(self._index.ntotal)  # an HNSW graph's tombstones included
        if filter is not None:  # removed threads have no thread_tags rows: no tombstone here
            selector, count = self._filter(filter)
        elif len(self._tombstones):
            selector, count = self._not_removed(), len(self)
        else:
            selector, count = None, total
        if count == 0:
            return (np.full((len(queries), k), -np.inf, np.float32),
                    np.full((len(queries), k), -1, np.int64))
        params: Any
        if self.spec.is_hnsw:
            ef = nprobe or self.ef_search  # ``nprobe`` here: the search breadth being tuned
            if filter is not None:  # as for IVF below: fewer allowed nodes, wider search
                ef = min(ef * math.ceil(total / max(count, 1)), 4096)
            elif selector is not None:  # tombstones: widen by the share of the graph left
                ef = min(math.ceil(ef * total / max(count, 1)), 4096)
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(ef, k)
            if selector is not None:
                params.sel = selector
        elif self.spec.is_ivf:
            probe = nprobe or self.nprobe
            # A selective filter leaves few members in each probed list: probe more lists,
            # in proportion, so the k nearest allowed threads are still among those scanned.
            if selector is not None:
                probe = math.ceil(probe * total / max(count, 1))
            params = faiss.SearchParametersIVF()
            params.nprobe = min(probe, self.spec.nlist)
            if selector is not None:
                params.sel = selector
        else:
            params = None
            if selector is not None:
                params = faiss.SearchParameters()
                params.sel = selector
        if len(queries) > SINGLE_THREAD_QUERIES:
            scores, rows = self._index.search(queries, k, params=params)
            return scores, rows
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, rows = self._index.search(queries, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        return scores, rows

    def search_rows(self, query_vectors: np.ndarray, k: int = 10,
                    filter: Iterable[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row ids (``-1`` past the end) of the ``k`` nearest threads of each query,
        without reading metadata: the fast path for batches."""
        queries = normalise(query_vectors, self.dim)
        with self._lock:
            return self._search_rows(queries, max(1, min(k, max(len(self), 1))), filter=filter)

    def search(self, query_vectors: np.ndarray, k: int = 10,
               filter: Iterable[str] | None = None) -> list[list[Hit]]:
        """The ``k`` nearest threads of each query; ``filter`` keeps threads with any of the
        tags."""
        queries = normalise(query_vectors, self.dim)
        with self._lock:
            if len(self) == 0:
                return [[] for _ in range(len(queries))]
            scores, rows = self._search_rows(queries, min(k, len(self)), filter=filter)
            metas = self.metas([int(r) for r in np.unique(rows) if r >= 0])
        return [[Hit(int(row), float(score), metas[int(row)])
                 for score, row in zip(score_row, row_ids, strict=True) if row >= 0]
                for score_row, row_ids in zip(scores, rows, strict=True)]

    def metas(self, rows: Sequence[int]) -> dict[int, ThreadMeta]:
        """Metadata of these rows (those that exist)."""
        out: dict[int, ThreadMeta] = {}
        with self._lock:
            for start in range(0, len(rows), 500):
                chunk = list(rows[start:start + 500])
                marks = ",".join("?" * len(chunk))
                for row, post_id, title, tags, source in self._db.execute(
                        f"SELECT row, post_id, title, tags, source FROM threads"
                        f" WHERE row IN ({marks})", chunk):
                    out[int(row)] = _meta_from_row(post_id, title, tags, source)
        return out

    # --- persistence -------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What ``info.json`` says of this index (without the checksums)."""
        return {
            "format_version": FORMAT_VERSION, "dim": self.dim, "model_name": self.model_name,
            "model_version": self.model_version, "count": len(self), "next_id": self._next_id,
            "tombstones": len(self._tombstones),
            "type": self.spec.kind, "spec": asdict(self.spec),
            "factory": self.spec.factory(self.dim), "nprobe": self.nprobe,
            "ef_search": self.ef_search,
            "tuned_recall_at_10": self.tuned_recall,
            "recommended_type": choose_spec(len(self), self.dim).kind,
        }

    def save(self, directory: Path) -> None:
        """Write ``index.faiss``, ``meta.sqlite3`` and ``info.json`` (with sha256 checksums of the
        other two) into ``directory``; ``info.json`` is written last, so a directory with one
        holds a complete index."""
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        (directory / INFO_FILE).unlink(missing_ok=True)
        with self._lock:
            tmp_index = directory / (INDEX_FILE + ".tmp")
            faiss.write_index(self._index, str(tmp_index))
            os.replace(tmp_index, directory / INDEX_FILE)
            tmp_db = directory / (META_FILE + ".tmp")
            tmp_db.unlink(missing_ok=True)
            target = sqlite3.connect(tmp_db)
            self._db.backup(target)
            target.close()
            os.replace(tmp_db, directory / META_FILE)
            info = self.info()
        info["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info["files"] = {name: {"sha256": sha256_file(directory / name),
                                "bytes": (directory / name).stat().st_size}
                         for name in (INDEX_FILE, META_FILE)}
        tmp_info = directory / (INFO_FILE + ".tmp")
        tmp_info.write_text(json.dumps(info, indent=2))
        os.replace(tmp_info, directory / INFO_FILE)

    @staticmethod
    def read_info(directory: Path) -> dict[str, Any]:
        """The ``info.json`` of a saved index, or a :class:`ThreadIndexError`."""
        info_path = Path(directory) / INFO_FILE
        if not info_path.is_file():
            raise ThreadIndexError(f"no thread index in {directory} (no {INFO_FILE})")
        try:
            info: dict[str, Any] = json.loads(info_path.read_text())
        except (OSError, ValueError) as error:
            raise ThreadIndexError(f"{info_path} is not valid JSON: {error}") from error
        return info

    @classmethod
    def open(cls, directory: Path, model_name: str | None = None, *,
             model_version: str | None = None, mmap: bool = True,
             verify: bool = True) -> ThreadIndex:
        """Load a saved index (or the live version of an :class:`~indexes.store.IndexStore`
        root); ``model_name`` and ``model_version`` (if given) must match those it was built
        with, and (with ``verify``) its files their sha256 in ``info.json``."""
        import faiss

        directory = Path(directory)
        pointer = directory / "CURRENT"
        if not (directory / INFO_FILE).is_file() and pointer.is_file():
            # The root of an IndexStore: open its live version.
            directory = directory / "versions" / pointer.read_text().strip()
        info = cls.read_info(directory)
        if info.get("format_version") not in READABLE_FORMATS:
            raise ThreadIndexError(
                f"index in {directory} has format {info.get('format_version')!r}; this amlbot "
                f"reads formats {', '.join(map(str, READABLE_FORMATS))}: rebuild it with "
                f"`amlbot index build`"
            )
        if model_name is not None and info["model_name"] != model_name:
            raise ThreadIndexError(
                f"index in {directory} was built with {info['model_name']!r}, not {model_name!r}"
            )
        if model_version is not None and info.get("model_version", "") != model_version:
            raise ThreadIndexError(
                f"index in {directory} was built with {info['model_name']!r} version "
                f"{info.get('model_version')!r}, not {model_version!r}"
            )
        for name in (INDEX_FILE, META_FILE):
            path = directory / name
            expected = info.get("files", {}).get(name, {})
            if not path.is_file():
                raise ThreadIndexError(f"{path} is missing")
            if path.stat().st_size != expected.get("bytes"):
                raise ThreadIndexError(
                    f"{path} has {path.stat().st_size} bytes, info.json says "
                    f"{expected.get('bytes')}: the index is truncated or was overwritten"
                )
            if verify and sha256_file(path) != expected.get("sha256"):
                raise ThreadIndexError(f"{path} does not match its sha256 in info.json: corrupt")
        spec = IndexSpec(**info["spec"])
        index = cls(int(info["dim"]), info["model_name"], spec=spec,
                    model_version=info.get("model_version", ""))
        flags = 0
        if mmap:
            flags = (faiss.IO_FLAG_MMAP if spec.is_ivf else faiss.IO_FLAG_MMAP_IFC)
            flags |= faiss.IO_FLAG_READ_ONLY
        try:
            index._index = faiss.read_index(str(directory / INDEX_FILE), flags)
        except RuntimeError as error:
            raise ThreadIndexError(f"cannot read {directory / INDEX_FILE}: {error}") from error
        tombstones = int(info.get("tombstones", 0))
        if (int(index._index.d) != index.dim
                or int(index._index.ntotal) != int(info["count"]) + tombstones):
            raise ThreadIndexError(f"{directory / INDEX_FILE} does not match info.json")
        index._next_id = int(info["next_id"])
        index.nprobe = int(info.get("nprobe", 1))
        index.ef_search = int(info.get("ef_search", 16))
        index.tuned_recall = info.get("tuned_recall_at_10")
        index._db.close()
        db_path = (directory / META_FILE).resolve()
        # immutable=1: a published version never changes, so readers need no locks at all.
        index._db = sqlite3.connect(f"file:{db_path}?mode=ro&immutable=1", uri=True,
                                    check_same_thread=False)
        if index._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                             " AND name = 'tombstones'").fetchone():  # not in format 2
            index._tombstones = np.fromiter(
                (r for (r,) in index._db.execute("SELECT row FROM tombstones ORDER BY row")),
                dtype=np.int64)
        if len(index._tombstones) != tombstones:
            raise ThreadIndexError(f"{directory / META_FILE} has {len(index._tombstones)} "
                                   f"tombstones, info.json says {tombstones}")
        index._source_dir = directory
        index._mapped = index._db_mapped = True
        return index

    def close(self) -> None:
        """Release the metadata connection (the FAISS index goes with the object)."""
        self._db.close()


def exact_topk(vectors: Any, queries: np.ndarray, k: int, *,
               chunk: int = 200_000) -> np.ndarray:
    """Row ids of the exact ``k`` nearest (inner product) rows of ``vectors`` for each query,
    scanning ``vectors`` (an array or memory map) in chunks: numpy brute force."""
    n = len(vectors)
    k = min(k, n)
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, n, chunk):
        block = np.asarray(vectors[start:start + chunk], dtype=np.float32)
        scores = queries @ block.T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        part_scores = np.take_along_axis(scores, part, axis=1)
        all_scores = np.concatenate([best_scores, part_scores], axis=1)
        all_rows = np.concatenate([best_rows, part + start], axis=1)
        order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(all_scores, order, axis=1)
        best_rows = np.take_along_axis(all_rows, order, axis=1)
    return best_rows


def recall_at_k(truth: Sequence[Sequence[Any]], found: Sequence[Sequence[Any]]) -> float:
    """Mean share of the true neighbours that were found."""
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth, found, strict=True))
    total = sum(len(t) for t in truth)
    return hits / total if total else 1.0
