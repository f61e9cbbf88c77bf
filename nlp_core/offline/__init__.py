"""Models that are trained and measured offline, and that the bot does not use when answering:
the duplicate-question ranker (AskUbuntu pairs, ``amlbot train|eval duplicates``) and the Twitter
named-entity recogniser of the NLP course (``amlbot train|eval ner``). The bot's own answer path
is ``nlp_core.pipeline``."""
