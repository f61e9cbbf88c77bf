"""Entities the bot reads in a message: programming entities (languages, libraries, errors) and
tool-command slots, plus the conlleval chunk scorer. (The course's Twitter NER is an offline
model: ``nlp_core.offline.twitter_ner``.)

Heavy imports (spaCy) happen inside the functions that need them, so importing this package is
cheap.
"""

from nlp_core.ner.conlleval import score as conll_score
from nlp_core.ner.slots import extract_slots

__all__ = ["conll_score", "extract_slots"]
