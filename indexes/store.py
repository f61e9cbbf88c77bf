"""Versioned thread indexes on disk, shared by several bot processes.

Layout of a store ``root``::

    root/versions/<version>/   a saved ThreadIndex (never changed once published)
    root/CURRENT               the name of the live version, replaced atomically (os.replace)

A writer saves a new version beside the old ones, then points ``CURRENT`` at it; readers
(:class:`LiveThreadIndex`) look at ``CURRENT`` at most every ``check_every`` seconds and reopen,
so they pick up the new version without a restart and never see a half-written one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from indexes.errors import ThreadIndexError
from indexes.persistence import INFO_FILE
from indexes.thread_index import Hit, ThreadIndex

CURRENT = "CURRENT"


class IndexStore:
    """The versions of one thread index under ``root`` and the pointer to the live one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def current_version(self) -> str | None:
        """The live version's name, or None when nothing was published yet."""
        try:
            name = (self.root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def current_dir(self) -> Path:
        """The live version's directory, or a :class:`ThreadIndexError`."""
        name = self.current_version()
        if name is None:
            raise ThreadIndexError(
                f"no thread index in {self.root}: build one with `amlbot index build`"
            )
        return self.versions_dir / name

    def new_version_dir(self) -> Path:
        """A fresh, empty directory for a version being written (not yet live)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.versions_dir / f"v{stamp}-{time.time_ns() % 10**9:09d}-{os.getpid()}"
        path.mkdir()
        return path

    def publish_dir(self, directory: Path, *, keep: int = 3) -> str:
        """Make the saved index in ``directory`` (inside :attr:`versions_dir`) the live one."""
        ThreadIndex.read_info(directory)  # refuses a directory without a complete index
        if directory.parent.resolve() != self.versions_dir.resolve():
            raise ThreadIndexError(f"{directory} is not a version of {self.root}")
        with self._locked():
            tmp = self.root / f"{CURRENT}.tmp-{os.getpid()}-{threading.get_ident()}"
            tmp.write_text(directory.name + "\n")
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self.root / CURRENT)
            self._prune(keep)
        return directory.name

    def publish(self, index: ThreadIndex, *, keep: int = 3) -> str:
        """Save ``index`` as a new version and switch ``CURRENT`` to it; old versions beyond
        ``keep`` go (readers that still map them keep their pages until they reopen)."""
        directory = self.new_version_dir()
        index.save(directory)
        return self.publish_dir(directory, keep=keep)

    def open(self, model_name: str | None = None, *, model_version: str | None = None,
             mmap: bool = True, verify: bool = True) -> ThreadIndex:
        """The live version, opened (see :meth:`ThreadIndex.open`)."""
        last: Exception | None = None
        for _ in range(5):  # CURRENT may move (and the old version go) while we open it
            directory = self.current_dir()
            try:
                return ThreadIndex.open(directory, model_name, model_version=model_version,
                                        mmap=mmap, verify=verify)
            except ThreadIndexError as error:
                if directory == self.current_dir():
                    raise
                last = error
        raise ThreadIndexError(f"{self.root} kept changing while opening it: {last}")

    def _locked(self) -> _FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return _FileLock(self.root / ".lock")

    def _prune(self, keep: int) -> None:
        live = self.current_version()
        versions = sorted(
            (p for p in self.versions_dir.iterdir() if p.is_dir() and (p / INFO_FILE).is_file()),
            key=lambda p: p.stat().st_mtime,
        )
        for path in versions[:-keep] if keep > 0 else versions:
            if path.name != live:
                shutil.rmtree(path, ignore_errors=True)


class _FileLock:
    """An exclusive ``flock`` on a file, so two writers never publish at the same moment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: int | None = None

    def __enter__(self) -> _FileLock:
        self._handle = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None


class LiveThreadIndex:
    """A reader of an :class:`IndexStore` that follows ``CURRENT``: at most every
    ``check_every`` seconds a search looks at the pointer and, when it moved, opens the new
    version (memory-mapped) and swaps it in; a failed reopen keeps the old one serving."""

    def __init__(self, root: Path, model_name: str | None = None, *,
                 model_version: str | None = None, check_every: float = 5.0) -> None:
        self.store = IndexStore(root)
        self.model_name = model_name
        self.model_version = model_version
        self.check_every = check_every
        self._lock = threading.Lock()
        self._index: ThreadIndex | None = None
        self._version: str | None = None
        self._checked = 0.0
        self.reload_errors = 0

    @property
    def version(self) -> str | None:
        return self._version

    @property
    def index(self) -> ThreadIndex:
        """The version in use, reopened first if ``CURRENT`` moved (at most every N s)."""
        now = time.monotonic()
        if self._index is not None and now - self._checked < self.check_every:
            return self._index
        with self._lock:
            self._checked = now
            name = self.store.current_version()
            if name is not None and name != self._version:
                try:
                    index = ThreadIndex.open(self.store.versions_dir / name, self.model_name,
                                             model_version=self.model_version)
                except ThreadIndexError:
                    if self._index is None:
                        index = self.store.open(self.model_name,
                                                model_version=self.model_version)
                        name = index.source_dir.name if index.source_dir else name
                    else:
                        self.reload_errors += 1
                        return self._index
                self._index, self._version = index, name
            if self._index is None:
                self._index = self.store.open(self.model_name, model_version=self.model_version)
            assert self._index is not None
            return self._index

    def search(self, query_vectors: np.ndarray, k: int = 10,
               filter: Iterable[str] | None = None) -> list[list[Hit]]:
        """:meth:`ThreadIndex.search` on the live version."""
        return self.index.search(query_vectors, k, filter=filter)

    def __len__(self) -> int:
        return len(self.index)
