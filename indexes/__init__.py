"""Vector indexes of StackOverflow threads (FAISS), with their metadata beside them.

The index stores vectors and metadata and knows no encoder: ``nlp_core`` reads the corpora,
embeds the titles and hands the vectors in.

The names below load on first use, so that a caller of ``indexes.persistence`` alone
(checksums, atomic writes) does not pay for NumPy and FAISS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indexes.errors import DamagedIndexError, ThreadIndexError
    from indexes.metadata import ThreadMeta
    from indexes.thread_index import Hit, ThreadIndex

_HOMES = {
    "DamagedIndexError": "indexes.errors",
    "ThreadIndexError": "indexes.errors",
    "ThreadMeta": "indexes.metadata",
    "Hit": "indexes.thread_index",
    "ThreadIndex": "indexes.thread_index",
}

__all__ = ["DamagedIndexError", "Hit", "ThreadIndex", "ThreadIndexError", "ThreadMeta"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'indexes' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
