"""The FAISS side of a thread index: :class:`VectorIndex` holds unit-length vectors by row id.

The index type follows the corpus size (:func:`choose_spec`, the thresholds are written down in
``docs/benchmarks/indexes.md``):

* ``flat``: exact ``IndexFlatIP`` below :data:`FLAT_MAX` vectors;
* ``hnsw-sq8``: ``HNSW32,SQ8``, a graph over SQ8 codes, below :data:`HNSW_MAX`;
* ``ivf-sq8``: ``IVF{nlist}_HNSW32,SQ8`` (1 byte per dimension) up to :data:`SQ8_MAX`;
* ``ivf-pq``: ``IVF{nlist}_HNSW32,PQ{dim/4}`` (a byte per 4 dims) above it.

Vectors are L2-normalised, so inner product is cosine. IVF indexes carry an ``nprobe``, HNSW
ones an ``ef_search``, tuned by :meth:`VectorIndex.tune` to reach a target recall@10 against
exact search. An HNSW graph cannot delete nodes, so :meth:`VectorIndex.remove` leaves
*tombstones* there that every search skips (an ``IDSelectorNot`` over a bitmap of them), until
:meth:`VectorIndex.compact` rebuilds the graph without them. The vectors know nothing of
threads: which row is which thread is the metadata store's business.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexes.errors import DamagedIndexError, ThreadIndexError

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
#: An HNSW graph is rebuilt without its removed nodes (:meth:`VectorIndex.compact`) once they
#: are this share of it: every search walks past them and widens ``efSearch`` to make up.
TOMBSTONE_SHARE_MAX = 0.2
#: Batches up to this size search on one OpenMP thread: a single query gains nothing from a
#: second thread, and on a busy machine its spin-waits cost 5-10x in latency (measured).
SINGLE_THREAD_QUERIES = 8


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

def bitmap_selector(mask: np.ndarray) -> tuple[Any, np.ndarray]:
    """A FAISS ``IDSelectorBitmap`` of the rows where ``mask`` is true, and the bitmap it points
    at (keep both alive together: the selector holds a raw pointer)."""
    import faiss

    bitmap = np.packbits(mask, bitorder="little")  # IDSelectorBitmap's n counts bytes
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap


class VectorIndex:
    """Unit-length vectors keyed by row id in one FAISS index of the kind ``spec`` names.

    Not thread-safe on its own: :class:`~indexes.thread_index.ThreadIndex` serialises access.
    """

    def __init__(self, dim: int, spec: IndexSpec | None = None) -> None:
        self.dim = dim
        self.spec = spec or IndexSpec("flat")
        self.nprobe = 1
        self.ef_search = 16
        self.tuned_recall: float | None = None
        self.faiss: Any = self._new_faiss_index()
        #: True while ``faiss`` is a read-only memory map of a saved file.
        self.mapped = False
        #: Removed row ids still in an HNSW graph (sorted).
        self.tombstones = np.zeros(0, dtype=np.int64)
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

    @property
    def is_trained(self) -> bool:
        return bool(self.faiss.is_trained)

    @property
    def ntotal(self) -> int:
        """Vectors in the FAISS index, an HNSW graph's tombstones included."""
        return int(self.faiss.ntotal)

    def __len__(self) -> int:
        return self.ntotal - len(self.tombstones)

    # --- building ----------------------------------------------------------------------
    def train(self, sample: np.ndarray, *, seed: int = 0) -> None:
        """Fit the coarse quantiser (and SQ/PQ codes) of an IVF index, or the SQ ranges of an
        HNSW one, on ``sample`` (unit-length rows)."""
        import faiss

        if self.spec.is_hnsw:
            self.faiss.train(sample)
            return
        if not self.spec.is_ivf:
            return
        if len(sample) < self.spec.nlist:
            raise ThreadIndexError(
                f"{len(sample)} training vectors for {self.spec.nlist} lists; need at least as "
                "many"
            )
        ivf = faiss.extract_index_ivf(self.faiss)
        ivf.cp.seed = seed
        ivf.cp.niter = 10
        ivf.cp.max_points_per_centroid = max(1, math.ceil(len(sample) / self.spec.nlist))
        faiss.omp_set_num_threads(min(2, os.cpu_count() or 1))
        self.faiss.train(sample)

    def writable(self, source: Path | None) -> None:
        """Read a memory-mapped index into RAM (from ``source``) before changing it."""
        import faiss

        if self.mapped and source is not None:
            self.faiss = faiss.read_index(str(source))
            self.mapped = False

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if not self.is_trained:
            raise ThreadIndexError("this IVF index is not trained yet (call train first)")
        self.faiss.add_with_ids(vectors, ids)

    def remove(self, wanted: np.ndarray, present: Sequence[int]) -> int:
        """Remove the rows ``wanted`` (of which ``present`` exist); an HNSW graph keeps them as
        tombstones. Returns how many went."""
        import faiss

        if not self.spec.is_hnsw:
            return int(self.faiss.remove_ids(faiss.IDSelectorBatch(wanted)))
        if present:
            self.tombstones = np.union1d(self.tombstones, np.asarray(present, dtype=np.int64))
            self._alive = None
        return len(present)

    def needs_compaction(self) -> bool:
        return len(self.tombstones) > TOMBSTONE_SHARE_MAX * self.ntotal

    def compact(self, *, chunk: int = 100_000) -> int:
        """Rebuild an HNSW graph without its tombstones (row ids stay); returns how many went.

        The kept vectors are decoded from their SQ8 codes and re-added with the same trained
        ranges, so they keep their codes: the graph is the one a build over the remaining
        threads with those ranges gives. Minutes at 1M on 2 cores."""
        import faiss

        if not len(self.tombstones):
            return 0
        old = self.faiss
        ids = faiss.vector_to_array(old.id_map).astype(np.int64)
        keep = ~np.isin(ids, self.tombstones)
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
        gone = len(self.tombstones)
        self.faiss, self.mapped = fresh, False
        self.tombstones = np.zeros(0, dtype=np.int64)
        self._alive = None
        return gone

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
            found = self.search(queries, k + 1, breadth=breadth)[1]
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
    def _not_removed(self) -> Any:
        """An ``IDSelectorNot`` over a bitmap of the tombstones: what an HNSW search may return
        (ids past the bitmap, added later, are allowed)."""
        import faiss

        if self._alive is None:
            mask = np.zeros(int(self.tombstones[-1]) + 1, dtype=bool)
            mask[self.tombstones] = True
            removed, bitmap = bitmap_selector(mask)
            # the selectors hold raw pointers: keep what they point at alive with them
            self._alive = (faiss.IDSelectorNot(removed), removed, bitmap)
        return self._alive[0]

    def search(self, queries: np.ndarray, k: int, *, breadth: int | None = None,
               allowed: tuple[Any, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row ids (``-1`` past the end) of the ``k`` nearest rows of each query.

        ``breadth`` overrides ``nprobe``/``ef_search`` (for tuning); ``allowed`` is a selector of
        the rows a search may return, with their count (a tag filter), which widens the search
        in proportion."""
        import faiss

        total = self.ntotal
        if allowed is not None:  # removed threads are never in a filter: no tombstone here
            selector, count = allowed
        elif len(self.tombstones):
            selector, count = self._not_removed(), len(self)
        else:
            selector, count = None, total
        if count == 0:
            return (np.full((len(queries), k), -np.inf, np.float32),
                    np.full((len(queries), k), -1, np.int64))
        params: Any
        if self.spec.is_hnsw:
            ef = breadth or self.ef_search
            if allowed is not None:  # as for IVF below: fewer allowed nodes, wider search
                ef = min(ef * math.ceil(total / max(count, 1)), 4096)
            elif selector is not None:  # tombstones: widen by the share of the graph left
                ef = min(math.ceil(ef * total / max(count, 1)), 4096)
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = max(ef, k)
            if selector is not None:
                params.sel = selector
        elif self.spec.is_ivf:
            probe = breadth or self.nprobe
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
            scores, rows = self.faiss.search(queries, k, params=params)
            return scores, rows
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, rows = self.faiss.search(queries, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        return scores, rows

    # --- files -------------------------------------------------------------------------
    def write(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.faiss, str(path))

    def read(self, path: Path, *, mmap: bool) -> None:
        """Replace the FAISS index with the one saved at ``path`` (memory-mapped, read-only)."""
        import faiss

        flags = 0
        if mmap:
            flags = (faiss.IO_FLAG_MMAP if self.spec.is_ivf else faiss.IO_FLAG_MMAP_IFC)
            flags |= faiss.IO_FLAG_READ_ONLY
        try:
            self.faiss = faiss.read_index(str(path), flags)
        except RuntimeError as error:
            raise DamagedIndexError(f"cannot read {path}: {error}") from error
        self.mapped = mmap


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
