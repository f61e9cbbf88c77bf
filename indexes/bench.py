"""``amlbot bench index``: build time, memory, latency, throughput and recall of the thread index.

Vectors are real MiniLM embeddings of the registered titles, or (beyond the corpus size) synthetic
ones grown from them by :class:`indexes.synthetic.NeighbourhoodSampler`: random points among each
real title and its nearest real neighbours, plus noise shaped like the real covariance, with the
mixing and noise fitted so nearest-neighbour similarities look like the real corpus's (method in
``indexes/synthetic.py``). Real titles are split at random into the corpus (the sampler's seeds),
held-out *tuning* queries (``nprobe`` is tuned on them) and held-out *benchmark* queries (latency,
QPS, recall); on synthetic corpora recall is also reported for queries drawn like the corpus.
Search numbers come from a separate process that only opens the saved index (memory-mapped) and
searches, so its RSS is what a bot worker pays.

``synthetic_chunk`` and ``calibrate_noise`` are the earlier generator (a real vector plus
isotropic noise), kept for comparison: at 1M vectors it makes clumps of noisy copies.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from indexes.metadata import ThreadMeta
from indexes.synthetic import (
    NeighbourhoodSampler,
    calibrate_sampler,
    nearest_neighbours,
    nn_similarity_quantiles,
)
from indexes.thread_index import ThreadIndex
from indexes.vectors import exact_topk, normalise, recall_at_k

NOISE_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def _rss_mb() -> dict[str, float]:
    out: dict[str, float] = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


def synthetic_chunk(base: np.ndarray, sigma: float, size: int, seed: int) -> tuple[
        np.ndarray, np.ndarray]:
    """``size`` synthetic vectors: random real rows of ``base`` plus N(0, sigma^2/dim) noise,
    renormalised; returns them and the base rows they came from."""
    rng = np.random.default_rng(seed)
    parents = rng.integers(0, len(base), size=size)
    noise = rng.standard_normal((size, base.shape[1]), dtype=np.float32)
    vectors = base[parents] + noise * np.float32(sigma / np.sqrt(base.shape[1]))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32, copy=False), parents


def calibrate_noise(base: np.ndarray, n_probes: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The noise scale whose synthetic corpus (same size as ``base``) has the nearest-neighbour
    similarity quantiles closest to the real corpus's (each probe's neighbour among the others)."""
    rng = np.random.default_rng(seed)
    probes = np.sort(rng.choice(len(base), min(n_probes, len(base)), replace=False))
    real = nn_similarity_quantiles(base, base[probes], exclude_self=True)
    table = []
    for sigma in NOISE_GRID:
        synthetic, _ = synthetic_chunk(base, sigma, len(base), seed + 1)
        quantiles = nn_similarity_quantiles(synthetic, synthetic[probes], exclude_self=True)
        table.append({"sigma": sigma, "quantiles": quantiles,
                      "gap": float(np.mean(np.abs(np.subtract(quantiles, real))))})
    best = min(table, key=lambda row: float(row["gap"]))  # type: ignore[arg-type]
    return {"sigma": best["sigma"], "real_quantiles": real, "grid": table}


def _cached_neighbours(base: np.ndarray, k: int, cache_dir: Path) -> np.ndarray:
    """:func:`indexes.synthetic.nearest_neighbours` of ``base``, cached in ``cache_dir`` (keyed
    by their bytes): ~120k titles take minutes on two cores."""
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(base).tobytes()).hexdigest()[:24]
    path = cache_dir / f"neighbours-{k}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    table = nearest_neighbours(base, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, table)
    tmp.replace(path)
    return table


