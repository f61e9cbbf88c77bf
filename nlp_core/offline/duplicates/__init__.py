"""Duplicate-question ranking on the AskUbuntu pairs: metrics, BM25, the
:class:`~nlp_core.offline.duplicates.ranker.DuplicateRanker` with its learned re-ranker, and the
evaluation. Offline only: the bot's thread search is one MiniLM stage (``nlp_core.threads``)."""
