"""Vector indexes of StackOverflow threads (FAISS), with their metadata beside them.

The index stores vectors and metadata and knows no encoder: ``nlp_core`` reads the corpora,
embeds the titles and hands the vectors in.
"""

from indexes.errors import DamagedIndexError, ThreadIndexError
from indexes.metadata import ThreadMeta
from indexes.thread_index import Hit, ThreadIndex

__all__ = ["DamagedIndexError", "Hit", "ThreadIndex", "ThreadIndexError", "ThreadMeta"]
