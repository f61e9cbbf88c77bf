"""conlleval chunk scoring on hand-made sequences."""

from __future__ import annotations

import pytest

from nlp_core.ner.conlleval import chunks, count_chunks, score, split_tag


def test_split_tag_keeps_hyphens_inside_the_type() -> None:
    assert split_tag("B-geo-loc") == ("B", "geo-loc")
    assert split_tag("I-person") == ("I", "person")
    assert split_tag("O") == ("O", "")


def test_one_right_one_wrong_type() -> None:
    result = score([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(0.5)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["per_type"]["PER"]["f1"] == pytest.approx(1.0)
    assert result["per_type"]["LOC"] == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0, "correct": 0})
    assert result["per_type"]["ORG"]["predicted"] == 1


def test_chunk_starting_with_i_counts_like_b() -> None:
    # conlleval treats I- after O as the start of a chunk (IOB1), so these chunks match.
    result = score([["I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])
    assert result["f1"] == pytest.approx(1.0)
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_partial_span_is_wrong() -> None:
    counts = count_chunks([["B-ORG", "I-ORG", "O"]], [["B-ORG", "O", "O"]])
    assert (counts.correct_chunks, counts.found_correct, counts.found_guessed) == (0, 1, 1)
    counts = count_chunks([["B-ORG", "O"]], [["B-ORG", "I-ORG"]])
    assert (counts.correct_chunks, counts.found_correct, counts.found_guessed) == (0, 1, 1)


def test_type_change_inside_a_chunk_splits_it() -> None:
    counts = count_chunks([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]])
    assert (counts.correct_chunks, counts.found_correct, counts.found_guessed) == (0, 1, 2)
    assert chunks(["B-PER", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 2)]


def test_adjacent_b_tags_are_separate_chunks() -> None:
    counts = count_chunks([["B-geo-loc", "B-geo-loc"]], [["B-geo-loc", "I-geo-loc"]])
    assert (counts.correct_chunks, counts.found_correct, counts.found_guessed) == (0, 2, 1)


def test_sentence_boundary_ends_chunks() -> None:
    # I-LOC opening the second sentence is a new chunk, not a continuation of the first.
    gold = [["O", "B-LOC"], ["I-LOC", "O"]]
    counts = count_chunks(gold, gold)
    assert (counts.correct_chunks, counts.found_correct, counts.found_guessed) == (2, 2, 2)
    # A chunk still open at the end of the data is counted.
    counts = count_chunks([["B-PER", "I-PER"]], [["B-PER", "I-PER"]])
    assert counts.correct_chunks == 1


def test_no_predictions_gives_zero_not_an_error() -> None:
    result = score([["B-PER", "O"], ["O", "B-LOC"]], [["O", "O"], ["O", "O"]])
    assert (result["precision"], result["recall"], result["f1"]) == (0.0, 0.0, 0.0)
    assert result["support"] == 2


def test_mixed_example_matches_hand_count() -> None:
    gold = [["B-person", "I-person", "O", "B-geo-loc", "O", "B-company"],
            ["O", "B-product", "I-product", "I-product"]]
    pred = [["B-person", "I-person", "O", "B-geo-loc", "I-geo-loc", "O"],
            ["O", "B-product", "I-product", "I-product"]]
    # correct: person, product; gold 4 chunks; predicted 3 chunks
    result = score(gold, pred)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 4)
    assert result["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert result["per_type"]["company"]["recall"] == 0.0
    assert result["per_type"]["geo-loc"]["predicted"] == 1


def test_chunks_spans() -> None:
    assert chunks(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"]) == [
        ("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5)]
    assert chunks(["O", "O"]) == []


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        score([["O", "O"]], [["O"]])
