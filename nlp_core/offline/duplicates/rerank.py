"""Learning-to-rank re-ranker for duplicate questions.

The bi-encoder's cosine ranks candidate titles; :class:`CandidateReranker` re-orders each query's
nearest ``depth`` titles with a LightGBM lambdarank model over features of the pair, the corpus
and a memory of labelled duplicates. It may look through several encoders ("views", e.g. MPNet
and MiniLM): the first view picks the candidates, and every view adds its own copy of the
features:

* the cosine and its rank, and the hubness of both titles (mean cosine to their ten nearest
  titles; ``csls`` is the cosine corrected by both);
* the memory: titles that duplicate the query in the training pairs, how close the candidate
  is to them, and whether the candidate's nearest known duplicates belong to the query or to
  another canonical question;
* whether the candidate is itself a known canonical question (those are rarely someone's
  duplicate).

The model is trained on pseudo evaluation files: the training pairs are cut into folds, and each
fold is ranked with the other folds as memory, so the features look as they will at test time.
Everything works on raw (unit) encoder vectors; the model is saved as LightGBM's text format plus
JSON and ``.npy`` files, never a pickle.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.corpora import TitlePair

#: Feature names, in column order.
FEATURES = ("cosine", "log_rank", "csls", "query_density", "candidate_density", "memory_size",
            "memory_max", "memory_centroid", "vote", "competitor", "margin_to_canonical",
            "candidate_is_canonical")
#: Titles each density averages over, and memory duplicates each candidate votes with.
NEIGHBOURS = 10
#: Scores above this come from the model; the rest keep their cosine order below it.
RERANKED_OFFSET = 1000.0

VectorLookup = Callable[[Sequence[str]], np.ndarray]
#: One vector lookup per view, the candidate-picking view first.
ViewLookups = Mapping[str, VectorLookup]


def lookup_rows(vectors: np.ndarray, row: Mapping[str, int]) -> VectorLookup:
    """A :data:`VectorLookup` reading ``vectors[row[title]]``."""
    return lambda titles: vectors[[row[t] for t in titles]]


def _unit(matrix: np.ndarray) -> np.ndarray:
    array = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.where(norms == 0, 1.0, norms)


def neighbour_density(vectors: np.ndarray, k: int = NEIGHBOURS, chunk: int = 2048) -> np.ndarray:
    """Mean cosine of each row to its ``k`` nearest other rows."""
    n = len(vectors)
    k = min(k, n - 1)
    out = np.zeros(n, dtype=np.float32)
    if k <= 0:
        return out
    for start in range(0, n, chunk):
        sims = vectors[start:start + chunk] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        out[start:start + chunk] = -np.partition(-sims, k - 1, axis=1)[:, :k].mean(axis=1)
    return out


class DuplicateMemory:
    """The labelled duplicate pairs seen in training, with the vectors of their titles."""

    def __init__(self, pairs: Sequence[TitlePair], vectors_of: VectorLookup) -> None:
        duplicates = [p for p in pairs if p.duplicate]
        self.pairs = [(p.title1, p.title2) for p in duplicates]
        self.links: dict[str, set[str]] = {}
        canonicals_of: dict[str, set[str]] = {}
        for first, second in self.pairs:
            self.links.setdefault(first, set()).add(second)
            self.links.setdefault(second, set()).add(first)
            canonicals_of.setdefault(second, set()).add(first)
        self.titles = sorted(self.links)
        self.row = {t: i for i, t in enumerate(self.titles)}
        self.vectors = _unit(vectors_of(self.titles)) if self.titles \
            else np.zeros((0, 1), dtype=np.float32)
        #: rows of the titles asked as duplicates, and for each the canonicals it duplicates
        self.duplicate_rows = np.asarray([self.row[t] for t in sorted(canonicals_of)],
                                         dtype=np.int64)
        self.canonicals_of = [canonicals_of[self.titles[r]] for r in self.duplicate_rows]
        self.canonical_rows = np.asarray(sorted({self.row[first] for first, _ in self.pairs}),
                                         dtype=np.int64)
        self.canonicals = {first for first, _ in self.pairs}

    def __len__(self) -> int:
        return len(self.pairs)

    def nearest_duplicates(self, vectors: np.ndarray, k: int = NEIGHBOURS,
                           chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, sims)``: each vector's ``k`` nearest memory duplicates, best first
        (positions index :attr:`canonicals_of`)."""
        k = min(k, len(self.duplicate_rows))
        positions = np.zeros((len(vectors), k), dtype=np.int64)
        sims = np.zeros((len(vectors), k), dtype=np.float32)
        if k == 0:
            return positions, sims
        duplicates = self.vectors[self.duplicate_rows]
        for start in range(0, len(vectors), chunk):
            block = vectors[start:start + chunk] @ duplicates.T
            top = np.argpartition(-block, k - 1, axis=1)[:, :k]
            top_sims = np.take_along_axis(block, top, axis=1)
            order = np.argsort(-top_sims, axis=1)
            positions[start:start + chunk] = np.take_along_axis(top, order, axis=1)
            sims[start:start + chunk] = np.take_along_axis(top_sims, order, axis=1)
        return positions, sims

    def best_canonical(self, vectors: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """Each vector's highest cosine to a known canonical question (-1 without memory)."""
        if not len(self.canonical_rows):
            return np.full(len(vectors), -1.0, dtype=np.float32)
        canonicals = self.vectors[self.canonical_rows]
        return np.concatenate([(vectors[s:s + chunk] @ canonicals.T).max(axis=1)
                               for s in range(0, len(vectors), chunk)])


class CorpusContext:
    """What the features need to know about a whole corpus, computed once per corpus."""

    def __init__(self, titles: Sequence[str], vectors: np.ndarray,
                 memory: DuplicateMemory) -> None:
        self.titles = titles
        self.vectors = _unit(vectors)
        self.memory = memory
        self.density = neighbour_density(self.vectors)
        self.near_rows, self.near_sims = memory.nearest_duplicates(self.vectors)
        self.best_canonical = memory.best_canonical(self.vectors)
        self.is_canonical = np.asarray([t in memory.canonicals for t in titles],
                                       dtype=np.float32)


def nearest_candidates(vectors: np.ndarray, query_rows: np.ndarray, depth: int) -> np.ndarray:
    """Each query row's ``depth`` nearest other rows by cosine, best first
    (``(n_queries, depth)``)."""
    depth = min(depth, len(vectors) - 1)
    candidates = np.zeros((len(query_rows), depth), dtype=np.int64)
    for i, query in enumerate(np.asarray(query_rows, dtype=np.int64)):
        sims = vectors[query] @ vectors.T
        sims[query] = -np.inf
        top = np.argpartition(-sims, depth - 1)[:depth]
        candidates[i] = top[np.argsort(-sims[top], kind="stable")]
    return candidates


def candidate_features(context: CorpusContext, query_rows: np.ndarray,
                       candidates: np.ndarray) -> np.ndarray:
    """The :data:`FEATURES` of each query row's ``candidates`` (a row of them per query),
    ``(n_queries * depth, len(FEATURES))``."""
    titles, vectors, memory = context.titles, context.vectors, context.memory
    density, near_rows, near_sims = context.density, context.near_rows, context.near_sims
    best_canonical, is_canonical = context.best_canonical, context.is_canonical
    depth = candidates.shape[1]
    features = np.zeros((len(query_rows), depth, len(FEATURES)), dtype=np.float32)
    for i, query in enumerate(np.asarray(query_rows, dtype=np.int64)):
        top = candidates[i]
        cosine = vectors[top] @ vectors[query]
        # the rank in this view (the candidates come in the first view's order)
        log_rank = np.log1p(np.argsort(np.argsort(-cosine, kind="stable")).astype(np.float32))
        title = titles[query]
        linked = [memory.row[t] for t in memory.links.get(title, ())]
        if linked:
            linked_sims = vectors[top] @ memory.vectors[linked].T
            centroid = _unit(memory.vectors[linked].mean(axis=0))
            memory_max = linked_sims.max(axis=1)
            memory_centroid = vectors[top] @ centroid
        else:
            memory_max = memory_centroid = np.zeros(depth, dtype=np.float32)
        if near_rows.shape[1]:
            mine = np.asarray([[title in memory.canonicals_of[p] for p in row]
                               for row in near_rows[top]])
            weights = near_sims[top]
            vote = (weights * mine).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-6)
            competitor = np.maximum(np.where(mine, -np.inf, weights).max(axis=1), 0.0)
        else:
            vote = competitor = np.zeros(depth, dtype=np.float32)
        features[i] = np.column_stack([
            cosine, log_rank, 2 * cosine - density[top] - density[query],
            np.full(depth, density[query]), density[top], np.full(depth, np.log1p(len(linked))),
            memory_max, memory_centroid, vote, competitor, cosine - best_canonical[top],
            is_canonical[top],
        ])
    return features.reshape(-1, len(FEATURES))


