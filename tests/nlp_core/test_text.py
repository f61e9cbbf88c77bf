"""Text preparation follows the NLP course, and the tokenizer keeps programming names whole."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nlp_core.corpora import load_lines
from nlp_core.text import STOPWORDS, char_ngram_tfidf, text_prepare, tokenize


def test_course_examples() -> None:
    # The two examples the course notebook checks text_prepare against.
    assert text_prepare("SQL Server - any equivalent of Excel's CHOOSE function?") == (
        "sql server equivalent excels choose function")
    assert text_prepare("How to free c++ memory vector<int> * arr?") == (
        "free c++ memory vectorint arr")


def test_stopwords_are_nltks_english_list() -> None:
    assert len(STOPWORDS) == 179
    assert {"the", "is", "how", "to", "don't", "wouldn't"} <= STOPWORDS
    assert "python" not in STOPWORDS


def test_replaced_characters_separate_words() -> None:
    assert text_prepare("SQLite/PHP read-only?") == "sqlite php readonly"
    assert text_prepare("a@b,c;d|e[f]g{h}i(j)") == "b c e f g h j"


def test_on_the_course_inputs(shared_data_dir: Path) -> None:
    lines = load_lines(shared_data_dir / "datasets" / "so_tags" / "text_prepare_tests.tsv")
    assert len(lines) == 100
    for line in lines:
        prepared = text_prepare(line)
        assert re.fullmatch(r"[0-9a-z #+_]*", prepared), prepared
        assert "  " not in prepared and prepared == prepared.strip()
        assert not set(prepared.split()) & STOPWORDS
        assert text_prepare(prepared) == prepared


@pytest.mark.parametrize(("text", "expected"), [
    ("Catch exceptions C++", ["catch", "exceptions", "c++"]),
    ("LINQ in C# vs F#?", ["linq", "in", "c#", "vs", "f#"]),
    ("Deploy a .NET app with Node.js.", ["deploy", "a", ".net", "app", "with", "node.js"]),
    ("ASP.NET MVC on VB.NET", ["asp.net", "mvc", "on", "vb.net"]),
    ("python3.6: sort a dict", ["python3.6", "sort", "a", "dict"]),
])
def test_tokenize_keeps_programming_names(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_tokenize_can_drop_stopwords() -> None:
    assert tokenize("How do I use the .NET GC?", drop_stopwords=True) == ["use", ".net", "gc"]


def test_char_ngrams_make_similar_titles_close() -> None:
    vectorizer = char_ngram_tfidf((2, 4), n_features=2**14)
    x = vectorizer.fit_transform(["parse json in python", "parsing JSON with python",
                                  "center a div in css"])
    similarity = (x @ x.T).toarray()
    assert similarity[0, 1] > 2 * similarity[0, 2]
