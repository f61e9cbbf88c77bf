"""ThreadIndex: index types, tag filters, add/remove (HNSW: tombstones) against a rebuild, and bad
input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexes import Hit, ThreadIndex, ThreadIndexError, ThreadMeta
from indexes.persistence import sha256_file
from indexes.store import IndexStore
from indexes.vectors import FLAT_MAX, HNSW_EF_CONSTRUCTION, choose_spec, exact_topk, recall_at_k

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
Corpus = tuple[np.ndarray, list[ThreadMeta]]


def _titles(hits: list[list[Hit]]) -> list[list[str]]:
    return [[hit.meta.title for hit in row] for row in hits]


def test_choose_spec_follows_the_size() -> None:
    assert choose_spec(FLAT_MAX - 1, 384).kind == "flat"
    one_million = choose_spec(1_000_000, 384)
    assert one_million.kind == "hnsw-sq8" and one_million.factory(384) == "HNSW32,SQ8"
    assert one_million.hnsw_ef_construction == HNSW_EF_CONSTRUCTION
    five_million = choose_spec(5_000_000, 384)
    assert five_million.kind == "ivf-sq8" and five_million.nlist == 4096
    assert five_million.factory(384) == "IVF4096_HNSW32,SQ8"
    assert choose_spec(1_000_000, 384, "ivf-sq8").factory(384) == "IVF2048_HNSW32,SQ8"
    assert choose_spec(24_000_000, 384).kind == "ivf-pq"
    assert choose_spec(24_000_000, 384).pq_m == 96
    with pytest.raises(ThreadIndexError, match="unknown index kind"):
        choose_spec(10, 384, "hnsw-sparkles")


def test_flat_search_is_exact_and_filters_by_tag(title_corpus: Corpus) -> None:
    vectors, metas = title_corpus
    index = ThreadIndex.build(vectors[:700], metas[:700], MODEL)
    assert index.spec.kind == "flat" and len(index) == 700
    queries = vectors[700:750]
    _, rows = index.search_rows(queries, 10)
    assert recall_at_k(exact_topk(vectors[:700], queries, 10).tolist(), rows.tolist()) == 1.0
    hits = index.search(vectors[5], k=3)[0]
    assert hits[0].row == 5 and hits[0].meta == metas[5] and hits[0].score == pytest.approx(1.0)
    tagged = index.search(queries, k=5, filter=["python"])
    assert all(hits for hits in tagged)
    assert all("python" in hit.meta.tags for hits in tagged for hit in hits)
    python_rows = [i for i, m in enumerate(metas[:700]) if "python" in m.tags]
    truth = exact_topk(vectors[python_rows], queries, 5)
    expected = [[python_rows[r] for r in row] for row in truth]
    assert [[hit.row for hit in row] for row in tagged] == expected
    assert index.search(queries[:2], filter=["no-such-tag"]) == [[], []]


def test_ivf_reaches_its_tuned_recall_on_held_out_titles(title_corpus: Corpus) -> None:
    vectors, metas = title_corpus
    index = ThreadIndex.build(vectors[:700], metas[:700], MODEL, kind="ivf-sq8",
                              target_recall=0.95)
    assert index.spec.is_ivf and 1 <= index.nprobe <= index.spec.nlist
    assert index.tuned_recall is not None and index.tuned_recall >= 0.95
    queries = vectors[700:]
    _, rows = index.search_rows(queries, 10)
    recall = recall_at_k(exact_topk(vectors[:700], queries, 10).tolist(), rows.tolist())
    assert recall >= 0.85, recall
    filtered = index.search(queries[:20], k=5, filter=["javascript"])
    assert all("javascript" in hit.meta.tags for hits in filtered for hit in hits)
    assert sum(len(hits) for hits in filtered) == 100


def test_ivf_tunes_on_held_out_queries_when_given(title_corpus: Corpus) -> None:
    vectors, metas = title_corpus
    tune, held_out = vectors[700:750], vectors[750:]
    index = ThreadIndex.build(vectors[:700], metas[:700], MODEL, kind="ivf-sq8",
                              target_recall=0.95, tune_queries=tune)
    assert index.tuned_recall is not None and index.tuned_recall >= 0.95
    _, rows = index.search_rows(tune, 10)
    # the tuned recall is the recall of exactly those queries at the chosen nprobe
    assert recall_at_k(exact_topk(vectors[:700], tune, 10).tolist(),
                       rows.tolist()) == pytest.approx(index.tuned_recall)
    _, rows = index.search_rows(held_out, 10)
    assert recall_at_k(exact_topk(vectors[:700], held_out, 10).tolist(), rows.tolist()) >= 0.85


def test_tuning_aims_above_the_target_and_settles_near_the_best_when_out_of_reach(
        title_corpus: Corpus) -> None:
    from indexes.vectors import TUNE_MARGIN

    vectors, metas = title_corpus
    tune = vectors[700:750]
    index = ThreadIndex.build(vectors[:700], metas[:700], MODEL, kind="ivf-sq8",
                              target_recall=0.9, tune_queries=tune)
    assert index.tuned_recall is not None and index.tuned_recall >= 0.9 + TUNE_MARGIN

    def recall_at(nprobe: int) -> float:
        index.nprobe = nprobe
        _, rows = index.search_rows(tune, 10)
        return recall_at_k(exact_topk(vectors[:700], tune, 10).tolist(), rows.tolist())

    # a target SQ8 codes cannot reach: not every list, but the cheapest nprobe near the best
    chosen = index.tune(vectors[:700], target_recall=1.0, queries=tune)
    best = recall_at(index.spec.nlist)
    assert recall_at(chosen) >= best - 0.005
    powers_below = [2 ** i for i in range(16) if 2 ** i < chosen]  # all on the tuning ladder
    assert all(recall_at(smaller) < best - 0.005 for smaller in powers_below)


def test_hnsw_reaches_its_tuned_recall(title_corpus: Corpus, tmp_path: Path) -> None:
    vectors, metas = title_corpus
    tune, held_out = vectors[700:750], vectors[750:]
    index = ThreadIndex.build(vectors[:700], metas[:700], MODEL, kind="hnsw-sq8",
                              target_recall=0.95, tune_queries=tune)
    assert index.spec.factory(384) == "HNSW32,SQ8" and 16 <= index.ef_search <= 1024
    assert index.tuned_recall is not None and index.tuned_recall >= 0.95
    index.save(tmp_path / "hnsw")
    opened = ThreadIndex.open(tmp_path / "hnsw", MODEL)
    assert opened.ef_search == index.ef_search and opened.spec == index.spec
    _, rows = opened.search_rows(held_out, 10)
    assert recall_at_k(exact_topk(vectors[:700], held_out, 10).tolist(), rows.tolist()) >= 0.85
    filtered = opened.search(held_out[:20], k=5, filter=["javascript"])
    assert all("javascript" in hit.meta.tags for hits in filtered for hit in hits)


def _post_ids(hits: list[list[Hit]]) -> list[list[str | None]]:
    return [[hit.meta.post_id for hit in row] for row in hits]


def test_hnsw_add_and_remove_match_a_rebuild(title_corpus_3k: Corpus, tmp_path: Path) -> None:
    """Removal from an HNSW graph leaves tombstones: searches skip them, before and after
    save/open and publishing, with and without a tag filter, like a rebuild without them."""
    vectors, metas = title_corpus_3k
    drop = sorted(set(range(2000, 2300)) | set(range(0, 2000, 50)))  # 340 of 2400: 14 %
    keep = [row for row in range(2400) if row not in set(drop)]
    new, queries = slice(2400, 2700), vectors[2700:3000]
    grown = ThreadIndex.build(vectors[:2400], metas[:2400], MODEL, kind="hnsw-sq8",
                              tune_queries=vectors[2700:2750])
    grown.save(tmp_path / "v1")
    edited = ThreadIndex.open(tmp_path / "v1", MODEL)  # memory-mapped
    assert edited.remove(drop) == 340 and edited.remove(drop[:5]) == 0
    assert len(edited) == 2060 and edited.tombstones == 340
    assert edited.add(vectors[new], metas[new]) == list(range(2400, 2700))
    assert len(edited) == 2360 and edited.tombstones == 340
    rest_vectors = np.concatenate([vectors[keep], vectors[new]])
    rest_metas = [metas[row] for row in keep] + metas[new]
    exact = ThreadIndex.build(rest_vectors, rest_metas, MODEL, kind="flat")
    rebuilt = ThreadIndex.build(rest_vectors, rest_metas, MODEL, kind="hnsw-sq8",
                                tune_queries=vectors[2700:2750])
    truth = _post_ids(exact.search(queries, 10))
    removed_ids = {metas[row].post_id for row in drop}
    got = edited.search(queries, 10)
    assert not removed_ids & {p for row in _post_ids(got) for p in row}
    assert all(len(row) == 10 for row in got)
    # at their tuned ef_search, as close to exact search as the rebuilt graph is
    rebuilt_recall = recall_at_k(truth, _post_ids(rebuilt.search(queries, 10)))
    edited_recall = recall_at_k(truth, _post_ids(got))
    assert edited_recall >= min(rebuilt_recall, 0.95) - 0.02, (edited_recall, rebuilt_recall)
    # a wide search gives the rebuild's answers (SQ8 codes reorder near ties: compare as sets)
    edited.ef_search = rebuilt.ef_search = 256
    wide = edited.search(queries, 10)
    assert recall_at_k(_post_ids(rebuilt.search(queries, 10)), _post_ids(wide)) >= 0.97
    assert recall_at_k(truth, _post_ids(wide)) >= 0.97
    # a tag filter and the tombstones together
    tagged = edited.search(queries, 10, filter=["javascript"])
    assert all(hits for hits in tagged)
    assert all("javascript" in hit.meta.tags for hits in tagged for hit in hits)
    assert not removed_ids & {p for row in _post_ids(tagged) for p in row}
    want = _post_ids(exact.search(queries, 10, filter=["javascript"]))
    assert recall_at_k(want, _post_ids(tagged)) >= 0.95
    # a removed thread added again gets a new row and is found
    again_row = edited.add(vectors[2100:2101], metas[2100:2101])
    assert again_row == [2700] and edited.rows_of([metas[2100].post_id or ""]) == [2700]
    top = edited.search(vectors[2100], 1)[0][0]
    assert top.row == 2700 and top.meta == metas[2100]
    assert len(edited) == 2361 and edited.tombstones == 340
    # the tombstones are saved, and published versions keep them
    before = _titles(edited.search(queries, 10))
    edited.save(tmp_path / "v2")
    info = json.loads((tmp_path / "v2" / "info.json").read_text())
    assert info["count"] == 2361 and info["tombstones"] == 340 and info["format_version"] == 3
    reopened = ThreadIndex.open(tmp_path / "v2", MODEL)
    assert len(reopened) == 2361 and reopened.tombstones == 340
    assert _titles(reopened.search(queries, 10)) == before
    store = IndexStore(tmp_path / "store")
    store.publish(reopened)
    live = store.open(MODEL)
    assert len(live) == 2361 and live.tombstones == 340
    assert _titles(live.search(queries, 10)) == before
    assert _titles(live.search(queries, 10, filter=["javascript"])) \
        == _titles(edited.search(queries, 10, filter=["javascript"]))
    old = ThreadIndex.open(tmp_path / "v1", MODEL)  # the old version is untouched
    assert len(old) == 2400 and old.tombstones == 0


def test_hnsw_compacts_once_tombstones_pass_their_share(title_corpus_3k: Corpus,
                                                        tmp_path: Path) -> None:
    vectors, metas = title_corpus_3k
    index = ThreadIndex.build(vectors[:2400], metas[:2400], MODEL, kind="hnsw-sq8",
                              tune_queries=vectors[2700:2750])
    index.save(tmp_path / "v1")
    edited = ThreadIndex.open(tmp_path / "v1", MODEL)
    assert edited.remove(range(0, 2400, 5)) == 480 and edited.tombstones == 480  # 20 %: kept
    assert edited.remove([1]) == 1  # past TOMBSTONE_SHARE_MAX: the graph is rebuilt
    assert edited.tombstones == 0 and len(edited) == 1919
    assert edited.compact() == 0
    kept = [row for row in range(2400) if row % 5 and row != 1]
    exact = ThreadIndex.build(vectors[kept], [metas[row] for row in kept], MODEL, kind="flat")
    queries = vectors[2700:3000]
    edited.ef_search = 256
    got = edited.search(queries, 10)
    assert {hit.row for row in got for hit in row} <= set(kept)  # row ids stay
    assert recall_at_k(_post_ids(exact.search(queries, 10)), _post_ids(got)) >= 0.97
    edited.save(tmp_path / "v2")
    reopened = ThreadIndex.open(tmp_path / "v2", MODEL)
    assert reopened.tombstones == 0 and len(reopened) == 1919
    reopened.ef_search = 256
    assert _titles(reopened.search(queries, 10)) == _titles(got)


def test_format_2_indexes_still_open_and_take_removals(title_corpus: Corpus,
                                                       tmp_path: Path) -> None:
    """An HNSW index saved before tombstones existed (format 2: no such table) opens, and a
    removal then records its tombstones."""
    vectors, metas = title_corpus
    directory = tmp_path / "old"
    ThreadIndex.build(vectors[:700], metas[:700], MODEL, kind="hnsw-sq8").save(directory)
    meta = directory / "meta.sqlite3"
    with sqlite3.connect(meta) as db:
        db.execute("DROP TABLE tombstones")
    db.close()
    info = json.loads((directory / "info.json").read_text())
    del info["tombstones"]
    info["format_version"] = 2
    info["files"]["meta.sqlite3"] = {"sha256": sha256_file(meta), "bytes": meta.stat().st_size}
    (directory / "info.json").write_text(json.dumps(info))
    old = ThreadIndex.open(directory, MODEL)
    assert len(old) == 700 and old.tombstones == 0
    assert old.remove([3, 4]) == 2 and len(old) == 698
    assert {hit.row for hit in old.search(vectors[3:5], 5)[0]}.isdisjoint({3, 4})
    old.save(tmp_path / "new")
    assert ThreadIndex.open(tmp_path / "new", MODEL).tombstones == 2


@pytest.mark.parametrize("kind", ["flat", "ivf-sq8"])
def test_add_and_remove_match_a_rebuild(title_corpus: Corpus, kind: str,
                                        tmp_path: Path) -> None:
    vectors, metas = title_corpus
    keep, drop, new = slice(0, 450), slice(450, 600), slice(600, 750)
    grown = ThreadIndex.build(vectors[:600], metas[:600], MODEL, kind=kind)
    grown.save(tmp_path / "v1")
    reopened = ThreadIndex.open(tmp_path / "v1", MODEL)  # memory-mapped: edits copy it to RAM
    assert reopened.remove(range(450, 600)) == 150
    assert reopened.remove([450]) == 0
    reopened.add(vectors[new], metas[new])
    assert len(reopened) == 600
    rebuilt = ThreadIndex.build(np.concatenate([vectors[keep], vectors[new]]),
                                metas[keep] + metas[new], MODEL, kind="flat")
    if kind != "flat":  # same answer as exact search once every list is probed
        reopened.nprobe = reopened.spec.nlist
    queries = vectors[750:800]
    got, want = reopened.search(queries, 10), rebuilt.search(queries, 10)
    if kind == "flat":
        assert _titles(got) == _titles(want)
        assert np.allclose([[h.score for h in row] for row in got],
                           [[h.score for h in row] for row in want], atol=1e-5)
    else:  # SQ8 codes reorder near ties: compare as sets
        overlap = recall_at_k(_titles(want), _titles(got))
        assert overlap >= 0.97, overlap
    removed_titles = {m.title for m in metas[drop]}
    assert not removed_titles & {t for row in _titles(got) for t in row}
    tagged = reopened.search(queries, 10, filter=["javascript"])
    assert all(hits for hits in tagged)
    assert not {h.row for row in tagged for h in row} & set(range(450, 600))
    assert _titles(tagged) == _titles(rebuilt.search(queries, 10, filter=["javascript"])) \
        or kind != "flat"
    reopened.save(tmp_path / "v2")
    again = ThreadIndex.open(tmp_path / "v2", MODEL)
    assert _titles(again.search(queries, 10)) == _titles(got)
    assert ThreadIndex.open(tmp_path / "v1", MODEL).search(queries[:1], 1)[0][0].meta \
        == grown.search(queries[:1], 1)[0][0].meta  # the old version is untouched
    assert reopened.rows_of([metas[650].post_id or ""]) == [650]


def test_bad_vectors_are_refused(title_corpus: Corpus) -> None:
    vectors, metas = title_corpus
    with pytest.raises(ThreadIndexError, match="empty corpus"):
        ThreadIndex.build(np.zeros((0, 384), np.float32), [], MODEL)
    with pytest.raises(ThreadIndexError, match="holds 100-d vectors"):
        ThreadIndex.build(vectors[:10, :100], metas[:10], MODEL, kind="flat").search(
            vectors[:1], 3)
    index = ThreadIndex.build(vectors[:50], metas[:50], MODEL)
    with pytest.raises(ThreadIndexError, match="384-d"):
        index.search(vectors[:2, :383])
    with pytest.raises(ThreadIndexError, match="384-d"):
        index.add(np.ones((2, 512), np.float32), metas[:2])
    broken = vectors[:3].copy()
    broken[1, 7] = np.nan
    with pytest.raises(ThreadIndexError, match="NaN"):
        index.add(broken, metas[:3])
    with pytest.raises(ThreadIndexError, match="NaN"):
        index.search(broken)
    with pytest.raises(ThreadIndexError, match="metadata rows"):
        index.add(vectors[:3], metas[:2])
    assert len(index) == 50  # nothing half-added


def test_corrupt_truncated_or_foreign_index_files_are_refused(title_corpus: Corpus,
                                                              tmp_path: Path) -> None:
    vectors, metas = title_corpus
    index = ThreadIndex.build(vectors[:100], metas[:100], MODEL, model_version="v1")
    for name in ("flip", "cut", "model", "nothing"):
        index.save(tmp_path / name)
    with pytest.raises(ThreadIndexError, match="no thread index"):
        ThreadIndex.open(tmp_path / "elsewhere")
    flip = tmp_path / "flip" / "index.faiss"
    data = bytearray(flip.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flip.write_bytes(bytes(data))
    with pytest.raises(ThreadIndexError, match="sha256"):
        ThreadIndex.open(tmp_path / "flip")
    cut = tmp_path / "cut" / "meta.sqlite3"
    cut.write_bytes(cut.read_bytes()[:1000])
    with pytest.raises(ThreadIndexError, match="truncated"):
        ThreadIndex.open(tmp_path / "cut")
    with pytest.raises(ThreadIndexError, match="built with 'sentence-transformers"):
        ThreadIndex.open(tmp_path / "model", "some/other-model")
    with pytest.raises(ThreadIndexError, match="version 'v1', not 'v2'"):
        ThreadIndex.open(tmp_path / "model", MODEL, model_version="v2")
    info = tmp_path / "nothing" / "info.json"
    info.write_text(info.read_text()[:40])
    with pytest.raises(ThreadIndexError, match="not valid JSON"):
        ThreadIndex.open(tmp_path / "nothing")
    ok = ThreadIndex.open(tmp_path / "model", MODEL, model_version="v1")
    assert json.loads((tmp_path / "model" / "info.json").read_text())["count"] == len(ok) == 100
