"""Programming entities in questions: languages, libraries, platforms, error names, versions.

A spaCy ``EntityRuler`` on a blank English pipeline. Its vocabulary comes from the StackOverflow
tag set (``so_tags/train.tsv``: each tag that names a language, library or platform, with its
spelling variants), a short curated list of ML libraries the course uses, and error names mined
from the question titles (``\\w+(Error|Exception)``, also found by a regex at run time). A number
right after a language or library (``python 3.11``) and ``v2.0``-style tokens are ``VERSION``.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nlp_core.corpora import parse_tag_list
from nlp_core.nlu import Entity

LABELS = ("LANGUAGE", "LIBRARY", "PLATFORM", "DATABASE", "ERROR", "VERSION")

# How the StackOverflow tags that name things map to entity labels (generic concept tags such as
# ``arrays`` or ``sorting`` are topics, not entities, and are left out).
TAG_LABELS: dict[str, str] = {
    **dict.fromkeys(
        ["c", "c#", "c++", "css", "html", "html5", "java", "javascript", "objective-c", "php",
         "python", "python-2.7", "python-3.x", "r", "ruby", "sql", "swift", "vb.net", "xaml",
         "xml", "json", "regex"],
        "LANGUAGE"),
    **dict.fromkeys(
        [".net", "ajax", "angularjs", "asp.net", "asp.net-mvc", "cocoa-touch", "codeigniter",
         "django", "entity-framework", "hibernate", "jquery", "jsp", "laravel", "linq", "maven",
         "node.js", "numpy", "opencv", "pandas", "qt", "ruby-on-rails", "ruby-on-rails-3",
         "selenium", "servlets", "spring", "spring-mvc", "swing", "twitter-bootstrap",
         "uitableview", "wcf", "winforms", "wpf"],
        "LIBRARY"),
    **dict.fromkeys(
        ["android", "apache", "eclipse", "excel", "facebook", "google-maps", "ios", "iphone",
         "linux", "osx", "visual-studio", "visual-studio-2010", "windows", "wordpress", "xcode"],
        "PLATFORM"),
    **dict.fromkeys(["mongodb", "mysql", "sql-server"], "DATABASE"),
}

# Names the tag set lacks but an ML practitioner's questions are full of.
EXTRA_TERMS: dict[str, list[str]] = {
    "LANGUAGE": ["typescript", "kotlin", "scala", "golang", "rust", "haskell", "julia", "perl",
                 "bash", "matlab", "lua", "cuda", "python3", "python2", "js", "c/c++"],
    "LIBRARY": ["scikit-learn", "sklearn", "scipy", "matplotlib", "seaborn", "tensorflow",
                "keras", "pytorch", "torch", "jax", "xgboost", "lightgbm", "catboost",
                "transformers", "spacy", "nltk", "gensim", "gym", "gymnasium", "statsmodels",
                "flask", "fastapi", "react", "vue", "angular", "express", "rails", "pyspark",
                "spark", "dask", "polars", "sqlalchemy", "requests", "beautifulsoup", "faiss",
                "pymc", "plotly", "tkinter", "pygame", "boost", "stl", "junit", "pytest",
                "bootstrap", "jupyter", "ray", "opencv-python", "cv2", "hadoop"],
    "PLATFORM": ["macos", "mac os", "ubuntu", "debian", "docker", "kubernetes", "git", "github",
                 "aws", "azure", "gcp", "colab", "conda", "anaconda", "pip", "npm", "vscode",
                 "vs code", "intellij", "pycharm", "windows 10", "chrome", "firefox", "cuda"],
    "DATABASE": ["postgresql", "postgres", "sqlite", "oracle", "redis", "elasticsearch",
                 "cassandra", "mariadb", "sql server"],
}

# Single letters and common words that are only entities in their canonical spelling.
_CASE_SENSITIVE = {"c": "C", "r": "R", "go": "Go", "ray": "Ray", "express": "Express",
                   "requests": "requests", "spring": "Spring", "boost": "Boost",
                   "react": "React", "rails": "Rails", "swing": "Swing", "excel": "Excel",
                   "windows": "Windows", "facebook": "Facebook", "apache": "Apache",
                   "git": "git", "swift": "Swift", "julia": "Julia", "rust": "Rust"}

_ERROR_RE = re.compile(r"\b[A-Za-z_][\w.]*?(?:Error|Exception|Fault|Warning)\b")
_VERSION_TOKEN_RE = r"^[vV]\d+(?:\.\d+)*(?:\.x)?$|^\d+(?:\.\d+)+(?:\.x)?$"
_NUMBER_TOKEN_RE = r"^\d+(?:\.\d+)*(?:\.x)?$"


def variants(tag: str) -> set[str]:
    """Spellings of a tag in running text: ``ruby-on-rails`` -> ``ruby on rails`` too."""
    forms = {tag}
    if "-" in tag:
        forms.add(tag.replace("-", " "))
    if tag.endswith(".js"):
        forms.add(tag[:-3] + "js")
        forms.add(tag[:-3])
    if tag == "objective-c":
        forms.add("objc")
    if tag == "python-3.x":
        forms.add("python 3")
    if tag == "c++":
        forms.add("cpp")
    if tag == "c#":
        forms.add("csharp")
    return forms


def read_tags(path: Path) -> Counter[str]:
    """Tag frequencies of a ``title<TAB>tags`` file (tags as a Python list literal)."""
    counts: Counter[str] = Counter()
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            counts.update(parse_tag_list(row["tags"]))
    return counts


def mine_error_names(titles: Iterable[str], min_count: int = 2) -> list[str]:
    """Error and exception names that occur at least ``min_count`` times in ``titles``."""
    counts = Counter(m.group().rsplit(".", 1)[-1] for t in titles for m in _ERROR_RE.finditer(t))
    return sorted(name for name, c in counts.items() if c >= min_count)


def build_vocabulary(tags_path: Path | None = None) -> dict[str, list[str]]:
    """Label -> terms: the mapped StackOverflow tags (with variants), the extra terms and, with a
    tags file, its tags and mined error names."""
    vocab: dict[str, set[str]] = {label: set() for label in LABELS}
    tags: Iterable[str] = TAG_LABELS
    titles: list[str] = []
    if tags_path is not None:
        tags = [t for t in read_tags(tags_path) if t in TAG_LABELS]
        with tags_path.open(encoding="utf-8", newline="") as handle:
            titles = [row["title"] for row in csv.DictReader(handle, delimiter="\t")]
    for tag in tags:
        vocab[TAG_LABELS[tag]].update(variants(tag))
    for label, terms in EXTRA_TERMS.items():
        vocab[label].update(terms)
    vocab["ERROR"].update(mine_error_names(titles))
    return {label: sorted(terms) for label, terms in vocab.items() if terms}


class ProgrammingEntities:
    """Finds programming entities in text (a spaCy pipeline built by :meth:`fit`).

    ``fit(tags_path)`` builds the vocabulary (the built-in tag map alone when ``tags_path`` is
    None); ``extract(text)`` returns :class:`Entity` spans with character offsets.
    """

    def __init__(self, extra_terms: dict[str, Sequence[str]] | None = None) -> None:
        self.extra_terms = extra_terms

    def fit(self, tags_path: Path | None = None) -> ProgrammingEntities:
        """Build the vocabulary and the ruler; returns ``self``."""
        vocab = build_vocabulary(tags_path)
        for label, terms in (self.extra_terms or {}).items():
            vocab[label] = sorted(set(vocab.get(label, [])) | set(terms))
        return self.fit_vocabulary(vocab)

    def fit_vocabulary(self, vocab: dict[str, list[str]]) -> ProgrammingEntities:
        """Build the ruler from a vocabulary made earlier (label -> terms); returns ``self``."""
        spacy = import_spacy()
        self.vocabulary_ = vocab
        nlp = spacy.blank("en")
        ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER",
                                                     "overwrite_ents": True})
        patterns: list[dict[str, Any]] = []
        for label, terms in vocab.items():
            for term in terms:
                if term in _CASE_SENSITIVE:
                    patterns.append({"label": label, "id": term,
                                     "pattern": [{"TEXT": _CASE_SENSITIVE[term]}]})
                else:
                    patterns.append({"label": label, "id": term, "pattern": term})
        patterns.append({"label": "ERROR", "pattern": [
            {"TEXT": {"REGEX": r"^[A-Za-z_][\w.]*(?:Error|Exception|Fault)$"}}]})
        patterns.append({"label": "VERSION", "pattern": [{"TEXT": {"REGEX": _VERSION_TOKEN_RE}}]})
        ruler.add_patterns(patterns)  # type: ignore[attr-defined]
        self.nlp_ = nlp
        return self

    def extract(self, text: str) -> list[Entity]:
        """Entities in ``text`` with character offsets, in order of appearance."""
        return self.extract_many([text])[0]

    def extract_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        """:meth:`extract` for many texts at once (spaCy's ``pipe``)."""
        if not hasattr(self, "nlp_"):
            raise RuntimeError("ProgrammingEntities is not fitted; call fit()")
        return [self._entities(doc) for doc in self.nlp_.pipe(texts)]

    def _entities(self, doc: Any) -> list[Entity]:
        found: list[Entity] = []
        taken = {i for ent in doc.ents for i in range(ent.start, ent.end)}
        for ent in doc.ents:
            found.append(Entity(ent.text, ent.label_, ent.start_char, ent.end_char))
            # "python 3.11", "java 8": the number after a language or library is its version
            nxt = ent.end
            if (ent.label_ in ("LANGUAGE", "LIBRARY", "PLATFORM", "DATABASE")
                    and nxt < len(doc) and nxt not in taken
                    and re.match(_NUMBER_TOKEN_RE, doc[nxt].text)):
                tok = doc[nxt]
                found.append(Entity(tok.text, "VERSION", tok.idx, tok.idx + len(tok.text)))
                taken.add(nxt)
        found.sort(key=lambda e: e.start)
        return found


def import_spacy() -> Any:
    """spaCy without torch: thinc imports torch (~1 s) only to offer wrappers we never use.

    Not thread-safe: while spaCy imports, ``import torch`` fails in every thread.
    """
    import sys

    if "spacy" in sys.modules or "torch" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail
    try:
        import spacy
    finally:
        del sys.modules["torch"]
    return spacy
