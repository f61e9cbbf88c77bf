"""The NLP course's week-2 named-entity recogniser for tweets (WNUT-16): reader, tokenizer,
network, estimator and training. Offline only: the bot tags programming entities with
``nlp_core.ner.programming``."""