def _write_corpus(path: Path, n: int, base: np.ndarray,
                  sampler: NeighbourhoodSampler | None, chunk: int = 200_000) -> np.ndarray:
    """Write ``n`` corpus vectors to ``path`` (.npy, written chunk by chunk so memory stays
    bounded): the first ``n`` rows of ``base`` without a sampler, else synthetic ones; returns
    the base row (title) each came from."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, base.shape[1]))
    parents = np.empty(n, dtype=np.int32)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        if sampler is None:
            block, rows = base[start:start + size], np.arange(start, start + size)
        else:
            block, rows = sampler.sample(size, seed=1000 + start // chunk)
        out[start:start + size] = block
        parents[start:start + size] = rows
    out.flush()
    del out
    return parents


def _searcher(directory: str, queries_path: str, truth_path: str, k: int) -> dict[str, Any]:
    """Run in a fresh process: open the index memory-mapped, search, report latency and RSS."""
    import faiss

    faiss.omp_set_num_threads(2)
    before = _rss_mb()
    t0 = time.perf_counter()
    index = ThreadIndex.open(Path(directory), verify=False)
    open_s = time.perf_counter() - t0
    queries = np.load(queries_path)
    truth = np.load(truth_path)
    extra: dict[str, float] = {}
    drawn_path = Path(queries_path).with_name("synthetic_queries.npy")
    if drawn_path.is_file():  # queries drawn like a synthetic corpus, beside the real ones
        drawn = np.load(drawn_path)
        drawn_truth = np.load(drawn_path.with_name("synthetic_truth.npy"))
        _, rows = index.search_rows(drawn, k)
        extra["recall_at_10_synthetic_queries"] = recall_at_k(drawn_truth[:, :k].tolist(),
                                                              rows.tolist())
    index.search(queries[:20], k)  # warm-up: first touches of the mapped pages
    latencies, cpu = [], []
    for query in queries:
        t, c = time.perf_counter(), time.thread_time()
        index.search(query[None, :], k)
        latencies.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time() - c) * 1000)
    t = time.perf_counter()
    _, rows = index.search_rows(queries, k)
    batch_s = time.perf_counter() - t
    t = time.perf_counter()
    index.search(queries, k)
    batch_hits_s = time.perf_counter() - t
    after = _rss_mb()
    return {
        "open_s": open_s, "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)), "mean_ms": float(np.mean(latencies)),
        "cpu_p50_ms": float(np.percentile(cpu, 50)), "cpu_p99_ms": float(np.percentile(cpu, 99)),
        "qps": len(queries) / batch_s, "qps_with_metadata": len(queries) / batch_hits_s,
        "recall_at_10": recall_at_k(truth[:, :k].tolist(), rows.tolist()),
        "rss_mb": after["VmRSS"], "rss_anon_mb": after["RssAnon"],
        "rss_file_mb": after["RssFile"], "rss_before_open_mb": before["VmRSS"],
        "peak_rss_mb": after["VmHWM"], **extra,
    }


def _filter_comparison(index: ThreadIndex, corpus: np.ndarray, parents: np.ndarray,
                       tags: list[tuple[str, ...]], queries: np.ndarray) -> list[dict[str, Any]]:
    """Tag-filtered search two ways: an ID selector on the one index, or a per-tag exact shard."""
    import faiss

    counts: dict[str, int] = {}
    for parent_tags in tags:
        for tag in parent_tags:
            counts[tag] = counts.get(tag, 0) + 1
    if not counts:
        return []
    ranked = sorted(counts, key=counts.get, reverse=True)  # type: ignore[arg-type]
    picks = [ranked[0], ranked[min(len(ranked) - 1, 20)]]
    has = {tag: np.fromiter((tag in tags[p] for p in parents), dtype=bool, count=len(parents))
           for tag in picks}
    out = []
    sample = queries[:200]
    for tag in picks:
        rows = np.flatnonzero(has[tag])
        t = time.perf_counter()
        shard = faiss.IndexFlatIP(corpus.shape[1])
        for start in range(0, len(rows), 200_000):
            shard.add(np.asarray(corpus[rows[start:start + 200_000]]))
        shard_build = time.perf_counter() - t
        truth = rows[shard.search(sample, 10)[1]]
        index.search_rows(sample[:1], 10, filter=[tag])  # builds and caches the selector
        lat_sel, lat_shard = [], []
        found = []
        for query in sample:
            t = time.perf_counter()
            found.append(index.search_rows(query[None, :], 10, filter=[tag])[1][0])
            lat_sel.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            shard.search(query[None, :], 10)
            lat_shard.append((time.perf_counter() - t) * 1000)
        out.append({
            "tag": tag, "share": float(len(rows) / len(parents)),
            "selector_p50_ms": float(np.median(lat_sel)),
            "selector_p99_ms": float(np.percentile(lat_sel, 99)),
            "selector_recall_at_10": recall_at_k(truth.tolist(), np.asarray(found).tolist()),
            "shard_p50_ms": float(np.median(lat_shard)),
            "shard_p99_ms": float(np.percentile(lat_shard, 99)),
            "shard_build_s": shard_build,
            "shard_extra_mb": len(rows) * corpus.shape[1] * 4 / 2**20,
        })
    return out


RealVectors = Callable[[int], tuple[np.ndarray, list[tuple[str, str, tuple[str, ...]]]]]


def bench_index(n: int, real_vectors: RealVectors, cache_dir: Path, dim: int = 384,
                real: bool = False, json: bool = False, *,
                kind: str | None = None, n_queries: int = 1000, work_dir: Path | None = None,
                st_queries: int = 100, target_recall: float = 0.95, n_tune: int = 500,
                echo: Any = print) -> dict[str, Any]:
    """Build an index of ``n`` vectors, search it from a fresh process, compare with numpy brute
    force and ``sentence_transformers.util.semantic_search``; returns the metrics.

    ``real_vectors(m)`` gives at least ``m`` real title vectors (fewer when the corpus is
    smaller) with their ``(post_id, title, tags)``; ``cache_dir`` keeps the neighbour tables
    the synthetic sampler needs.

    ``n_queries`` held-out real titles are the benchmark queries and ``n_tune`` others tune
    ``nprobe``; a synthetic corpus is grown from the rest (at most 8-fold per real title: all
    ~121k titles are encoded for a 1M corpus, once, then cached)."""
    import faiss

    from indexes.builder import assemble

    faiss.omp_set_num_threads(2)
    say = (lambda *_: None) if json else echo
    t_start = time.perf_counter()
    vectors, titles = real_vectors(5000 if real else max(5000, n // 8))
    if dim != vectors.shape[1]:
        # Other widths: a fixed random projection of the real vectors keeps their structure.
        rng = np.random.default_rng(7)
        vectors = normalise(vectors @ rng.standard_normal((vectors.shape[1], dim)).astype(
            np.float32), dim)
    n_queries = min(n_queries, len(vectors) // 5)
    n_tune = min(n_tune, len(vectors) // 10)
    order = np.random.default_rng(12345).permutation(len(vectors))
    query_rows, tune_rows = order[:n_queries], order[n_queries:n_queries + n_tune]
    base_rows = np.sort(order[n_queries + n_tune:])
    queries, tune_queries = vectors[query_rows], vectors[tune_rows]
    base = vectors[base_rows]
    base_titles = [titles[i] for i in base_rows.tolist()]
    if real:
        n = min(n, len(base))
    say(f"{len(vectors)} real title vectors ({len(base)} corpus, {n_tune} held out for tuning, "
        f"{n_queries} held-out queries)")
    calibration: dict[str, Any] = {}
    sampler = None
    drawn = queries[:0]
    if not real:
        growth = int(min(8, max(1, -(-n // len(base)))))
        t = time.perf_counter()
        calibration = calibrate_sampler(base, tune_queries, growth)
        sampler = NeighbourhoodSampler(calibration["k"], calibration["alpha"],
                                       calibration["sigma"]).fit(
            base, _cached_neighbours(base, calibration["k"], cache_dir))
        calibration["fit_s"] = time.perf_counter() - t
        # Queries drawn like the corpus: exchangeable with the indexed vectors.
        drawn, _ = sampler.sample(n_queries, seed=999_999)
        say(f"sampler alpha {sampler.alpha}, sigma {sampler.sigma} (fitted at growth {growth}x "
            f"in {calibration['fit_s']:.0f}s; NN cosine quantiles real "
            f"{[round(q, 3) for q in calibration['real_self_quantiles']]})")
    tmp_owner = None
    if work_dir is None:
        tmp_owner = tempfile.TemporaryDirectory(prefix="amlbot-bench-index-")
        work_dir = Path(tmp_owner.name)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        corpus_path = work_dir / "corpus.npy"
        t = time.perf_counter()
        parents = _write_corpus(corpus_path, n, base, sampler)
        generate_s = time.perf_counter() - t
        corpus = np.load(corpus_path, mmap_mode="r")
        say(f"corpus of {n} x {dim} written in {generate_s:.1f}s; building the index")
        rss_before = _rss_mb()["VmRSS"]
        t = time.perf_counter()
        chunk = 200_000
        metas = ([ThreadMeta(base_titles[p][0] or None, base_titles[p][1], base_titles[p][2],
                             "real" if real else "synthetic")
                  for p in parents[s:s + chunk].tolist()] for s in range(0, n, chunk))
        index = assemble(corpus, metas, "sentence-transformers/all-MiniLM-L6-v2", kind=kind,
                         target_recall=target_recall, meta_path=work_dir / "meta-build.sqlite3",
                         progress=not json, tune_queries=tune_queries)
        build_s = time.perf_counter() - t
        build_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        index_dir = work_dir / "index"
        t = time.perf_counter()
        index.save(index_dir)
        save_s = time.perf_counter() - t
        say(f"built {index.spec.factory(dim)} in {build_s:.1f}s (nprobe {index.nprobe}, "
            f"ef_search {index.ef_search}, "
            f"tuned recall {index.tuned_recall} on {n_tune} held-out titles); "
            f"saved in {save_s:.1f}s")
        filters = _filter_comparison(index, corpus, parents,
                                     [t for _, _, t in base_titles], queries)
        index.close()
        del index
        # numpy brute force: the ground truth, and the baseline to beat (one scan for the
        # held-out real titles and, on a synthetic corpus, the queries drawn like it)
        t = time.perf_counter()
        truth_all = exact_topk(corpus, np.concatenate([queries, drawn]), 10)
        numpy_s = time.perf_counter() - t
        numpy_qps = len(truth_all) / numpy_s
        truth = truth_all[:len(queries)]
        np.save(work_dir / "queries.npy", queries)
        np.save(work_dir / "truth.npy", truth)
        if not real:
            np.save(work_dir / "synthetic_queries.npy", drawn)
            np.save(work_dir / "synthetic_truth.npy", truth_all[len(queries):])
            # Nearest-neighbour cosines at full size: held-out real titles vs queries drawn
            # like the corpus (similar quantiles = the real queries are not out of place)
            top = np.einsum("ij,ij->i", np.concatenate([queries, drawn]),
                            np.asarray(corpus[truth_all[:, 0]]))
            quantiles = [10, 25, 50, 75, 90]
            calibration["at_n"] = {
                "real_queries_nn_quantiles": np.percentile(top[:len(queries)],
                                                           quantiles).tolist(),
                "synthetic_queries_nn_quantiles": np.percentile(top[len(queries):],
                                                                quantiles).tolist(),
                "real_queries_nn_quantiles_in_real_corpus": nn_similarity_quantiles(
                    base, queries, exclude_self=False),
            }
        say(f"numpy brute force: {numpy_qps:.1f} queries/s")
        st_qps = _semantic_search_qps(corpus_path, queries[:st_queries])
        say(f"sentence_transformers.util.semantic_search: {st_qps:.1f} queries/s")
        proc = subprocess.run(
            [sys.executable, "-c",
             "import json,sys; from indexes.bench import _searcher; "
             "print(json.dumps(_searcher(*sys.argv[1:4], 10)))",
             str(index_dir), str(work_dir / "queries.npy"), str(work_dir / "truth.npy")],
            capture_output=True, text=True, check=False,
            env={**os.environ, "OMP_NUM_THREADS": "2"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"searcher process failed: {proc.stderr[-2000:]}")
        searched = json_loads_last(proc.stdout)
        info = ThreadIndex.read_info(index_dir)
        index_bytes = sum(f["bytes"] for f in info["files"].values())
        faiss_bytes = info["files"]["index.faiss"]["bytes"]
        result: dict[str, Any] = {
            "n": n, "dim": dim, "real": real, "type": info["type"], "factory": info["factory"],
            "nprobe": info["nprobe"], "ef_search": info.get("ef_search"),
            "tuned_recall_at_10": info["tuned_recall_at_10"],
            "n_queries": n_queries, "n_tune_queries": n_tune, "base_titles": len(base),
            "queries": "held-out real titles",
            "sampler": None if sampler is None else {
                "k": sampler.k, "alpha": sampler.alpha, "sigma": sampler.sigma},
            "build_s": build_s, "generate_s": generate_s, "save_s": save_s,
            "build_peak_rss_mb": build_peak, "rss_before_build_mb": rss_before,
            "index_file_mb": faiss_bytes / 2**20, "meta_file_mb": (index_bytes - faiss_bytes)
            / 2**20, "bytes_per_vector": faiss_bytes / n,
            **searched,
            "numpy_qps": numpy_qps, "numpy_queries": len(truth_all),
            "semantic_search_qps": st_qps,
            "speedup_vs_numpy": searched["qps"] / numpy_qps,
            "speedup_vs_semantic_search": searched["qps"] / st_qps if st_qps else None,
            "filters": filters, "calibration": calibration,
            "total_s": time.perf_counter() - t_start, "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
        }
        return result
    finally:
        if tmp_owner is not None:
            tmp_owner.cleanup()


def json_loads_last(stdout: str) -> dict[str, Any]:
    """The JSON object on the last non-empty line of ``stdout``."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    value: dict[str, Any] = json.loads(lines[-1])
    return value


