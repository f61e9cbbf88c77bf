"""Intent of a free-text message: ``chitchat``, ``programming`` or ``tool:<name>``.

Programming examples are StackOverflow titles, chit-chat examples are Chit Chat Challenge
utterances and chatterbot-corpus statements (minus its ``coding`` and ``tech_support`` files),
and each course tool brings its own plain-English phrasings (``tool_examples``). Features are
word TF-IDF (uni+bigrams of :func:`tokenize`) and char TF-IDF (2-5 grams within words); the
classifier is a one-vs-rest linear SVM whose scores become probabilities through a softmax with
a temperature tuned (log-loss) on a hashed validation part, so ``confidence`` can be compared
with ``workspace.intent_threshold``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.artifacts import load_text_model, save_text_model
from nlp_core.corpora import (
    chatterbot_statements,
    chitchat_utterances,
    in_heldout,
    load_so_tags,
    load_titles,
    read_pairs,
)
from nlp_core.tags import split_so_tags
from nlp_core.text import char_ngram_tfidf, tokenize
from nlp_core.tfidf import FrozenTfidf, LinearScorer
from nlp_core.workspace import Workspace

MODEL_NAME = "intent"
MODEL_VERSION = "3"
CHITCHAT = "chitchat"
PROGRAMMING = "programming"
TOOL_PREFIX = "tool:"
#: Fraction of each intent source held out (by text hash) for ``amlbot eval intent``.
HELDOUT_FRACTION = 0.1
HELDOUT_SALT = "intent"
#: Tools with fewer phrasings than this keep them all for training.
MIN_TOOL_PHRASINGS_TO_HOLD_OUT = 5
#: Chit Chat Challenge utterances used (by text hash): enough to balance the technical titles.
CHITCHAT_FRACTION = 0.4


@dataclass(frozen=True)
class IntentCorpus:
    """Texts and intents, split into the part models train on and the held-out part."""

    train_texts: list[str]
    train_intents: list[str]
    test_texts: list[str]
    test_intents: list[str]


def tool_intent(name: str) -> str:
    """The intent label of a course tool."""
    return f"{TOOL_PREFIX}{name}"


class IntentClassifier:
    """Intent classifier (scikit-learn style) with calibrated per-intent probabilities.

    ``tool_weight`` is the sample weight of each tool phrasing (tools have a few phrasings
    against tens of thousands of other texts). The validation part (10 % of the non-tool texts)
    only tunes the temperature; ``refit`` retrains on all texts afterwards (twice the time, no
    measurable gain).
    """

    def __init__(self, *, C: float = 0.5, tool_weight: float = 20.0, min_df: int = 2,
                 validation_fraction: float = 0.1, refit: bool = False) -> None:
        self.C = C
        self.tool_weight = tool_weight
        self.min_df = min_df
        self.validation_fraction = validation_fraction
        self.refit = refit

    @staticmethod
    def _features(vectorizers: Sequence[Any], texts: Sequence[str]) -> Any:
        """The sparse training matrix of fitted scikit-learn vectorisers (fit time only)."""
        from scipy.sparse import hstack

        return hstack([v.transform(texts) for v in vectorizers]).tocsr().astype(np.float32)

    def fit(
        self,
        texts: Sequence[str],
        intents: Sequence[str],
        *,
        tool_examples: Mapping[str, Sequence[str]] | None = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> IntentClassifier:
        """Learn intents from labelled texts plus each tool's phrasings (tool name -> texts)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        report = progress or (lambda _fraction, _detail: None)
        started = time.perf_counter()
        all_texts = list(texts)
        all_intents = list(intents)
        if len(all_texts) != len(all_intents):
            raise ValueError("texts and intents differ in length")
        for name, phrasings in (tool_examples or {}).items():
            all_texts.extend(phrasings)
            all_intents.extend([tool_intent(name)] * len(phrasings))
        labels = np.asarray(all_intents)
        self.classes_ = np.unique(labels)
        if len(self.classes_) < 2:
            raise ValueError("need at least two intents")
        weights = np.ones(len(labels), dtype=np.float64)
        for intent in self.classes_:
            if str(intent).startswith(TOOL_PREFIX):
                weights[labels == intent] = self.tool_weight
        # Tool phrasings are few: every one trains; the validation part only tunes temperature.
        val = np.array([in_heldout(t, self.validation_fraction, "intent-val") and
                        not intent.startswith(TOOL_PREFIX)
                        for t, intent in zip(all_texts, all_intents, strict=True)])
        report(0.05, "vectorising")
        word = TfidfVectorizer(
            tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=(1, 2),
            min_df=self.min_df, sublinear_tf=True).fit(all_texts)
        char = char_ngram_tfidf((2, 5)).fit(all_texts)
        x = self._features([word, char], all_texts)
        # prediction reproduces the fitted vectorisers without scikit-learn
        self.word_tfidf_ = FrozenTfidf.from_sklearn(word, tokenize)
        self.char_tfidf_ = FrozenTfidf.from_sklearn(char)

        def train(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            svm = LinearSVC(C=self.C).fit(x[mask], labels[mask], sample_weight=weights[mask])
            coef = svm.coef_.T.astype(np.float32)
            intercept = svm.intercept_.astype(np.float32)
            if len(self.classes_) == 2:  # binary LinearSVC: one column, for classes_[1]
                coef = np.hstack([-coef, coef])
                intercept = np.array([-intercept[0], intercept[0]], dtype=np.float32)
            return coef, intercept

        report(0.2, "training on the fit part")
        self.coef_, self.intercept_ = train(~val)
        if val.any():
            report(0.6, "calibrating")
            scores = self._scores(x[val])
            target = np.searchsorted(self.classes_, labels[val])
            self.temperature_ = _tune_temperature(scores, target)
            self.validation_accuracy_ = float((scores.argmax(axis=1) == target).mean())
        else:
            self.temperature_, self.validation_accuracy_ = 0.25, float("nan")
        if self.refit:
            report(0.7, "training on all texts")
            self.coef_, self.intercept_ = train(np.ones(len(labels), dtype=bool))
        self.n_train_ = len(labels)
        self.fit_seconds_ = time.perf_counter() - started
        report(1.0, f"validation accuracy {self.validation_accuracy_:.4f}")
        return self

    def _scores(self, x: Any) -> np.ndarray:
        scores: np.ndarray = np.asarray(x @ self.coef_) + self.intercept_
        return scores

    def _scorer(self) -> LinearScorer:
        return LinearScorer([(self.word_tfidf_, 1.0), (self.char_tfidf_, 1.0)], self.coef_,
                            self.intercept_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("IntentClassifier is not fitted; call fit() or load()")

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Raw per-intent scores, shape (n_texts, n_intents), columns in ``classes_`` order."""
        self._check_fitted()
        return self._scorer().scores(list(texts))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated per-intent probabilities, columns in ``classes_`` order."""
        return _softmax(self.decision_function(texts) / self.temperature_)

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most likely intent of each text."""
        scores = self.decision_function(texts)
        return [str(self.classes_[k]) for k in scores.argmax(axis=1)]

    def rank(self, text: str, top: int = 3) -> list[tuple[str, float]]:
        """The ``top`` intents of one text with their probabilities, best first (the first is
        ``Understanding.intent``/``confidence``, the rest its ``alternatives``)."""
        proba = self.predict_proba([text])[0]
        order = np.argsort(-proba)[:top]
        return [(str(self.classes_[k]), float(proba[k])) for k in order]

    # --- persistence -------------------------------------------------------------------------
    def save(self, directory: Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write the model (JSON and ``.npy``, see :mod:`nlp_core.artifacts`) to ``directory``."""
        self._check_fitted()
        return save_text_model(
            directory, MODEL_NAME, MODEL_VERSION, word=self.word_tfidf_, char=self.char_tfidf_,
            coef=self.coef_, intercept=self.intercept_,
            intents=[str(c) for c in self.classes_], n_train=self.n_train_,
            fit_seconds=round(self.fit_seconds_, 1), temperature=self.temperature_,
            params={"C": self.C, "tool_weight": self.tool_weight, "min_df": self.min_df,
                    "validation_fraction": self.validation_fraction, "refit": self.refit},
            metrics={"validation_accuracy": self.validation_accuracy_, **(metrics or {})},
        )

    @classmethod
    def load(cls, directory: Path) -> IntentClassifier:
        """Load a model written by :meth:`save` (no pickles, no scikit-learn import)."""
        stamp, word, char, coef, intercept = load_text_model(directory, MODEL_NAME,
                                                             MODEL_VERSION)
        model = cls(**stamp["params"])
        model.word_tfidf_, model.char_tfidf_ = word, char
        model.coef_, model.intercept_ = coef, intercept
        model.classes_ = np.asarray(stamp["intents"])
        model.temperature_ = float(stamp["temperature"])
        model.validation_accuracy_ = float(stamp["metrics"]["validation_accuracy"])
        model.n_train_ = int(stamp["n_train"])
        model.fit_seconds_ = float(stamp["fit_seconds"])
        return model


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _tune_temperature(scores: np.ndarray, target: np.ndarray) -> float:
    """The softmax temperature with the lowest validation log-loss (grid search)."""
    best = (np.inf, 1.0)
    rows = np.arange(len(target))
    for temperature in np.geomspace(0.02, 2.0, 41):
        proba = _softmax(scores / temperature)
        loss = float(-np.log(np.clip(proba[rows, target], 1e-12, 1.0)).mean())
        best = min(best, (loss, float(temperature)))
    return best[1]


# --- corpus and training entry points ---------------------------------------------------------
def build_corpus(
    workspace: Workspace,
    tool_examples: Mapping[str, Sequence[str]] | None = None,
    *,
    max_programming: int | None = None,
    max_chitchat: int | None = None,
) -> IntentCorpus:
    """The intent corpus with its fixed held-out part.

    Programming questions are StackOverflow titles (so_tags, StaQC's SQL questions) and
    AskUbuntu titles (Linux, tooling); chit-chat comes from the dialogue corpora. SO titles of
    so_tags/train.tsv follow the tag model's split (its test titles are held out here too); the
    other titles, dialogue texts and tool phrasings are held out by text hash.
    ``max_*`` cap each side (tests train on subsets).
    """

    train_x: list[str] = []
    train_y: list[str] = []
    test_x: list[str] = []
    test_y: list[str] = []

    def add(texts: Sequence[str], intent: str, heldout: Callable[[str], bool]) -> None:
        for text in texts:
            if heldout(text):
                test_x.append(text)
                test_y.append(intent)
            else:
                train_x.append(text)
                train_y.append(intent)

    def hashed(text: str) -> bool:
        return in_heldout(text, HELDOUT_FRACTION, HELDOUT_SALT)

    titles, _ = load_so_tags(workspace.require("so_tags/train.tsv"))
    _, tag_test = split_so_tags(titles)
    tag_test_titles = {titles[i] for i in tag_test}
    askubuntu = read_pairs(workspace.require("askubuntu_dups/train_titles.tsv"))
    programming = _dedupe(
        titles + load_titles(workspace.require("so_tags/unlabeled.tsv"))
        + [t for pair in askubuntu for t in (pair.title1, pair.title2)]
        + load_titles(workspace.require("so_posts/staqc_sql_titles.tsv"))
    )
    chitchat = _dedupe(
        [t for t in chitchat_utterances() if in_heldout(t, CHITCHAT_FRACTION, "chitchat-use")]
        + chatterbot_statements()
    )
    if max_programming is not None:
        programming = programming[:max_programming]
    if max_chitchat is not None:
        chitchat = chitchat[:max_chitchat]
    labelled = set(titles)
    add(programming, PROGRAMMING,
        lambda t: t in tag_test_titles or (t not in labelled and hashed(t)))
    add(chitchat, CHITCHAT, hashed)
    for name, phrasings in (tool_examples or {}).items():
        unique = _dedupe(list(phrasings))
        # A tool with few phrasings needs them all to train; only larger sets lend some to test.
        add(unique, tool_intent(name),
            hashed if len(unique) >= MIN_TOOL_PHRASINGS_TO_HOLD_OUT else lambda _t: False)
    return IntentCorpus(train_x, train_y, test_x, test_y)


def _dedupe(texts: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for text in texts:
        text = text.strip()
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def model_dir(workspace: Workspace) -> Path:
    """Where the default intent model lives: ``<data_dir>/models/intent``."""
    return workspace.data_dir / "models" / MODEL_NAME


def train_intent(
    workspace: Workspace,
    progress: Callable[[float, str], None] | None = None,
    *,
    tool_examples: Mapping[str, Sequence[str]] | None = None,
) -> IntentClassifier:
    """Train the default intent model on the corpus's training part and save it.

    Tool phrasings are split like the rest, so ``amlbot eval intent`` can test held-out ones.
    """
    corpus = build_corpus(workspace, tool_examples)
    tools = _tools_of(corpus.train_texts, corpus.train_intents)
    plain = [(t, i) for t, i in zip(corpus.train_texts, corpus.train_intents, strict=True)
             if not i.startswith(TOOL_PREFIX)]
    model = IntentClassifier().fit([t for t, _ in plain], [i for _, i in plain],
                                   tool_examples=tools, progress=progress)
    model.save(model_dir(workspace), {"tools": sorted(tools)})
    return model


def _tools_of(texts: Sequence[str], intents: Sequence[str]) -> dict[str, list[str]]:
    tools: dict[str, list[str]] = {}
    for text, intent in zip(texts, intents, strict=True):
        if intent.startswith(TOOL_PREFIX):
            tools.setdefault(intent[len(TOOL_PREFIX):], []).append(text)
    return tools


def load_or_train_intent(
    workspace: Workspace,
    progress: Callable[[float, str], None] | None = None,
    *,
    tool_examples: Mapping[str, Sequence[str]] | None = None,
) -> IntentClassifier:
    """The saved default intent model, trained first if missing, of another version, or if
    ``tool_examples`` names a tool the saved model does not know."""
    directory = model_dir(workspace)
    try:
        model = IntentClassifier.load(directory)
    except (FileNotFoundError, ValueError, TypeError):
        return train_intent(workspace, progress, tool_examples=tool_examples)
    known = {str(c) for c in model.classes_}
    if any(tool_intent(name) not in known for name in (tool_examples or {})):
        return train_intent(workspace, progress, tool_examples=tool_examples)
    return model
