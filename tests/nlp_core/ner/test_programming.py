"""Programming entities on real StackOverflow-style questions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nlp_core.ner.programming import ProgrammingEntities, build_vocabulary, mine_error_names


@pytest.fixture(scope="module")
def extractor() -> ProgrammingEntities:
    return ProgrammingEntities().fit()


def _pairs(extractor: ProgrammingEntities, text: str) -> list[tuple[str, str]]:
    return [(e.label, e.text) for e in extractor.extract(text)]


def test_the_issue_example(extractor: ProgrammingEntities) -> None:
    text = "TypeError in python 3.11 with pandas"
    entities = extractor.extract(text)
    assert [(e.label, e.text) for e in entities] == [
        ("ERROR", "TypeError"), ("LANGUAGE", "python"), ("VERSION", "3.11"),
        ("LIBRARY", "pandas")]
    for e in entities:
        assert text[e.start:e.end] == e.text


def test_languages_with_symbols_and_versions(extractor: ProgrammingEntities) -> None:
    pairs = _pairs(extractor, "C# vs C++ in .NET 4.5 and node.js v2.0")
    assert ("LANGUAGE", "C#") in pairs
    assert ("LANGUAGE", "C++") in pairs
    assert ("LIBRARY", ".NET") in pairs
    assert ("VERSION", "4.5") in pairs
    assert ("LIBRARY", "node.js") in pairs
    assert ("VERSION", "v2.0") in pairs


def test_version_after_a_name_and_java_errors(extractor: ProgrammingEntities) -> None:
    pairs = _pairs(extractor, "java 8 NullPointerException on Android with Spring")
    assert pairs == [("LANGUAGE", "java"), ("VERSION", "8"), ("ERROR", "NullPointerException"),
                     ("PLATFORM", "Android"), ("LIBRARY", "Spring")]


def test_ambiguous_short_names_need_their_spelling(extractor: ProgrammingEntities) -> None:
    assert ("LANGUAGE", "R") in _pairs(extractor, "How to read a csv in R with dplyr")
    assert _pairs(extractor, "pick r or c from the list and go") == []
    assert ("LIBRARY", "ruby on rails") in _pairs(extractor, "upgrading ruby on rails apps")


def test_real_titles_from_the_tag_corpus(shared_data_dir: Path) -> None:
    tags_path = shared_data_dir / "datasets" / "so_tags" / "train.tsv"
    extractor = ProgrammingEntities().fit(tags_path)
    vocab = extractor.vocabulary_
    assert "NullPointerException" in vocab["ERROR"]  # mined from the titles
    assert "ruby on rails" in vocab["LIBRARY"]
    pairs = _pairs(extractor, "Getting error - type \"json\" does not exist - in Postgresql "
                              "during rake db migrate")
    assert ("LANGUAGE", "json") in pairs
    assert ("DATABASE", "Postgresql") in pairs
    pairs = _pairs(extractor, "Django ImproperlyConfigured exception with mysql 5.7")
    assert ("LIBRARY", "Django") in pairs
    assert ("DATABASE", "mysql") in pairs
    assert ("VERSION", "5.7") in pairs


def test_error_mining() -> None:
    titles = ["Fix IndexError in loop", "IndexError: list index out of range",
              "java.lang.NullPointerException at start", "an error occurred"]
    assert mine_error_names(titles) == ["IndexError"]
    assert mine_error_names(titles, min_count=1) == ["IndexError", "NullPointerException"]
    assert "python" in build_vocabulary()["LANGUAGE"]


def test_fast_enough(extractor: ProgrammingEntities) -> None:
    text = "How do I fix a KeyError in pandas 2.1 groupby on python 3.11?"
    extractor.extract(text)
    start = time.perf_counter()
    for _ in range(50):
        extractor.extract(text)
    per_call_ms = (time.perf_counter() - start) / 50 * 1000
    assert per_call_ms < 20  # typically ~0.3 ms; generous bound for a loaded CI machine
