"""Blind side-by-side comparison of generated answers with the retrieval-only ones.

:func:`write_side_by_side` runs both systems over a question file and writes, for a person
to judge, each question with the two answers in random order (``blind.md``), the key that
says which is which (``key.tsv``, kept apart), and both systems' outputs (``outputs.jsonl``).
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)
Kind = Literal["programming", "smalltalk"]
KINDS: tuple[str, ...] = ("programming", "smalltalk")


class QuestionsError(ValueError):
    """The question file is missing or malformed (the message names the line)."""


@dataclass(frozen=True)
class Question:
    """One evaluation prompt: its kind, its text and its line in the file."""

    kind: Kind
    text: str
    line: int = 0


AnswerFn = Callable[[Question], str]


def read_questions(path: Path) -> list[Question]:
    """Questions from a TSV file of ``kind<TAB>text`` lines (kind: programming | smalltalk).
    Blank lines, ``#`` comments and a ``kind<TAB>text`` header are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise QuestionsError(f"no question file at {path}") from None
    except UnicodeDecodeError:
        raise QuestionsError(f"{path} is not UTF-8 text") from None
    questions: list[Question] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kind, tab, text = line.partition("\t")
        kind = kind.strip().lower()
        if number == 1 and kind == "kind":
            continue
        if not tab or not text.strip():
            raise QuestionsError(f"{path}:{number}: expected 'kind<TAB>text', got {line!r}")
        if kind not in KINDS:
            raise QuestionsError(f"{path}:{number}: kind {kind!r} is not one of {KINDS}")
        questions.append(Question(kind, text.strip(), number))  # type: ignore[arg-type]
    if not questions:
        raise QuestionsError(f"{path} holds no questions")
    return questions


@dataclass(frozen=True)
class SideBySide:
    """The files :func:`write_side_by_side` wrote."""

    blind: Path
    key: Path
    outputs: Path
    count: int


def _answer(system: AnswerFn, question: Question, name: str) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        text = system(question)
    except Exception as error:  # noqa: BLE001 - a failure is an answer the judge should see
        log.exception("%s failed on %r", name, question.text)
        text = f"(no answer: {type(error).__name__}: {error})"
    return text, 1000 * (time.perf_counter() - started)


def _quoted(text: str) -> str:
    """``text`` as a Markdown block quote that keeps its code fences readable."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines()) or ">"


def write_side_by_side(questions: Sequence[Question], retrieval: AnswerFn,
                       generated: AnswerFn, out_dir: Path, *, seed: int = 0,
                       progress: Callable[[float, str], None] | None = None) -> SideBySide:
    """Answer every question with both systems and write the blind comparison to
    ``out_dir``. The A/B order of each pair comes from ``seed``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    records = []
    for number, question in enumerate(questions, 1):
        if progress is not None:
            progress((number - 1) / len(questions), f"question {number}/{len(questions)}")
        retrieved, retrieval_ms = _answer(retrieval, question, "retrieval")
        written, generated_ms = _answer(generated, question, "generated")
        first = "generated" if rng.random() < 0.5 else "retrieval"
        records.append({"id": number, "kind": question.kind, "question": question.text,
                        "retrieval": retrieved, "generated": written,
                        "retrieval_ms": round(retrieval_ms, 1),
                        "generated_ms": round(generated_ms, 1), "a": first})
    outputs = out_dir / "outputs.jsonl"
    with outputs.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps({k: v for k, v in record.items() if k != "a"},
                                    ensure_ascii=False) + "\n")
    key = out_dir / "key.tsv"
    with key.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "A", "B"])
        for record in records:
            other = "retrieval" if record["a"] == "generated" else "generated"
            writer.writerow([record["id"], record["a"], other])
    blind = out_dir / "blind.md"
    lines = ["# Blind side-by-side: which answer is better?", "",
             "For each question judge A and B: correct? on topic? Then which is better "
             "(A, B or tie). The key is in key.tsv: do not open it before judging.", ""]
    for record in records:
        a = record[str(record["a"])]
        b = record["retrieval" if record["a"] == "generated" else "generated"]
        lines += [f"## {record['id']}. ({record['kind']}) {record['question']}", "",
                  "**A**", "", _quoted(str(a)), "", "**B**", "", _quoted(str(b)), "",
                  "Better: ___  A correct: ___  B correct: ___", ""]
    blind.write_text("\n".join(lines), encoding="utf-8")
    if progress is not None:
        progress(1.0, f"{len(records)} questions written to {out_dir}")
    return SideBySide(blind=blind, key=key, outputs=outputs, count=len(records))
