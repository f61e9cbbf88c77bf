"""Tags and main language of a programming question, trained on StackOverflow titles.

The model is one linear SVM per tag over word TF-IDF (uni+bigrams of :func:`tokenize`), char
TF-IDF (3-5 grams) and, optionally, MiniLM sentence embeddings. One global decision threshold is
tuned for F1 weighted on a validation part carved from the training titles, every title gets at
least its best tag, and scores are mapped to probabilities by a Platt sigmoid fitted on that
validation part.

Main language rules (``LANGUAGES`` are the NLP course's ten):

* a language tag names it directly: ``c#``, ``java``, ``javascript``, ``php``, ``python``,
  ``ruby``, ``r``, ``swift``; ``c`` and ``c++`` are ``c/c++``; ``vb.net``, ``vba``, ``vb6``,
  ``vbscript`` and ``visual-basic`` are ``vb``;
* without one, a framework tag implies it (``IMPLIED_LANGUAGE``: jquery -> javascript,
  django -> python, ruby-on-rails -> ruby, laravel -> php, asp.net/wpf/linq -> c#,
  spring/android -> java...);
* the main language of a titled post is the first such language in its tag order; a title with
  none (``html``, ``sql``, ``ios``...) has no language.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.artifacts import load_text_model, save_text_model
from nlp_core.corpora import in_heldout, load_so_tags
from nlp_core.encoder import Encoder
from nlp_core.text import tokenize
from nlp_core.tfidf import FrozenTfidf, LinearScorer
from nlp_core.workspace import Workspace

MODEL_NAME = "tags"
MODEL_VERSION = "2"
LANGUAGES: tuple[str, ...] = (
    "c#", "java", "javascript", "php", "c/c++", "python", "ruby", "r", "vb", "swift",
)
LANGUAGE_OF_TAG: dict[str, str] = {
    "c#": "c#", "java": "java", "javascript": "javascript", "php": "php", "python": "python",
    "ruby": "ruby", "r": "r", "swift": "swift", "c": "c/c++", "c++": "c/c++",
    "vb.net": "vb", "vba": "vb", "vb6": "vb", "vbscript": "vb", "visual-basic": "vb",
    "python-2.7": "python", "python-3.x": "python",
}
IMPLIED_LANGUAGE: dict[str, str] = {
    "jquery": "javascript", "angularjs": "javascript", "node.js": "javascript",
    "reactjs": "javascript",
    "django": "python", "flask": "python", "numpy": "python", "pandas": "python",
    "ruby-on-rails": "ruby", "ruby-on-rails-3": "ruby",
    "laravel": "php", "codeigniter": "php", "wordpress": "php",
    "asp.net": "c#", "asp.net-mvc": "c#", ".net": "c#", "wpf": "c#", "winforms": "c#",
    "linq": "c#", "entity-framework": "c#", "xaml": "c#", "wcf": "c#",
    "spring": "java", "spring-mvc": "java", "hibernate": "java", "jsp": "java",
    "servlets": "java", "swing": "java", "maven": "java", "android": "java",
}
#: Split of so_tags/train.tsv: titles hashed below this fraction are the fixed test split.
TEST_FRACTION = 0.2
TEST_SALT = "so_tags"
#: Part of the training split held out to tune the threshold and the sigmoid.
VALIDATION_FRACTION = 0.15
VALIDATION_SALT = "so_tags-val"


def languages_of(tags: Sequence[str]) -> list[str]:
    """Languages a tag list names directly, else those its frameworks imply (tag order)."""
    found: list[str] = []
    for table in (LANGUAGE_OF_TAG, IMPLIED_LANGUAGE):
        for tag in tags:
            language = table.get(tag.lower())
            if language and language not in found:
                found.append(language)
        if found:
            return found
    return found


def main_language(tags: Sequence[str]) -> str | None:
    """The post's main language by the module's rules, or ``None``."""
    found = languages_of(tags)
    return found[0] if found else None


def split_so_tags(titles: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indices of the fixed (train, test) split of a so_tags file: the default tag model trains
    on the first and ``amlbot eval tags`` scores on the second."""
    train: list[int] = []
    test: list[int] = []
    for index, title in enumerate(titles):
        (test if in_heldout(title, TEST_FRACTION, TEST_SALT) else train).append(index)
    return train, test