def _semantic_search_qps(corpus_path: Path, queries: np.ndarray) -> float:
    """Queries per second of ``sentence_transformers.util.semantic_search`` over the corpus."""
    import torch
    from sentence_transformers import util

    corpus = torch.from_numpy(np.load(corpus_path, mmap_mode="c"))
    torch.set_num_threads(2)
    t = time.perf_counter()
    util.semantic_search(torch.from_numpy(queries), corpus, top_k=10,
                         corpus_chunk_size=200_000)
    return len(queries) / (time.perf_counter() - t)


def nprobe_sweep(work_dir: Path, nprobes: list[int],
                 n_queries: int = 500) -> list[dict[str, float]]:
    """Recall@10 (held-out real titles and, on a synthetic corpus, queries drawn like it), CPU
    latency and batch QPS of the index a ``bench_index(..., work_dir=...)`` run left in
    ``work_dir``, at each ``nprobe`` (``efSearch`` for an HNSW index; ``n_queries`` of each
    kind)."""
    index = ThreadIndex.open(work_dir / "index", verify=False)
    sets = {"real": (np.load(work_dir / "queries.npy")[:n_queries],
                     np.load(work_dir / "truth.npy")[:n_queries])}
    if (work_dir / "synthetic_queries.npy").is_file():
        sets["synthetic"] = (np.load(work_dir / "synthetic_queries.npy")[:n_queries],
                             np.load(work_dir / "synthetic_truth.npy")[:n_queries])
    rows = []
    for nprobe in nprobes:
        index.nprobe = index.ef_search = nprobe
        row: dict[str, float] = {"nprobe": nprobe}
        for name, (queries, truth) in sets.items():
            found = index.search_rows(queries, 10)[1]
            row[f"recall_at_10_{name}"] = recall_at_k(truth[:, :10].tolist(), found.tolist())
        everything = np.concatenate([queries for queries, _ in sets.values()])
        cpu = []
        for query in everything:
            start = time.thread_time()
            index.search(query[None, :], 10)
            cpu.append((time.thread_time() - start) * 1000)
        start = time.perf_counter()
        index.search_rows(everything, 10)
        row["qps"] = len(everything) / (time.perf_counter() - start)
        row["cpu_p50_ms"] = float(np.percentile(cpu, 50))
        row["cpu_p99_ms"] = float(np.percentile(cpu, 99))
        rows.append(row)
    return rows
