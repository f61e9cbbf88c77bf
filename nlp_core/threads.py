"""The StackOverflow thread corpus and the duplicate search over it.

Every title we hold becomes a :class:`~indexes.ThreadMeta`: StaQC SQL questions and the sample
posts carry real post ids (their URL is the thread); so_tags titles have none (their URL is a
search). Each thread is tagged with its tags plus the programming language they imply, so a
search can run within the asker's language first and then over everything.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from indexes import DamagedIndexError, Hit, ThreadIndex, ThreadIndexError, ThreadMeta
from nlp_core.corpora import load_so_tags, load_titles
from nlp_core.encoder import default_encoder
from nlp_core.integrity import DamagedModelError
from nlp_core.workspace import Workspace

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]

#: The languages the assistant names, as the NLU predicts them.
LANGUAGES: tuple[str, ...] = (
    "c#", "java", "javascript", "php", "c/c++", "python", "ruby", "r", "vb", "swift",
)
#: Tag given to StaQC's SQL questions (they carry no language tag of their own).
SQL_TAG = "sql"

#: StackOverflow tags that imply a language (the language's own tag included).
_TAG_LANGUAGE: dict[str, str] = {
    "c#": "c#", "asp.net": "c#", "asp.net-mvc": "c#", ".net": "c#", "linq": "c#", "wpf": "c#",
    "winforms": "c#", "entity-framework": "c#", "xaml": "c#", "unity3d": "c#",
    "java": "java", "android": "java", "spring": "java", "hibernate": "java", "swing": "java",
    "eclipse": "java", "maven": "java", "jsp": "java", "java-ee": "java",
    "javascript": "javascript", "jquery": "javascript", "node.js": "javascript",
    "angularjs": "javascript", "reactjs": "javascript", "ajax": "javascript",
    "json": "javascript", "typescript": "javascript",
    "php": "php", "laravel": "php", "codeigniter": "php", "wordpress": "php", "symfony": "php",
    "c": "c/c++", "c++": "c/c++", "c++11": "c/c++", "qt": "c/c++", "pointers": "c/c++",
    "python": "python", "django": "python", "python-2.7": "python", "python-3.x": "python",
    "flask": "python", "pandas": "python", "numpy": "python",
    "ruby": "ruby", "ruby-on-rails": "ruby", "ruby-on-rails-3": "ruby", "rails": "ruby",
    "r": "r", "ggplot2": "r", "dplyr": "r",
    "vb.net": "vb", "vba": "vb", "vb6": "vb", "vbscript": "vb", "excel-vba": "vb",
    "swift": "swift", "swift3": "swift", "swiftui": "swift",
}

INDEX_DIRNAME = "threads"


def languages_of(tags: Iterable[str]) -> list[str]:
    """The languages ``tags`` imply, in :data:`LANGUAGES` order."""
    found = {_TAG_LANGUAGE[t.lower()] for t in tags if t.lower() in _TAG_LANGUAGE}
    return [language for language in LANGUAGES if language in found]


def thread_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """A thread's tags: its own (lower-cased, in order) plus the languages they imply."""
    own = [t.strip().lower() for t in tags if t.strip()]
    extra = [lang for lang in languages_of(own) if lang not in own]
    return tuple(dict.fromkeys(own + extra))


# --- the corpus -----------------------------------------------------------------------------
def load_threads(workspace: Workspace, limit: int | None = None) -> list[ThreadMeta]:
    """Every title we hold, deduplicated (a title with a post id wins over one without).

    Order: StaQC SQL questions, sample posts, tagged so_tags titles, unlabeled titles. ``limit``
    keeps the first ``limit`` of each source (for tests and quick builds).
    """
    import csv

    sources: list[list[ThreadMeta]] = []
    staqc: list[ThreadMeta] = []
    staqc_path = workspace.require("so_posts/staqc_sql_titles.tsv")
    with staqc_path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            title = (row.get("title") or "").strip()
            if title and (row.get("post_id") or "").strip():
                staqc.append(ThreadMeta(row["post_id"].strip(), title, (SQL_TAG,), "staqc"))
    sources.append(staqc)
    posts: list[ThreadMeta] = []
    with workspace.require("so_posts/so_sample_posts.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            title = str(record.get("title") or "").strip()
            if title:
                tags = [t for t in str(record.get("tags") or "").split("|") if t]
                posts.append(ThreadMeta(str(record["id"]), title, thread_tags(tags),
                                        "so_sample_posts"))
    sources.append(posts)
    titles, tag_lists = load_so_tags(workspace.require("so_tags/train.tsv"))
    sources.append([ThreadMeta(None, t.strip(), thread_tags(tags), "so_tags")
                    for t, tags in zip(titles, tag_lists, strict=True) if t.strip()])
    sources.append([ThreadMeta(None, t.strip(), (), "so_tags_unlabeled")
                    for t in load_titles(workspace.require("so_tags/unlabeled.tsv")) if t.strip()])

    seen: set[str] = set()
    threads: list[ThreadMeta] = []
    for source in sources:
        for meta in source[:limit] if limit is not None else source:
            key = " ".join(meta.title.lower().split())
            if key not in seen:
                seen.add(key)
                threads.append(meta)
    return threads


def thread_bodies(workspace: Workspace) -> dict[str, str]:
    """Post id -> question body (HTML), for the threads of the corpus that have one (the
    sample posts): what a generated answer may read besides the titles."""
    bodies: dict[str, str] = {}
    with workspace.require("so_posts/so_sample_posts.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                if record.get("body"):
                    bodies[str(record["id"])] = str(record["body"])
    return bodies


def index_dir(workspace: Workspace) -> Path:
    """Where the thread index is saved."""
    return workspace.data_dir / "indexes" / INDEX_DIRNAME


def build_thread_index(workspace: Workspace, encoder: Any, progress: Progress | None = None,
                       limit: int | None = None) -> ThreadIndex:
    """Embed every thread title with ``encoder`` and save a :class:`ThreadIndex` of them.

    ``encoder`` is anything with ``encode(texts)`` / ``encode_cached(texts, dir)`` and ``name``
    (an :class:`~nlp_core.encoder.Encoder`). Embeddings are cached, so a rebuild is cheap.
    """
    if progress:
        progress(0.0, "loading the thread corpus")
    threads = load_threads(workspace, limit)
    titles = [t.title for t in threads]
    chunk = 4096
    parts: list[np.ndarray] = []
    for start in range(0, len(titles), chunk):
        if progress:
            progress(0.05 + 0.9 * start / max(len(titles), 1),
                     f"embedding titles {start}/{len(titles)}")
        parts.append(encoder.encode_cached(titles[start:start + chunk],
                                           workspace.embeddings_cache))
    vectors = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), dtype=np.float32)
    index = ThreadIndex.build(vectors, threads, str(encoder.name))
    index.save(index_dir(workspace))
    if progress:
        progress(1.0, f"thread index of {len(index)} titles saved")
    return index


