"""Real StackOverflow/AskUbuntu titles from the registered datasets, and their cached embeddings:
the real vectors the index benchmark grows its corpora from.

The benchmark (and the synthetic corpus it grows from them) needs real MiniLM vectors; they are
encoded once in chunks of 5000 and cached as ``.npy`` under ``<data_dir>/cache/index-titles``
(all ~121k titles: about 15 minutes with the ONNX encoder on 2 busy cores).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.corpora import parse_tag_list
from nlp_core.encoder import default_encoder
from nlp_core.workspace import Workspace


def real_titles(workspace: Workspace,
                limit: int | None = None) -> list[tuple[str, str, tuple[str, ...]]]:
    """Distinct titles as ``(post_id, title, tags)`` from so_tags, staqc and askubuntu, in a fixed
    order (so the cache keys stay stable)."""
    require = workspace.require
    out: list[tuple[str, str, tuple[str, ...]]] = []
    seen: set[str] = set()

    def keep(post_id: str, title: str, tags: tuple[str, ...]) -> None:
        title = title.strip()
        if title and title not in seen:
            seen.add(title)
            out.append((post_id, title, tags))

    csv.field_size_limit(2**31 - 1)
    with require("so_tags/train.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            keep("", row["title"] or "", tuple(parse_tag_list(row["tags"] or "[]")))
    with require("so_tags/unlabeled.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            keep("", row["title"] or "", ())
    with require("so_posts/staqc_sql_titles.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            keep(row["post_id"] or "", row["title"] or "", ("sql",))
    with require("askubuntu_dups/train_titles.tsv").open(encoding="utf-8", newline="") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            for title in parts[1:3]:
                keep("", title, ("ubuntu",))
    return out[:limit] if limit is not None else out


def chunk_cache_path(workspace: Workspace, encoder_name: str, texts: list[str]) -> Path:
    """Where the vectors of one chunk of titles are cached (keyed by model and texts)."""
    digest = hashlib.sha256(encoder_name.encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    cache = workspace.data_dir / "cache" / "index-titles"
    return cache / f"titles-{digest.hexdigest()[:24]}.npy"


def real_title_vectors(workspace: Workspace, limit: int | None = None, *, chunk: int = 5000,
                       encoder: Any = None,
                       progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """MiniLM vectors of :func:`real_titles` (``limit`` first ones), encoded once per chunk of
    ``chunk`` titles and cached, so an interrupted run keeps what it had done. The encoder
    defaults to the workspace's backend (ONNX: torch's vectors, faster; same cache keys)."""
    titles = [title for _, title, _ in real_titles(workspace, limit)]
    encoder = encoder or default_encoder(workspace)
    parts: list[np.ndarray] = []
    for start in range(0, len(titles), chunk):
        texts = titles[start:start + chunk]
        path = chunk_cache_path(workspace, encoder.name, texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            parts.append(np.load(path))
        else:
            vectors = encoder.encode(texts)
            tmp = path.with_name(path.stem + ".tmp.npy")
            np.save(tmp, vectors)
            tmp.replace(path)
            parts.append(vectors)
        if progress is not None:
            progress(min(start + chunk, len(titles)), len(titles))
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)


def cached_real_vectors(workspace: Workspace, min_titles: int = 5000) -> tuple[
        np.ndarray, list[tuple[str, str, tuple[str, ...]]]]:
    """The real title vectors (in title order) and their titles: every whole chunk cached so
    far, encoding more chunks until at least ``min_titles`` (capped at the corpus) are there."""
    titles = real_titles(workspace)
    chunk = 5000
    encoder = default_encoder(workspace)
    cached = 0
    for start in range(0, len(titles), chunk):
        texts = [text for _, text, _ in titles[start:start + chunk]]
        if not chunk_cache_path(workspace, encoder.name, texts).is_file():
            break
        cached = min(start + chunk, len(titles))
    want = min(len(titles), max(cached, -(-min_titles // chunk) * chunk))
    vectors = real_title_vectors(workspace, want, chunk=chunk, encoder=encoder)
    return vectors, titles[:len(vectors)]
