"""Text preparation for short programming questions: the NLP course's ``text_prepare`` and a
tokenizer that keeps names like ``c#``, ``c++``, ``.net`` and ``node.js`` whole."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# NLTK's English stop-word list (179 words), copied so nltk need not be installed.
STOPWORDS: frozenset[str] = frozenset(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
    yourselves he him his himself she she's her hers herself it it's its itself they them their
    theirs themselves what which who whom this that that'll these those am is are was were be been
    being have has had having do does did doing a an the and but if or because as until while of
    at by for with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how all any
    both each few more most other some such no nor not only own same so than too very s t can will
    just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn
    didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn
    mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn
    wouldn't""".split()  # noqa: SIM905 - a word list reads best as text
)

_REPLACE_BY_SPACE = re.compile(r"[/(){}\[\]\|@,;]")
_BAD_SYMBOLS = re.compile(r"[^0-9a-z #+_]")
# A token is a run of word characters, optionally dotted (node.js, vb.net, python3.6), optionally
# followed by # or + (c#, c++, f#); ``.net`` on its own is kept with its leading dot.
_TOKEN = re.compile(r"(?<![\w.])\.net\b|[a-z0-9_]+(?:\.[a-z0-9_]+)*[#+]*")


def text_prepare(text: str) -> str:
    """The course's text preparation: lowercase, drop punctuation and English stop words.

    ``[/(){}[]|@,;]`` become spaces, characters outside ``[0-9a-z #+_]`` are removed, stop
    words are dropped and runs of spaces collapse to one.
    """
    text = _REPLACE_BY_SPACE.sub(" ", text.lower())
    text = _BAD_SYMBOLS.sub("", text)
    return " ".join(word for word in text.split() if word not in STOPWORDS)


def tokenize(text: str, *, drop_stopwords: bool = False) -> list[str]:
    """Lowercased tokens that keep programming names whole (``c#``, ``c++``, ``.net``,
    ``node.js``, ``asp.net``); trailing sentence dots are not part of a token."""
    tokens = _TOKEN.findall(text.lower())
    if drop_stopwords:
        tokens = [token for token in tokens if token not in STOPWORDS]
    return tokens


def char_ngram_tfidf(ngram_range: tuple[int, int] = (2, 5), n_features: int = 2**18) -> Any:
    """Char n-gram (within words) TF-IDF with hashed features: no vocabulary to pickle, so a
    saved model loads in milliseconds."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        HashingVectorizer(analyzer="char_wb", ngram_range=ngram_range, n_features=n_features,
                          alternate_sign=False, norm=None, dtype=np.float32),
        TfidfTransformer(sublinear_tf=True),
    )
