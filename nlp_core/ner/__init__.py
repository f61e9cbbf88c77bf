"""Entities: Twitter NER (a trained model), programming entities and tool-command slots.

Heavy imports (torch, transformers, spaCy) happen inside the functions that need them, so importing
this package is cheap.
"""

from nlp_core.ner.conlleval import score as conll_score
from nlp_core.ner.slots import extract_slots
from nlp_core.ner.twitter import TwitterNER, load_or_train_ner, read_conll, train_ner

__all__ = ["TwitterNER", "conll_score", "extract_slots", "load_or_train_ner", "read_conll",
           "train_ner"]
