"""The metadata side of a thread index: what each row is (post id, title, tags, source), in SQLite.

Metadata lives in RAM while an index is built in memory, in a file while a large one is built
(:func:`~indexes.builder.assemble` streams into one), and in a published, read-only file that
bot processes open without locks (``immutable=1``) and share through the page cache. It is read
per hit, never all at once, so an index of millions of threads does not hold its titles in RAM.
The ``tombstones`` table lists the rows removed from an HNSW graph that still holds their vectors.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS threads (row INTEGER PRIMARY KEY, post_id TEXT, title TEXT,"
    " tags TEXT, source TEXT)",
    "CREATE TABLE IF NOT EXISTS thread_tags (tag TEXT NOT NULL, row INTEGER NOT NULL,"
    " PRIMARY KEY (tag, row)) WITHOUT ROWID",
    # FAISS ids of removed threads still in an HNSW graph (no metadata rows any more)
    "CREATE TABLE IF NOT EXISTS tombstones (row INTEGER PRIMARY KEY)",
)
#: Rows per ``IN (...)`` query: well under SQLite's variable limit.
_BATCH = 500


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


def _meta_from_row(post_id: str | None, title: str, tags: str, source: str) -> ThreadMeta:
    return ThreadMeta(post_id or None, title, tuple(t for t in tags.split("|") if t), source)


def _batches(items: Sequence[object]) -> Iterable[tuple[list[object], str]]:
    """``items`` in chunks, each with its ``?,?,...`` placeholders."""
    for start in range(0, len(items), _BATCH):
        chunk = list(items[start:start + _BATCH])
        yield chunk, ",".join("?" * len(chunk))


class MetadataStore:
    """Thread metadata by row id: in RAM (``path`` None) or in a SQLite file.

    Not thread-safe on its own: :class:`~indexes.thread_index.ThreadIndex` serialises access.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        self._create_tables()
        #: True while this is a published file opened read-only.
        self.read_only = False

    def _create_tables(self) -> None:
        for statement in _SCHEMA:  # a format-2 file has no tombstones table
            self._db.execute(statement)

    @classmethod
    def open_published(cls, path: Path) -> MetadataStore:
        """A published metadata file, read-only and lock-free (it never changes)."""
        store = cls.__new__(cls)
        store._db = sqlite3.connect(f"file:{path.resolve()}?mode=ro&immutable=1", uri=True,
                                    check_same_thread=False)
        store.read_only = True
        return store

    def writable(self) -> None:
        """Copy a published file into RAM before changing it."""
        if not self.read_only:
            return
        memory = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.backup(memory)
        self._db.close()
        self._db = memory
        self._create_tables()
        self.read_only = False

    def add(self, rows: Sequence[int], metas: Sequence[ThreadMeta]) -> None:
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

    def delete(self, rows: Sequence[int], *, tombstone: bool) -> list[int]:
        """Delete these rows (and their tags); returns those that existed, which become
        tombstones when ``tombstone`` (an HNSW graph keeps their vectors)."""
        present: list[int] = []
        pairs: list[tuple[str, int]] = []  # thread_tags' primary key: no scan per row
        for chunk, marks in _batches(rows):
            for row, tags in self._db.execute(
                    f"SELECT row, tags FROM threads WHERE row IN ({marks})", chunk):
                present.append(int(row))
                pairs += [(tag, row) for tag in tags.split("|") if tag]
        with self._db:
            self._db.executemany("DELETE FROM threads WHERE row = ?", [(r,) for r in rows])
            self._db.executemany("DELETE FROM thread_tags WHERE tag = ? AND row = ?", pairs)
            if tombstone:
                self._db.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)",
                                     [(r,) for r in present])
        return present

    def tombstones(self) -> np.ndarray:
        """The tombstone rows, sorted (none in a format-2 file, which has no such table)."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                                " AND name = 'tombstones'").fetchone():
            return np.zeros(0, dtype=np.int64)
        return np.fromiter((r for (r,) in self._db.execute(
            "SELECT row FROM tombstones ORDER BY row")), dtype=np.int64)

    def clear_tombstones(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM tombstones")

    def rows_of(self, post_ids: Sequence[str]) -> list[int]:
        """Row ids of the threads with these post ids."""
        rows: list[int] = []
        for chunk, marks in _batches(post_ids):
            rows += [int(r) for (r,) in self._db.execute(
                f"SELECT row FROM threads WHERE post_id IN ({marks})", chunk)]
        return sorted(rows)

    def tag_mask(self, tags: Sequence[str], size: int) -> np.ndarray:
        """A boolean mask over ``size`` row ids: the rows having any of ``tags``."""
        mask = np.zeros(max(size, 1), dtype=bool)
        for chunk, marks in _batches(tags):
            rows = np.fromiter((r for (r,) in self._db.execute(
                f"SELECT row FROM thread_tags WHERE tag IN ({marks})", chunk)), dtype=np.int64)
            mask[rows] = True
        return mask

    def metas(self, rows: Sequence[int]) -> dict[int, ThreadMeta]:
        """Metadata of these rows (those that exist)."""
        out: dict[int, ThreadMeta] = {}
        for chunk, marks in _batches(rows):
            for row, post_id, title, tags, source in self._db.execute(
                    f"SELECT row, post_id, title, tags, source FROM threads"
                    f" WHERE row IN ({marks})", chunk):
                out[int(row)] = _meta_from_row(post_id, title, tags, source)
        return out

    def write(self, path: Path) -> None:
        """A copy of the whole store in the SQLite file ``path``."""
        target = sqlite3.connect(path)
        self._db.backup(target)
        target.close()

    def close(self) -> None:
        self._db.close()
