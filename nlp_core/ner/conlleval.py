"""Chunk-level precision/recall/F1 with the semantics of the CoNLL-2000 ``conlleval`` script.

A faithful port of the Perl script's chunk logic (``startOfChunk``/``endOfChunk``, IOB1/IOB2/IOE
tags, hyphens allowed inside types such as ``geo-loc``). Sentences are scored as if joined with a
boundary line, which the script treats as an ``O`` token, exactly like the course's evaluation
that appends ``'O'`` after every tweet. Scores are fractions in [0, 1], not percentages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def split_tag(tag: str) -> tuple[str, str]:
    """``B-geo-loc`` -> ``("B", "geo-loc")``; ``O`` -> ``("O", "")`` (the script's regex)."""
    prefix, sep, kind = tag.partition("-")
    if not sep:
        return tag, ""
    return prefix, kind


def end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether a chunk ended just before the current token (``endOfChunk`` in conlleval)."""
    end = (
        (prev_tag == "B" and tag in ("B", "O"))
        or (prev_tag == "I" and tag in ("B", "O"))
        or (prev_tag == "E" and tag in ("E", "I", "O"))
    )
    if prev_tag not in ("O", ".") and prev_type != type_:
        end = True
    if prev_tag in ("]", "["):
        end = True
    return end


def start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether a chunk starts at the current token (``startOfChunk`` in conlleval)."""
    start = (
        (tag == "B" and prev_tag in ("B", "I", "O"))
        or (prev_tag == "O" and tag in ("I", "E"))
        or (prev_tag == "E" and tag in ("E", "I"))
    )
    if tag not in ("O", ".") and prev_type != type_:
        start = True
    if tag in ("[", "]"):
        start = True
    return start


@dataclass
class ChunkCounts:
    """The script's counters, overall and per chunk type."""

    correct_chunks: int = 0
    found_correct: int = 0
    found_guessed: int = 0
    correct_tags: int = 0
    tokens: int = 0
    correct_by_type: Counter[str] = field(default_factory=Counter)
    found_correct_by_type: Counter[str] = field(default_factory=Counter)
    found_guessed_by_type: Counter[str] = field(default_factory=Counter)


def count_chunks(
    true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]
) -> ChunkCounts:
    """Run the conlleval state machine over sentences of gold and predicted tags."""
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} gold sentences but {len(pred_seqs)} predicted")
    counts = ChunkCounts()
    in_correct = False
    last_correct, last_correct_type = "O", ""
    last_guessed, last_guessed_type = "O", ""

    def lines() -> Any:
        for gold, guess in zip(true_seqs, pred_seqs, strict=True):
            if len(gold) != len(guess):
                raise ValueError(f"sentence length mismatch: {len(gold)} vs {len(guess)}")
            for g, p in zip(gold, guess, strict=True):
                yield False, g, p
            yield True, "O", "O"  # the blank line between sentences

    for boundary, gold_tag, guess_tag in lines():
        correct, correct_type = split_tag(gold_tag)
        guessed, guessed_type = split_tag(guess_tag)
        if boundary:
            guessed = "O"
        if in_correct:
            gold_end = end_of_chunk(last_correct, correct, last_correct_type, correct_type)
            guess_end = end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
            if gold_end and guess_end and last_guessed_type == last_correct_type:
                in_correct = False
                counts.correct_chunks += 1
                counts.correct_by_type[last_correct_type] += 1
            elif gold_end != guess_end or guessed_type != correct_type:
                in_correct = False
        gold_start = start_of_chunk(last_correct, correct, last_correct_type, correct_type)
        guess_start = start_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if gold_start and guess_start and guessed_type == correct_type:
            in_correct = True
        if gold_start:
            counts.found_correct += 1
            counts.found_correct_by_type[correct_type] += 1
        if guess_start:
            counts.found_guessed += 1
            counts.found_guessed_by_type[guessed_type] += 1
        if not boundary:
            if correct == guessed and guessed_type == correct_type:
                counts.correct_tags += 1
            counts.tokens += 1
        last_correct, last_correct_type = correct, correct_type
        last_guessed, last_guessed_type = guessed, guessed_type
    if in_correct:
        counts.correct_chunks += 1
        counts.correct_by_type[last_correct_type] += 1
    return counts


def _prf(correct: int, guessed: int, gold: int) -> dict[str, float | int]:
    precision = correct / guessed if guessed else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": gold,
            "predicted": guessed, "correct": correct}


def score(
    true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Overall and per-type chunk P/R/F1 (fractions), plus token accuracy, as a plain dict."""
    counts = count_chunks(true_seqs, pred_seqs)
    result: dict[str, Any] = _prf(counts.correct_chunks, counts.found_guessed,
                                  counts.found_correct)
    result["accuracy"] = counts.correct_tags / counts.tokens if counts.tokens else 0.0
    result["tokens"] = counts.tokens
    types = sorted(set(counts.found_correct_by_type) | set(counts.found_guessed_by_type))
    result["per_type"] = {
        t: _prf(counts.correct_by_type[t], counts.found_guessed_by_type[t],
                counts.found_correct_by_type[t])
        for t in types
    }
    return result


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks of one tag sequence as ``(type, start, end)`` token spans (end exclusive)."""
    spans: list[tuple[str, int, int]] = []
    prev, prev_type = "O", ""
    start: int | None = None
    for i, tag in enumerate([*tags, "O"]):
        cur, cur_type = split_tag(tag)
        if start is not None and end_of_chunk(prev, cur, prev_type, cur_type):
            spans.append((prev_type, start, i))
            start = None
        if start_of_chunk(prev, cur, prev_type, cur_type):
            start = i
        prev, prev_type = cur, cur_type
    return spans
