"""The blind side-by-side file, the committed question set, and the speed benchmark."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nlp_core.llm.bench import bench_prompts, bench_service
from nlp_core.llm.evaluation import (
    Question,
    QuestionsError,
    read_questions,
    write_side_by_side,
)
from nlp_core.llm.loading import LoadedModel
from nlp_core.llm.service import LLMService

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "eval" / "answers" / "questions.tsv"


def test_questions_are_read_with_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("kind\ttext\n# a comment\n\nprogramming\tHow do I sort a list?\n"
                    "smalltalk\thi there\n", encoding="utf-8")
    assert read_questions(path) == [Question("programming", "How do I sort a list?", 4),
                                    Question("smalltalk", "hi there", 5)]
    path.write_text("programming\tok\npoetry\troses are red\n", encoding="utf-8")
    with pytest.raises(QuestionsError, match=r"q.tsv:2: kind 'poetry'"):
        read_questions(path)
    path.write_text("programming how do I sort\n", encoding="utf-8")
    with pytest.raises(QuestionsError, match=r":1: expected 'kind<TAB>text'"):
        read_questions(path)
    with pytest.raises(QuestionsError, match="no question file"):
        read_questions(tmp_path / "missing.tsv")


def test_the_committed_question_set_is_thirty_of_each_kind() -> None:
    questions = read_questions(COMMITTED)
    kinds = [q.kind for q in questions]
    assert kinds.count("programming") == 30 and kinds.count("smalltalk") == 30
    assert len({q.text.lower() for q in questions}) == 60


def _upper(question: Question) -> str:
    return question.text.upper()


def _reversed_words(question: Question) -> str:
    if "fail" in question.text:
        raise RuntimeError("model unavailable")
    return " ".join(reversed(question.text.split()))


def test_side_by_side_is_blind_with_a_separate_key(tmp_path: Path) -> None:
    questions = [Question("programming", f"question number {i}") for i in range(12)]
    questions.append(Question("smalltalk", "this one will fail"))
    files = write_side_by_side(questions, _upper, _reversed_words, tmp_path / "out", seed=3)
    assert files.count == 13
    records = [json.loads(line) for line in files.outputs.read_text().splitlines()]
    assert [r["retrieval"] for r in records] == [q.text.upper() for q in questions]
    assert records[-1]["generated"].startswith("(no answer: RuntimeError: model unavailable")
    with files.key.open() as handle:
        key = list(csv.DictReader(handle, delimiter="\t"))
    assert {row["A"] for row in key} == {"generated", "retrieval"}  # the order varies
    blind = files.blind.read_text()
    assert "generated" not in blind.split("\n## ")[1] and "retrieval" not in blind
    for record, row in zip(records, key, strict=True):
        section = blind.split(f"\n## {record['id']}. ")[1].split("\n## ")[0]
        a, b = section.split("**A**")[1].split("**B**")
        assert record[row["A"]] in a and record[row["B"]] in b


def test_the_bench_reports_first_token_and_completion_times(smollm2: LoadedModel) -> None:
    with LLMService(smollm2) as service:
        report = bench_service(service, bench_prompts(2), tokens=6, runs=2)
    assert report["runs"] == 2 and report["tokens"] == 6
    assert 0 < report["first_token_ms_p50"] <= report["completion_ms_p50"]
    assert report["prompt_tokens_mean"] > 50 and report["ms_per_token_p50"] > 0
    assert report["dtype"] == "int8" and "loadavg_1m_before" in report
    assert 0 < report["first_token_cpu_ms_p50"] <= report["completion_cpu_ms_p50"]
