"""The :class:`DuplicateRanker`, its held-out split and its training entry points.

The ranker embeds titles with the MiniLM :class:`~nlp_core.encoder.Encoder`, passes the vectors
through a linear adapter learned on labelled duplicate pairs (a contrastive loss on frozen
embeddings: seconds on a CPU, where fine-tuning the transformer takes the better part of an hour),
and may add a weighted BM25 score. It also learns the cosine threshold that best separates
duplicate from non-duplicate pairs. For ranking within a corpus, a learned re-ranker
(:mod:`nlp_core.offline.duplicates.rerank`) re-orders each query's nearest titles, looking
through all-mpnet-base-v2 as well as MiniLM.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.corpora import TitlePair, read_pairs
from nlp_core.encoder import Encoder, packaged_encoder
from nlp_core.offline.duplicates.lexical import Bm25
from nlp_core.offline.duplicates.metrics import best_threshold
from nlp_core.offline.duplicates.rerank import CandidateReranker, lookup_rows
from nlp_core.workspace import Workspace

#: Seed of the held-out split carved from ``askubuntu_dups/train_titles.tsv``.
SPLIT_SEED = 20261125
#: Share of the training pairs held out for evaluation (never seen by the shipped model).
HOLDOUT_FRACTION = 0.2
MODEL_DIRNAME = "duplicates"
MODEL_VERSION = 3
PAIRS_DATASET = "askubuntu_dups/train_titles.tsv"

Progress = Callable[[float, str], None]


def split_pairs(pairs: Sequence[TitlePair], holdout: float = HOLDOUT_FRACTION,
                seed: int = SPLIT_SEED) -> tuple[list[TitlePair], list[TitlePair]]:
    """``(train, held_out)``: a seeded random split of the pairs."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    cut = int(round(holdout * len(pairs)))
    return [pairs[i] for i in order[cut:]], [pairs[i] for i in order[:cut]]


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def encode_titles(encoder: Any, texts: Sequence[str], cache_dir: Path | None = None,
                  show_progress: bool = False) -> np.ndarray:
    """``encoder``'s vectors of ``texts``, through the embedding cache when there is one."""
    if cache_dir is None:
        return np.asarray(encoder.encode(list(texts), show_progress=show_progress))
    return np.asarray(encoder.encode_cached(list(texts), cache_dir, show_progress=show_progress))


def minmax_rows(scores: np.ndarray) -> np.ndarray:
    """Each row rescaled to [0, 1] (a constant row becomes 0)."""
    low = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - low
    return np.where(span > 0, (scores - low) / np.where(span > 0, span, 1.0), 0.0)