def load_or_build_thread_index(workspace: Workspace, encoder: Any | None = None,
                               progress: Progress | None = None) -> ThreadIndex:
    """The saved thread index if it matches ``encoder``, else a freshly built one (the first
    time, or after a change of encoder). A damaged saved index is an error that names the file:
    rebuilding 85k titles takes minutes, which is not for a bot's start to decide."""
    if encoder is None:
        encoder = default_encoder(workspace)
    directory = index_dir(workspace)
    try:
        return ThreadIndex.open(directory, str(encoder.name))
    except DamagedIndexError as error:
        raise DamagedModelError(directory, str(error),
                                "Rebuild it with `amlbot train threads`.") from None
    except (ThreadIndexError, FileNotFoundError) as error:
        if (directory / "info.json").is_file():
            log.warning("rebuilding the thread index: %s", error)
        return build_thread_index(workspace, encoder, progress, limit=workspace.thread_index_limit)


# --- searching ------------------------------------------------------------------------------
class ThreadSearcher:
    """Finds the threads most similar to a question, within its language first.

    Holds one encoder and one index; both are safe to share between threads.
    """

    def __init__(self, index: ThreadIndex, encoder: Any, *, min_similarity: float = 0.3,
                 language_bonus: float = 0.05, pool: int = 32) -> None:
        self.index = index
        self.encoder = encoder
        self.min_similarity = min_similarity
        self.language_bonus = language_bonus
        self.pool = pool

    @classmethod
    def load(cls, workspace: Workspace, encoder: Any | None = None,
             progress: Progress | None = None) -> ThreadSearcher:
        """The searcher over the saved (or a newly built) thread index."""
        if encoder is None:
            encoder = default_encoder(workspace)
        return cls(load_or_build_thread_index(workspace, encoder, progress), encoder)

    def search(self, question: str, language: str | None = None, k: int = 3,
               timings: dict[str, float] | None = None,
               vector: np.ndarray | None = None) -> list[Hit]:
        """The ``k`` best threads of the whole corpus, those of ``language`` (scoring at least
        ``min_similarity``) ranked up by ``language_bonus``. ``vector`` is the question's
        embedding, if the caller has it already."""
        started = time.perf_counter()
        if vector is None:
            vector = self.encoder.encode([question])
        encoded = time.perf_counter()
        # Threads of the predicted language get a small bonus; a much closer thread from
        # elsewhere (say, a SQL question asked as "C#") still wins.
        ranked: dict[int, tuple[float, Hit]] = {}
        wanted = {language.lower()} if language else set()
        # One scan of the index: a language's threads that are not among the nearest
        # ``pool`` overall would not outrank them with the small bonus anyway.
        for hit in self.index.search(vector, max(k, self.pool))[0]:
            in_language = bool(wanted.intersection(hit.meta.tags)) \
                and hit.score >= self.min_similarity
            bonus = self.language_bonus if in_language else 0.0
            ranked[hit.row] = (hit.score + bonus, replace(hit, preferred=in_language))
        matches = [m for _, m in sorted(ranked.values(), key=lambda x: -x[0])[:k]]
        if timings is not None:
            timings["encode_ms"] = 1000 * (encoded - started)
            timings["search_ms"] = 1000 * (time.perf_counter() - encoded)
        return matches