class TagClassifier:
    """Multi-label tags over a fixed tag set, plus the main language (scikit-learn style).

    ``use_embeddings`` adds MiniLM sentence embeddings (weighted by ``embedding_weight``) to the
    TF-IDF features: +0.03 F1 weighted, at the cost of encoding every title. ``refit``
    retrains on all titles once the validation part has tuned the threshold and the sigmoid
    (+0.003 F1 weighted on the test split).
    """

    def __init__(
        self,
        *,
        C: float = 0.3,
        use_embeddings: bool = True,
        embedding_weight: float = 1.0,
        char_weight: float = 0.7,
        min_df: int = 2,
        validation_fraction: float = VALIDATION_FRACTION,
        refit: bool = True,
    ) -> None:
        self.C = C
        self.use_embeddings = use_embeddings
        self.embedding_weight = embedding_weight
        self.char_weight = char_weight
        self.min_df = min_df
        self.validation_fraction = validation_fraction
        self.refit = refit

    # --- features ----------------------------------------------------------------------------
    def _embed(self, titles: Sequence[str], embeddings: np.ndarray | None) -> np.ndarray | None:
        if not self.use_embeddings:
            return None
        if embeddings is not None:
            if len(embeddings) != len(titles):
                raise ValueError("embeddings and titles differ in length")
            return np.asarray(embeddings, dtype=np.float32)
        encoder = getattr(self, "_encoder", None)
        if encoder is None:
            encoder = self._encoder = Encoder()
        vectors: np.ndarray = encoder.encode(list(titles))
        return vectors

    def _features(self, vectorizers: Sequence[Any], titles: Sequence[str],
                  embeddings: np.ndarray | None) -> Any:
        """The sparse training matrix of fitted scikit-learn vectorisers (fit time only)."""
        from scipy.sparse import csr_matrix, hstack

        word, char = vectorizers
        parts = [word.transform(titles), char.transform(titles) * self.char_weight]
        if embeddings is not None:
            parts.append(csr_matrix(embeddings * self.embedding_weight))
        return hstack(parts).tocsr()

    # --- training ----------------------------------------------------------------------------
    def fit(
        self,
        titles: Sequence[str],
        tag_lists: Sequence[Sequence[str]],
        *,
        embeddings: np.ndarray | None = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> TagClassifier:
        """Learn tags from titles; tunes the threshold on a hashed validation part."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score
        from sklearn.preprocessing import MultiLabelBinarizer

        report = progress or (lambda _fraction, _detail: None)
        started = time.perf_counter()
        titles = list(titles)
        if len(titles) != len(tag_lists):
            raise ValueError("titles and tag_lists differ in length")
        report(0.0, "embedding titles" if self.use_embeddings else "vectorising")
        vectors = self._embed(titles, embeddings)
        binarizer = MultiLabelBinarizer()
        labels = binarizer.fit_transform([list(t) for t in tag_lists])
        self.classes_ = np.asarray(binarizer.classes_)
        val = np.array([in_heldout(t, self.validation_fraction, VALIDATION_SALT)
                        for t in titles])
        if val.sum() < 20 or (~val).sum() < 20:
            raise ValueError("too few titles to carve a validation part")
        fit_idx = np.flatnonzero(~val)
        val_idx = np.flatnonzero(val)

        def fit_on(idx: np.ndarray) -> list[Any]:
            subset = [titles[i] for i in idx]
            word = TfidfVectorizer(
                tokenizer=tokenize, token_pattern=None, lowercase=False, ngram_range=(1, 2),
                min_df=self.min_df, sublinear_tf=True).fit(subset)
            char = TfidfVectorizer(
                analyzer="char_wb", ngram_range=(3, 5), min_df=max(self.min_df, 3),
                sublinear_tf=True, max_features=100_000).fit(subset)
            x = self._features([word, char], subset, None if vectors is None else vectors[idx])
            self._fit_svms(x, labels[idx], report)
            # prediction reproduces the fitted vectorisers without scikit-learn
            self.word_tfidf_ = FrozenTfidf.from_sklearn(word, tokenize)
            self.char_tfidf_ = FrozenTfidf.from_sklearn(char)
            return [word, char]

        report(0.05, "training on the fit part")
        fitted = fit_on(fit_idx)
        x_val = self._features(fitted, [titles[i] for i in val_idx],
                               None if vectors is None else vectors[val_idx])
        scores = self._decision(x_val)
        y_val = labels[val_idx]
        best = (-1.0, 0.0)
        for threshold in np.linspace(-0.8, 0.2, 41):
            predicted = self._with_best_tag(scores, float(threshold))
            f1 = float(f1_score(y_val, predicted, average="weighted", zero_division=0))
            best = max(best, (f1, float(threshold)))
        self.validation_f1_weighted_, self.threshold_ = best
        # Platt scaling of (score - threshold) on the validation part: P = 0.5 at the threshold.
        platt = LogisticRegression(C=1e4, fit_intercept=False)
        platt.fit((scores - self.threshold_).reshape(-1, 1), y_val.reshape(-1))
        self.sigmoid_scale_ = float(platt.coef_[0, 0])
        if self.refit:
            report(0.55, "refitting on all titles")
            fit_on(np.arange(len(titles)))
        self.n_train_ = len(titles)
        self.fit_seconds_ = time.perf_counter() - started
        report(1.0, f"validation F1 weighted {self.validation_f1_weighted_:.3f}")
        return self

    def _fit_svms(self, x: Any, y: np.ndarray,
                  report: Callable[[float, str], None]) -> None:
        """One linear SVM per tag, kept as (coef, intercept) so predicting is one matmul."""
        from sklearn.svm import LinearSVC

        weights: list[tuple[np.ndarray, float]] = []
        n = y.shape[1]
        for j in range(n):
            column = y[:, j]
            if column.min() == column.max():
                weights.append((np.zeros(x.shape[1], dtype=np.float32),
                                1.0 if column.max() else -10.0))
                continue
            svm = LinearSVC(C=self.C).fit(x, column)
            weights.append((svm.coef_[0].astype(np.float32), float(svm.intercept_[0])))
            if j % 10 == 9:
                report(0.05 + 0.45 * (j + 1) / n, f"tag {j + 1}/{n}")
        self.coef_ = np.stack([w for w, _ in weights], axis=1)
        self.intercept_ = np.array([b for _, b in weights], dtype=np.float32)

    def _decision(self, x: Any) -> np.ndarray:
        # float32 on both sides: mixing dtypes would copy the (n_features, n_tags) weights.
        scores: np.ndarray = np.asarray(x.astype(np.float32) @ self.coef_) + self.intercept_
        return scores

    @staticmethod
    def _with_best_tag(scores: np.ndarray, threshold: float) -> np.ndarray:
        """Tags above the threshold, and always each title's best tag."""
        chosen = scores >= threshold
        chosen[np.arange(len(scores)), scores.argmax(axis=1)] = True
        return chosen

    # --- prediction --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("TagClassifier is not fitted; call fit() or load()")

    def decision_function(self, titles: Sequence[str],
                          embeddings: np.ndarray | None = None) -> np.ndarray:
        """Raw per-tag scores, shape (n_titles, n_tags)."""
        self._check_fitted()
        titles = list(titles)
        vectors = self._embed(titles, embeddings)
        scorer = LinearScorer([(self.word_tfidf_, 1.0), (self.char_tfidf_, self.char_weight)],
                              self.coef_, self.intercept_)
        return scorer.scores(titles, None if vectors is None
                             else vectors * np.float32(self.embedding_weight))

    def predict_proba(self, titles: Sequence[str],
                      embeddings: np.ndarray | None = None) -> np.ndarray:
        """Per-tag probabilities (columns in ``classes_`` order), 0.5 at the tuned threshold."""
        scores = self.decision_function(titles, embeddings)
        return 1.0 / (1.0 + np.exp(-self.sigmoid_scale_ * (scores - self.threshold_)))

    def predict(self, titles: Sequence[str],
                embeddings: np.ndarray | None = None) -> list[list[str]]:
        """Tags of each title, best first (at least one per title)."""
        scores = self.decision_function(titles, embeddings)
        return self._tags_from_scores(scores)

    def _tags_from_scores(self, scores: np.ndarray) -> list[list[str]]:
        chosen = self._with_best_tag(scores, self.threshold_)
        result: list[list[str]] = []
        for row, mask in zip(scores, chosen, strict=True):
            idx = np.flatnonzero(mask)
            result.append([str(self.classes_[i]) for i in idx[np.argsort(-row[idx])]])
        return result

    def language_scores(self, titles: Sequence[str],
                        embeddings: np.ndarray | None = None) -> np.ndarray:
        """Per-language probability (``LANGUAGES`` order): the best of the tags mapping to it."""
        return self._language_scores(self.predict_proba(titles, embeddings))

    def _language_scores(self, proba: np.ndarray) -> np.ndarray:
        out = np.zeros((len(proba), len(LANGUAGES)), dtype=np.float64)
        for j, tag in enumerate(self.classes_):
            language = LANGUAGE_OF_TAG.get(str(tag)) or IMPLIED_LANGUAGE.get(str(tag))
            if language:
                k = LANGUAGES.index(language)
                out[:, k] = np.maximum(out[:, k], proba[:, j])
        return out

    def predict_language(self, titles: Sequence[str], embeddings: np.ndarray | None = None,
                         *, min_probability: float = 0.2) -> list[str | None]:
        """The main language of each title, or ``None`` when no language tag is likely."""
        return self._languages_from_scores(self.language_scores(titles, embeddings),
                                           min_probability)

    @staticmethod
    def _languages_from_scores(scores: np.ndarray, min_probability: float) -> list[str | None]:
        best = scores.argmax(axis=1)
        return [LANGUAGES[k] if scores[i, k] >= min_probability else None
                for i, k in enumerate(best)]

    def predict_all(self, titles: Sequence[str], embeddings: np.ndarray | None = None,
                    *, min_probability: float = 0.2,
                    ) -> tuple[list[list[str]], list[str | None], np.ndarray]:
        """Tags, main language and that language's probability, in one pass (what the NLU
        pipeline calls)."""
        scores = self.decision_function(titles, embeddings)
        proba = 1.0 / (1.0 + np.exp(-self.sigmoid_scale_ * (scores - self.threshold_)))
        language_scores = self._language_scores(proba)
        languages = self._languages_from_scores(language_scores, min_probability)
        return self._tags_from_scores(scores), languages, language_scores.max(axis=1)

    # --- persistence -------------------------------------------------------------------------
    def save(self, directory: Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write the model (JSON and ``.npy``, see :mod:`nlp_core.artifacts`) to ``directory``."""
        self._check_fitted()
        return save_text_model(
            directory, MODEL_NAME, MODEL_VERSION, word=self.word_tfidf_, char=self.char_tfidf_,
            coef=self.coef_, intercept=self.intercept_,
            tags=[str(c) for c in self.classes_], n_train=self.n_train_,
            n_tags=len(self.classes_), use_embeddings=self.use_embeddings,
            threshold=self.threshold_, sigmoid_scale=self.sigmoid_scale_,
            fit_seconds=round(self.fit_seconds_, 1),
            params={"C": self.C, "use_embeddings": self.use_embeddings,
                    "embedding_weight": self.embedding_weight, "char_weight": self.char_weight,
                    "min_df": self.min_df, "validation_fraction": self.validation_fraction,
                    "refit": self.refit},
            metrics={"validation_f1_weighted": self.validation_f1_weighted_, **(metrics or {})},
        )

    @classmethod
    def load(cls, directory: Path) -> TagClassifier:
        """Load a model written by :meth:`save` (no pickles, no scikit-learn import)."""
        stamp, word, char, coef, intercept = load_text_model(directory, MODEL_NAME,
                                                             MODEL_VERSION)
        model = cls(**stamp["params"])
        model.word_tfidf_, model.char_tfidf_ = word, char
        model.coef_, model.intercept_ = coef, intercept
        model.classes_ = np.asarray(stamp["tags"])
        model.threshold_ = float(stamp["threshold"])
        model.sigmoid_scale_ = float(stamp["sigmoid_scale"])
        model.validation_f1_weighted_ = float(stamp["metrics"]["validation_f1_weighted"])
        model.n_train_ = int(stamp["n_train"])
        model.fit_seconds_ = float(stamp["fit_seconds"])
        return model


# --- training entry points -------------------------------------------------------------------
def model_dir(workspace: Workspace) -> Path:
    """Where the default tag model lives: ``<data_dir>/models/tags``."""
    return workspace.data_dir / "models" / MODEL_NAME


def embed_cached(titles: Sequence[str], workspace: Workspace) -> np.ndarray:
    """MiniLM embeddings of ``titles``, cached under ``<data_dir>/cache/embeddings``."""
    return Encoder().encode_cached(list(titles), workspace.data_dir / "cache" / "embeddings")


def train_tags(
    workspace: Workspace,
    progress: Callable[[float, str], None] | None = None,
    *,
    use_embeddings: bool = True,
) -> TagClassifier:
    """Train the default tag model on the fixed train split of so_tags/train.tsv and save it."""
    titles, tags = load_so_tags(workspace.require("so_tags/train.tsv"))
    train_idx, _ = split_so_tags(titles)
    train_titles = [titles[i] for i in train_idx]
    train_tags_ = [tags[i] for i in train_idx]
    embeddings = embed_cached(train_titles, workspace) if use_embeddings else None
    model = TagClassifier(use_embeddings=use_embeddings).fit(
        train_titles, train_tags_, embeddings=embeddings, progress=progress)
    model.save(model_dir(workspace), {"split": f"train (hash fraction {1 - TEST_FRACTION})"})
    return model


def load_or_train_tags(
    workspace: Workspace,
    progress: Callable[[float, str], None] | None = None,
    *,
    use_embeddings: bool = True,
) -> TagClassifier:
    """The saved default tag model, trained first if missing or of another version.

    ``use_embeddings=False`` trains the TF-IDF-only variant when one is needed (~30 s instead of
    several minutes of encoding on 2 cores; F1 weighted 0.671 instead of 0.690).
    """
    directory = model_dir(workspace)
    try:
        return TagClassifier.load(directory)
    except (FileNotFoundError, ValueError, TypeError):
        return train_tags(workspace, progress, use_embeddings=use_embeddings)