def view_features(contexts: Mapping[str, CorpusContext], query_rows: np.ndarray,
                  depth: int) -> tuple[np.ndarray, np.ndarray]:
    """``(features, candidates)``: the first view's ``depth`` nearest titles of each query row,
    and their :data:`FEATURES` in every view, side by side."""
    first = next(iter(contexts.values()))
    candidates = nearest_candidates(first.vectors, query_rows, depth)
    features = np.hstack([candidate_features(c, query_rows, candidates)
                          for c in contexts.values()])
    return features, candidates


class CandidateReranker:
    """Re-orders each query's nearest ``depth`` titles with a lambdarank model (see module).

    :meth:`fit` takes one vector lookup per view; the views it was fitted on (``views_``) are
    the ones :meth:`scorer` needs vectors of.
    """

    booster_: Any
    views_: tuple[str, ...]
    memories_: dict[str, DuplicateMemory]
    train_groups_: int

    def __init__(self, depth: int = 50, folds: int = 4, rounds: int = 300,
                 learning_rate: float = 0.05, num_leaves: int = 15, min_child_samples: int = 50,
                 seed: int = 0) -> None:
        self.depth = depth
        self.folds = folds
        self.rounds = rounds
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed

    def params(self) -> dict[str, Any]:
        """Constructor arguments (saved with the model)."""
        return {"depth": self.depth, "folds": self.folds, "rounds": self.rounds,
                "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                "min_child_samples": self.min_child_samples, "seed": self.seed}

    def _lgb_params(self) -> dict[str, Any]:
        return {"objective": "lambdarank", "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_child_samples": self.min_child_samples,
                "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8,
                "lambdarank_truncation_level": 20, "seed": self.seed, "deterministic": True,
                "verbose": -1}

    @property
    def memory_(self) -> DuplicateMemory:
        """The labelled pairs remembered (the first view's copy; every view holds the same)."""
        return self.memories_[self.views_[0]]

    @property
    def feature_names_(self) -> list[str]:
        """``view.feature`` for every column the model reads."""
        return [f"{view}.{name}" for view in self.views_ for name in FEATURES]

    def fit(self, pairs: Sequence[TitlePair], vectors_of: ViewLookups) -> CandidateReranker:
        """Learn from labelled pairs; ``vectors_of[view](titles)`` gives their vectors in each
        view (the first view picks the candidates)."""
        import lightgbm

        if not vectors_of:
            raise ValueError("the re-ranker needs at least one view")
        self.views_ = tuple(vectors_of)
        order = list(range(len(pairs)))
        random.Random(self.seed).shuffle(order)
        folds = [[pairs[i] for i in order[k::self.folds]] for k in range(self.folds)]
        blocks, labels, groups = [], [], []
        for k, held in enumerate(folds):
            rest = [p for j, fold in enumerate(folds) if j != k for p in fold]
            memories = {v: DuplicateMemory(rest, lookup) for v, lookup in vectors_of.items()}
            x, y, g = self._training_block(held, memories, vectors_of)
            blocks.append(x)
            labels.append(y)
            groups.extend(g)
        if not groups:
            raise ValueError("no duplicate pairs to learn re-ranking from")
        dataset = lightgbm.Dataset(np.vstack(blocks), label=np.concatenate(labels),
                                   group=groups, feature_name=self.feature_names_)
        self.booster_ = lightgbm.train(self._lgb_params(), dataset, num_boost_round=self.rounds)
        self.train_groups_ = len(groups)
        self.memories_ = {v: DuplicateMemory(pairs, lookup) for v, lookup in vectors_of.items()}
        return self

    def remember(self, pairs: Sequence[TitlePair],
                 vectors_of: ViewLookups) -> CandidateReranker:
        """Add labelled duplicate pairs to the memory; the learned model is unchanged."""
        known = set(self.memory_.pairs)
        fresh = [(p.title1, p.title2) for p in pairs
                 if p.duplicate and (p.title1, p.title2) not in known]
        merged = [TitlePair(True, a, b) for a, b in [*self.memory_.pairs, *dict.fromkeys(fresh)]]
        missing = sorted({t for pair in fresh for t in pair} - set(self.memory_.row))
        for view in self.views_:
            memory = self.memories_[view]
            added = dict(zip(missing, vectors_of[view](missing), strict=True)) if missing else {}

            def lookup(titles: Sequence[str], memory: DuplicateMemory = memory,
                       added: dict[str, np.ndarray] = added) -> np.ndarray:
                return np.asarray([memory.vectors[memory.row[t]] if t in memory.row
                                   else added[t] for t in titles], dtype=np.float32)

            self.memories_[view] = DuplicateMemory(merged, lookup)
        return self

    def _training_block(self, held: Sequence[TitlePair], memories: Mapping[str, DuplicateMemory],
                        vectors_of: ViewLookups) -> tuple[np.ndarray, np.ndarray, list[int]]:
        titles = sorted({t for p in held for t in (p.title1, p.title2)})
        if len(titles) < 2:
            return np.zeros((0, len(self.feature_names_)), np.float32), np.zeros(0), []
        row = {t: i for i, t in enumerate(titles)}
        wanted: dict[int, set[int]] = {}
        for p in held:
            if p.duplicate:
                wanted.setdefault(row[p.title1], set()).add(row[p.title2])
        queries = np.asarray(sorted(wanted), dtype=np.int64)
        contexts = {v: CorpusContext(titles, lookup(titles), memories[v])
                    for v, lookup in vectors_of.items()}
        x, candidates = view_features(contexts, queries, self.depth)
        y = np.asarray([c in wanted[int(q)] for q, cs in zip(queries, candidates, strict=True)
                        for c in cs], dtype=np.float32)
        return x, y, [candidates.shape[1]] * len(queries)

    def scorer(self, titles: Sequence[str],
               vectors: Mapping[str, np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        """``scorer(query_rows)``: ``(len(query_rows), len(titles))`` scores, from the titles'
        vectors in each of :attr:`views_`. Each query's nearest ``depth`` titles (by the first
        view's cosine) get the model's score above :data:`RERANKED_OFFSET`; the rest keep that
        cosine below it."""
        missing = [v for v in self.views_ if v not in vectors]
        if missing:
            raise ValueError(f"the re-ranker needs vectors in the views {missing}")
        contexts = {v: CorpusContext(titles, vectors[v], self.memories_[v]) for v in self.views_}
        first = contexts[self.views_[0]].vectors

        def scores(query_rows: np.ndarray) -> np.ndarray:
            rows = np.asarray(query_rows, dtype=np.int64)
            out = first[rows] @ first.T - RERANKED_OFFSET
            if len(titles) < 2 or not len(rows):
                return out
            features, candidates = view_features(contexts, rows, self.depth)
            predicted = self.booster_.predict(features).reshape(candidates.shape)
            np.put_along_axis(out, candidates, RERANKED_OFFSET + predicted, axis=1)
            return out

        return scores

    # --- persistence ----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write ``model.txt`` (LightGBM), ``memory.json`` and a ``memory-<view>.npy`` per
        view."""
        directory.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(directory / "model.txt"))
        (directory / "memory.json").write_text(json.dumps({
            "params": self.params(), "views": list(self.views_),
            "train_groups": self.train_groups_,
            "pairs": self.memory_.pairs, "titles": self.memory_.titles}))
        for view in self.views_:
            np.save(directory / f"memory-{view}.npy", self.memories_[view].vectors)

    @classmethod
    def load(cls, directory: Path) -> CandidateReranker:
        """A re-ranker written by :meth:`save`."""
        import lightgbm

        stored = json.loads((directory / "memory.json").read_text())
        reranker = cls(**stored["params"])
        reranker.views_ = tuple(stored["views"])
        row = {t: i for i, t in enumerate(stored["titles"])}
        pairs = [TitlePair(True, first, second) for first, second in stored["pairs"]]
        reranker.memories_ = {}
        for view in reranker.views_:
            vectors = np.load(directory / f"memory-{view}.npy", allow_pickle=False)
            reranker.memories_[view] = DuplicateMemory(pairs, lookup_rows(vectors, row))
        reranker.booster_ = lightgbm.Booster(model_file=str(directory / "model.txt"))
        reranker.train_groups_ = int(stored["train_groups"])
        return reranker
