"""The thread corpus, its index on a small real subset, and language-first search."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import workspace
from bot.settings import Settings
from indexes import ThreadIndex
from nlp_core.encoder import Encoder
from nlp_core.threads import (
    SQL_TAG,
    ThreadSearcher,
    build_thread_index,
    index_dir,
    languages_of,
    load_or_build_thread_index,
    load_threads,
    thread_tags,
)
from nlp_core.workspace import Workspace


def test_languages_from_tags() -> None:
    assert languages_of(["django", "mysql"]) == ["python"]
    assert languages_of(["c++", "javascript", "c"]) == ["javascript", "c/c++"]
    assert languages_of(["linux"]) == []
    assert thread_tags(["C++", "qt"]) == ("c++", "qt", "c/c++")
    assert thread_tags(["python", "flask"]) == ("python", "flask")


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


@pytest.fixture()
def small_index(shared_data_dir: Path, encoder: Encoder, tmp_path: Path) -> tuple[Workspace,
                                                                                  ThreadIndex]:
    # datasets come from the shared session dir; the index goes to this test's own data dir
    settings = workspace(Settings(data_dir=tmp_path / "data"))
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "datasets").symlink_to(shared_data_dir / "datasets")
    return settings, build_thread_index(settings, encoder, limit=125)


def test_corpus_loads_every_source(shared_data_dir: Path) -> None:
    threads = load_threads(workspace(Settings(data_dir=shared_data_dir)), limit=50)
    sources = {t.source for t in threads}
    assert sources == {"staqc", "so_sample_posts", "so_tags", "so_tags_unlabeled"}
    staqc = [t for t in threads if t.source == "staqc"]
    assert all(t.post_id and t.tags == (SQL_TAG,) for t in staqc)
    assert all(t.post_id is None for t in threads if t.source.startswith("so_tags"))
    assert len({t.title.lower() for t in threads}) == len(threads)
    tagged = [t for t in threads if t.source == "so_tags"]
    assert any(set(t.tags) & {"python", "java", "c#", "javascript", "php"} for t in tagged)


def test_quoted_titles_are_read_as_csv(shared_data_dir: Path) -> None:
    # StaQC quotes titles holding quotes, CSV style: "How to insert a string which contains
    # an ""&""" is the title: How to insert a string which contains an "&"
    corpus = load_threads(workspace(Settings(data_dir=shared_data_dir)))
    titles = [t.title for t in corpus if t.source == "staqc"]
    assert 'How to insert a string which contains an "&"' in titles
    assert not [t for t in titles if t.startswith('"') and '""' in t]


def test_index_finds_exact_titles_and_links(small_index: tuple[Workspace, ThreadIndex],
                                            encoder: Encoder) -> None:
    settings, index = small_index
    assert 400 <= len(index) <= 500
    assert (index_dir(settings) / "info.json").is_file()
    threads = load_threads(settings, limit=125)
    with_id = next(t for t in threads if t.source == "staqc")
    without_id = next(t for t in threads if t.source == "so_tags")
    hits = index.search(encoder.encode([with_id.title, without_id.title]), k=3)
    assert hits[0][0].meta.title == with_id.title
    assert hits[0][0].score > 0.99
    assert hits[0][0].meta.url == f"https://stackoverflow.com/questions/{with_id.post_id}"
    assert hits[1][0].meta.title == without_id.title
    assert hits[1][0].meta.url.startswith("https://stackoverflow.com/search?q=")
    reopened = load_or_build_thread_index(settings, encoder)
    assert len(reopened) == len(index)


def test_language_first_search(small_index: tuple[Workspace, ThreadIndex],
                               encoder: Encoder) -> None:
    _settings, index = small_index
    # With a bonus larger than any similarity gap, the language's threads come first.
    searcher = ThreadSearcher(index, encoder, min_similarity=0.0, language_bonus=1.0)
    timings: dict[str, float] = {}
    matches = searcher.search("How do I read a file line by line?", "python", k=3,
                              timings=timings)
    assert len(matches) == 3
    assert all(m.preferred and "python" in m.tags for m in matches)
    assert matches[0].score >= matches[-1].score
    # With the default small bonus, a much closer thread of another language still wins.
    sql_question = "select rows from two tables"
    mixed = ThreadSearcher(index, encoder).search(sql_question, "swift", k=3)
    best_anywhere = index.search(encoder.encode([sql_question]), k=1)[0][0]
    assert mixed[0].title == best_anywhere.meta.title
    assert timings["encode_ms"] > 0 and timings["search_ms"] >= 0
    only_sql = index.search(encoder.encode(["select rows from two tables"]), k=5,
                            filter=[SQL_TAG])[0]
    assert only_sql and all(SQL_TAG in h.meta.tags for h in only_sql)
    # a language with no threads in the subset falls back to the whole corpus
    strict = ThreadSearcher(index, encoder, min_similarity=0.99)
    fallback = strict.search("select rows from two tables", "swift", k=3)
    assert len(fallback) == 3 and not any(m.preferred for m in fallback)