class DuplicateRanker:
    """Ranks candidate titles by how likely each duplicates a query title.

    ``adapter``: learn a linear map of the frozen MiniLM embeddings from the duplicate pairs
    (in-batch and mined hard negatives, both directions). ``bm25_weight``: weight of min-max
    normalised BM25 in a convex combination with the (min-max normalised) cosine; 0 turns it off.
    ``rerank``: also fit a :class:`~nlp_core.offline.duplicates.rerank.CandidateReranker` on
    the raw vectors of the packaged encoders named in ``rerank_views`` (the first picks the
    candidates), used by :meth:`corpus_scorer`.
    """

    adapter_: np.ndarray | None
    adapter_digest_: str | None
    threshold_: float
    raw_threshold_: float
    train_accuracy_: float
    fit_seconds_: float
    stamp_: dict[str, Any]
    reranker_: CandidateReranker | None

    def __init__(self, model_path: Path | str | None = None, *, adapter: bool = True,
                 epochs: int = 3, learning_rate: float = 1e-3, batch_size: int = 256,
                 scale: float = 20.0, hard_negatives: bool = True, bm25_weight: float = 0.0,
                 rerank: bool = True, rerank_views: Sequence[str] = ("mpnet", "minilm"),
                 seed: int = 0) -> None:
        self.model_path = model_path
        self.adapter = adapter
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.scale = scale
        self.hard_negatives = hard_negatives
        self.bm25_weight = bm25_weight
        self.rerank = rerank
        self.rerank_views = tuple(rerank_views)
        self.seed = seed
        self._encoders: dict[str, Any] = {}

    # --- encoding -------------------------------------------------------------------------
    def _encoder(self, view: str = "minilm") -> Any:
        """The encoder of a view; ``minilm`` (the adapter's) is the one at ``model_path``."""
        if view not in self._encoders:
            if view != "minilm":
                raise ValueError(f"no encoder for the {view} view: call use_workspace first")

            self._encoders[view] = Encoder(self.model_path)
        return self._encoders[view]

    def set_encoder(self, encoder: Any, view: str = "minilm") -> DuplicateRanker:
        """Use an already loaded :class:`~nlp_core.encoder.Encoder` for ``view`` (shares its
        weights)."""
        self._encoders[view] = encoder
        return self

    def use_workspace(self, workspace: Workspace) -> DuplicateRanker:
        """Take the packaged encoders of the re-ranker's views (all but ``minilm``) from
        the workspace's data dir and backend, unless already set."""
        for view in self._views():
            if view != "minilm" and view not in self._encoders:
                self._encoders[view] = packaged_encoder(view, workspace)
        return self

    def _views(self) -> tuple[str, ...]:
        """The views the fitted re-ranker reads, or those it will be fitted on."""
        reranker = getattr(self, "reranker_", None)
        return reranker.views_ if reranker is not None else self.rerank_views

    def view_vectors(self, titles: Sequence[str], cache_dir: Path | None = None,
                     raw: np.ndarray | None = None,
                     show_progress: bool = False) -> dict[str, np.ndarray]:
        """Raw vectors of ``titles`` in ``minilm`` and in every view the re-ranker reads
        (``raw``: the MiniLM ones, if already encoded; ``show_progress``: a bar per view)."""
        out: dict[str, np.ndarray] = {}
        for view in dict.fromkeys(("minilm", *self._views())):
            if view == "minilm" and raw is not None:
                out[view] = raw
                continue
            out[view] = encode_titles(self._encoder(view), titles, cache_dir, show_progress)
        return out

    @property
    def name(self) -> str:
        """Identifies the vector space: encoder weights plus adapter digest."""
        base = str(self._encoder().name)
        digest = getattr(self, "adapter_digest_", None)
        return f"{base}+adapter:{digest}" if digest else base

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Encoder vectors mapped into the ranking space (unit rows)."""
        weights = getattr(self, "adapter_", None)
        array = np.asarray(vectors, dtype=np.float32)
        return _normalise(array @ weights) if weights is not None else _normalise(array)

    def embed(self, texts: Sequence[str], cache_dir: Path | None = None) -> np.ndarray:
        """Unit vectors of ``texts`` in the ranking space (encoder cache in ``cache_dir``)."""
        return self.transform(encode_titles(self._encoder(), texts, cache_dir))

    # --- training -------------------------------------------------------------------------
    def fit(self, pairs: Sequence[TitlePair], cache_dir: Path | None = None,
            progress: Progress | None = None) -> DuplicateRanker:
        """Learn the adapter, the duplicate threshold and the re-ranker from labelled pairs."""
        started = time.perf_counter()
        titles = sorted({t for p in pairs for t in (p.title1, p.title2)})
        position = {t: i for i, t in enumerate(titles)}
        if progress:
            progress(0.05, f"encoding {len(titles)} training titles")
        raw = encode_titles(self._encoder(), titles, cache_dir, show_progress=progress is not None)
        self.adapter_ = None
        self.adapter_digest_ = None
        duplicates = [p for p in pairs if p.duplicate]
        if self.adapter and duplicates:
            if progress:
                progress(0.6, f"training the adapter on {len(duplicates)} duplicate pairs")
            anchors = np.asarray([position[p.title1] for p in duplicates])
            positives = np.asarray([position[p.title2] for p in duplicates])
            self.adapter_ = self._train_adapter(raw, anchors, positives)
            import hashlib

            self.adapter_digest_ = hashlib.sha256(self.adapter_.tobytes()).hexdigest()[:12]
        first = np.asarray([position[p.title1] for p in pairs])
        second = np.asarray([position[p.title2] for p in pairs])
        labels = np.asarray([p.duplicate for p in pairs])
        vectors = self.transform(raw)
        sims = (vectors[first] * vectors[second]).sum(axis=1)
        self.threshold_, self.train_accuracy_ = best_threshold(sims, labels)
        # the zero-shot encoder's own threshold, so evaluations can compare like with like
        raw_sims = (raw[first] * raw[second]).sum(axis=1)
        self.raw_threshold_, _ = best_threshold(raw_sims, labels)
        self.reranker_ = None
        if self.rerank and duplicates:
            if progress:
                progress(0.65, f"encoding {len(titles)} training titles in the re-ranker's "
                         f"views ({', '.join(self.rerank_views)})")
            views = self.view_vectors(titles, cache_dir, raw, show_progress=progress is not None)
            if progress:
                progress(0.8, "training the re-ranker")

            self.reranker_ = CandidateReranker(seed=self.seed).fit(pairs, {
                view: lookup_rows(views[view], position) for view in self.rerank_views})
        self.fit_seconds_ = time.perf_counter() - started
        if progress:
            progress(1.0, "duplicate ranker trained")
        return self

    def _train_adapter(self, raw: np.ndarray, anchors: np.ndarray,
                       positives: np.ndarray) -> np.ndarray:
        import torch

        torch.manual_seed(self.seed)
        dim = raw.shape[1]
        features = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
        groups: dict[int, set[int]] = {}
        for a, p in zip(anchors.tolist(), positives.tolist(), strict=True):
            groups.setdefault(a, {a}).add(p)
            groups.setdefault(p, {p}).add(a)
        negatives = self._mine_negatives(raw, anchors, positives, groups) \
            if self.hard_negatives else None
        weights = torch.nn.Parameter(torch.eye(dim))
        optimiser = torch.optim.Adam([weights], lr=self.learning_rate)
        normalise = torch.nn.functional.normalize
        rng = np.random.RandomState(self.seed)
        n = len(anchors)
        for _epoch in range(self.epochs):
            order = rng.permutation(n)
            for start in range(0, n, self.batch_size):
                batch = order[start:start + self.batch_size]
                a = normalise(features[anchors[batch]] @ weights, dim=1)
                p = normalise(features[positives[batch]] @ weights, dim=1)
                ids = anchors[batch]
                # several pairs of one canonical question in a batch are not negatives
                same = torch.from_numpy(ids[:, None] == ids[None, :]) & \
                    ~torch.eye(len(batch), dtype=torch.bool)
                forward = self.scale * a @ p.T
                backward = self.scale * p @ a.T
                forward = forward.masked_fill(same, -1e4)
                backward = backward.masked_fill(same, -1e4)
                if negatives is not None:
                    hard = normalise(features[negatives[batch]] @ weights, dim=1)
                    forward = torch.cat([forward, self.scale * a @ hard.T], dim=1)
                labels = torch.arange(len(batch))
                loss = torch.nn.functional.cross_entropy(forward, labels) + \
                    torch.nn.functional.cross_entropy(backward, labels)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        return np.ascontiguousarray(weights.detach().numpy(), dtype=np.float32)

    @staticmethod
    def _mine_negatives(raw: np.ndarray, anchors: np.ndarray, positives: np.ndarray,
                        groups: dict[int, set[int]], depth: int = 10) -> np.ndarray:
        """For each pair, the positive's nearest training title that is no duplicate of it."""
        negatives = np.empty(len(anchors), dtype=np.int64)
        for start in range(0, len(anchors), 1024):
            block = slice(start, start + 1024)
            sims = raw[positives[block]] @ raw.T
            top = np.argpartition(-sims, depth, axis=1)[:, :depth + 1]
            for i, (anchor, row) in enumerate(zip(anchors[block], top, strict=True)):
                ordered = row[np.argsort(-sims[i, row])]
                linked = groups.get(int(anchor), set()) | {int(anchor)}
                for other in groups.get(int(anchor), set()):
                    linked |= groups.get(other, set())
                choice = next((int(c) for c in ordered if int(c) not in linked), int(ordered[-1]))
                negatives[start + i] = choice
        return negatives

    # --- scoring --------------------------------------------------------------------------
    def score_matrix(self, query_vectors: np.ndarray, corpus_vectors: np.ndarray,
                     queries: Sequence[str] | None = None,
                     bm25: Bm25 | None = None) -> np.ndarray:
        """``(n_queries, n_corpus)`` ranking scores; BM25 is fused when weighted and given."""
        dense = query_vectors @ corpus_vectors.T
        if self.bm25_weight <= 0 or bm25 is None or queries is None:
            return dense
        lexical = bm25.scores(queries)
        return (1 - self.bm25_weight) * minmax_rows(dense) + \
            self.bm25_weight * minmax_rows(lexical)

    def corpus_scorer(self, titles: Sequence[str], vectors: Mapping[str, np.ndarray],
                      bm25: Bm25 | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """``scorer(query_rows)``: scores of those rows of ``titles`` against all of them, from
        their raw vectors in each view (:meth:`view_vectors`). The re-ranker when there is one,
        else the adapter's cosine over the ``minilm`` vectors (with BM25 when weighted)."""
        reranker = getattr(self, "reranker_", None)
        if reranker is not None:
            return reranker.scorer(titles, vectors)
        space = self.transform(vectors["minilm"])
        return lambda rows: self.score_matrix(space[rows], space,
                                              [titles[r] for r in rows], bm25)

    def pair_similarity(self, first: Sequence[str], second: Sequence[str],
                        cache_dir: Path | None = None) -> np.ndarray:
        """Cosine in the ranking space of each ``(first[i], second[i])``."""
        a = self.embed(first, cache_dir)
        b = self.embed(second, cache_dir)
        return (a * b).sum(axis=1)

    def predict(self, first: Sequence[str], second: Sequence[str],
                cache_dir: Path | None = None) -> np.ndarray:
        """``True`` where the pair looks like a duplicate (cosine over the learned threshold)."""
        return self.pair_similarity(first, second, cache_dir) >= self.threshold_

    # --- persistence ----------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Constructor arguments (for the version stamp and :meth:`load`)."""
        return {"model_path": str(self.model_path) if self.model_path else None,
                "adapter": self.adapter, "epochs": self.epochs,
                "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                "scale": self.scale, "hard_negatives": self.hard_negatives,
                "bm25_weight": self.bm25_weight, "rerank": self.rerank,
                "rerank_views": list(self.rerank_views), "seed": self.seed}

    def save(self, directory: Path, metrics: dict[str, Any] | None = None) -> None:
        """Write ``adapter.npy``, ``reranker/`` and ``version.json`` (name, version, created,
        metrics)."""
        import shutil

        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(directory / "reranker", ignore_errors=True)
        reranker = getattr(self, "reranker_", None)
        if reranker is not None:
            reranker.save(directory / "reranker")
        adapter = getattr(self, "adapter_", None)
        if adapter is not None:
            np.save(directory / "adapter.npy", adapter)
        else:
            (directory / "adapter.npy").unlink(missing_ok=True)
        stamp = {
            "name": MODEL_DIRNAME, "version": MODEL_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "params": self.params(), "threshold": self.threshold_,
            "raw_threshold": self.raw_threshold_,
            "train_accuracy": self.train_accuracy_, "adapter_digest": self.adapter_digest_,
            "fit_seconds": round(float(getattr(self, "fit_seconds_", 0.0)), 1),
            "metrics": metrics or {},
        }
        (directory / "version.json").write_text(json.dumps(stamp, indent=2))

    @classmethod
    def load(cls, directory: Path) -> DuplicateRanker:
        """A ranker saved by :meth:`save` (only ever from our own data dir)."""
        stamp_path = directory / "version.json"
        if not stamp_path.is_file():
            raise FileNotFoundError(f"no duplicate ranker in {directory}")
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("version") != MODEL_VERSION:
            raise FileNotFoundError(f"duplicate ranker in {directory} has an old version")
        ranker = cls(**stamp["params"])
        adapter_path = directory / "adapter.npy"
        ranker.adapter_ = np.load(adapter_path, allow_pickle=False) \
            if adapter_path.is_file() else None
        ranker.adapter_digest_ = stamp.get("adapter_digest")
        reranker_dir = directory / "reranker"
        if (reranker_dir / "model.txt").is_file():
            ranker.reranker_ = CandidateReranker.load(reranker_dir)
        else:
            ranker.reranker_ = None
        ranker.threshold_ = float(stamp["threshold"])
        ranker.raw_threshold_ = float(stamp.get("raw_threshold", stamp["threshold"]))
        ranker.train_accuracy_ = float(stamp.get("train_accuracy", 0.0))
        ranker.fit_seconds_ = float(stamp.get("fit_seconds", 0.0))
        ranker.stamp_ = stamp
        return ranker


def model_dir(workspace: Workspace) -> Path:
    """Where the shipped duplicate ranker lives."""
    return workspace.data_dir / "models" / MODEL_DIRNAME


def cache_dir(workspace: Workspace) -> Path:
    """Embedding cache shared by training, evaluation and index builds."""
    return workspace.data_dir / "cache" / "embeddings"


def train_duplicates(workspace: Workspace, progress: Progress | None = None) -> DuplicateRanker:
    """Fit the shipped ranker on the training part of the AskUbuntu pairs and save it.

    The held-out part (``split_pairs`` with the fixed seed) is never seen, so
    ``amlbot eval duplicates`` measures it honestly.
    """

    pairs = read_pairs(workspace.require(PAIRS_DATASET))
    train, _held_out = split_pairs(pairs)
    ranker = DuplicateRanker().use_workspace(workspace).fit(
        train, cache_dir=workspace.embeddings_cache, progress=progress)
    ranker.save(model_dir(workspace), {"train_pairs": len(train)})
    return ranker


def load_or_train_duplicates(workspace: Workspace,
                             progress: Progress | None = None) -> DuplicateRanker:
    """The saved ranker, trained first if missing or stale."""
    try:
        return DuplicateRanker.load(model_dir(workspace)).use_workspace(workspace)
    except FileNotFoundError:
        return train_duplicates(workspace, progress)
