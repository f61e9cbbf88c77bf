"""Real StackOverflow/AskUbuntu titles from the registered datasets, and their cached embeddings.

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


def real_titles(limit: int | None = None) -> list[tuple[str, str, tuple[str, ...]]]:
    """Distinct titles as ``(post_id, title, tags)`` from so_tags, staqc and askubuntu, in a fixed
    order (so the cache keys stay stable)."""
    from bot.data import require
    from nlp_core.corpora import parse_tag_list

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


def chunk_cache_path(encoder_name: str, texts: list[str]) -> Path:
    """Where the vectors of one chunk of titles are cached (keyed by model and texts)."""
    from bot.settings import get_settings

    digest = hashlib.sha256(encoder_name.encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    cache = get_settings().data_dir / "cache" / "index-titles"
    return cache / f"titles-{digest.hexdigest()[:24]}.npy"


def real_title_vectors(limit: int | None = None, *, chunk: int = 5000,
                       encoder: Any = None,
                       progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """MiniLM vectors of :func:`real_titles` (``limit`` first ones), encoded once per chunk of
    ``chunk`` titles and cached, so an interrupted run keeps what it had done. The encoder
    defaults to the settings' backend (ONNX: torch's vectors, faster; same cache keys)."""
    from nlp_core.encoder import encoder_from_settings

    titles = [title for _, title, _ in real_titles(limit)]
    encoder = encoder or encoder_from_settings()
    parts: list[np.ndarray] = []
    for start in range(0, len(titles), chunk):
        texts = titles[start:start + chunk]
        path = chunk_cache_path(encoder.name, texts)
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
