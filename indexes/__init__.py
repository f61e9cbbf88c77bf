"""Vector indexes of StackOverflow threads (FAISS), with their metadata beside them."""

from indexes.thread_index import Hit, ThreadIndex, ThreadIndexError, ThreadMeta

__all__ = ["Hit", "ThreadIndex", "ThreadIndexError", "ThreadMeta"]
