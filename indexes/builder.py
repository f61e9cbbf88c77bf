"""Assembling a thread index from vectors already on disk: memory-mapped shards in, a trained,
filled and tuned :class:`~indexes.thread_index.ThreadIndex` out. What the vectors mean (which
encoder, which titles) is the caller's business: ``nlp_core.index_build`` streams a source
through an encoder into shards and calls :func:`assemble`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from indexes.errors import ThreadIndexError
from indexes.metadata import ThreadMeta
from indexes.thread_index import ThreadIndex
from indexes.vectors import choose_spec


class ShardedVectors:
    """Row-indexable view of the vectors of several ``.npy`` shards (memory-mapped)."""

    def __init__(self, paths: list[Path]) -> None:
        self.parts = [np.load(p, mmap_mode="r") for p in paths]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, _ = key.indices(len(self))
            out = []
            for i, part in enumerate(self.parts):
                lo, hi = max(start, self.offsets[i]), min(stop, self.offsets[i + 1])
                if lo < hi:
                    out.append(np.asarray(part[lo - self.offsets[i]:hi - self.offsets[i]]))
            dim = self.parts[0].shape[1] if self.parts else 0
            return np.concatenate(out) if out else np.zeros((0, dim), np.float32)
        rows = np.asarray(key, dtype=np.int64)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        return np.stack([self.parts[s][r - self.offsets[s]]
                         for s, r in zip(shard, rows, strict=True)])


def assemble(vectors: Any, metas: Iterable[list[ThreadMeta]], model_name: str, *,
             model_version: str = "", kind: str | None = None, target_recall: float = 0.95,
             meta_path: Path | None = None, progress: bool = False,
             seed: int = 0, tune_queries: np.ndarray | None = None) -> ThreadIndex:
    """A :class:`ThreadIndex` over ``vectors`` (row-indexable, e.g. :class:`ShardedVectors` or a
    memory map, already unit length) with ``metas`` given in chunks in the same order: trains an
    IVF on a sample, adds chunk by chunk, tunes ``nprobe`` (on ``tune_queries``, held-out query
    vectors, when given, else on indexed rows: :meth:`ThreadIndex.tune`)."""
    from tqdm import tqdm

    n = len(vectors)
    if n == 0:
        raise ThreadIndexError("cannot build an index from an empty corpus")
    dim = int(np.asarray(vectors[0:1]).shape[1])
    spec = choose_spec(n, dim, kind)
    if meta_path is not None:
        meta_path.unlink(missing_ok=True)  # a half-filled one from a killed run
    index = ThreadIndex(dim, model_name, spec=spec, model_version=model_version,
                        meta_path=meta_path)
    if spec.needs_training:
        rng = np.random.default_rng(seed)
        take = np.sort(rng.choice(n, min(n, spec.train_size()), replace=False))
        index.train(np.asarray(vectors[take]), seed=seed)
    done = 0
    with tqdm(total=n, desc=f"indexing ({spec.factory(dim)})", unit=" vectors",
              disable=not progress, dynamic_ncols=True) as bar:
        for chunk in metas:
            block = np.asarray(vectors[done:done + len(chunk)])
            if len(block) != len(chunk):
                raise ThreadIndexError(f"{len(block)} vectors for {len(chunk)} metadata rows")
            index.add(block, chunk)
            done += len(chunk)
            bar.update(len(chunk))
    if done != n:
        raise ThreadIndexError(f"{n} vectors but {done} metadata rows")
    if spec.needs_training:
        index.tune(vectors, target_recall=target_recall, seed=seed, queries=tune_queries)
    return index
