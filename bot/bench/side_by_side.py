"""``amlbot eval answers``: the bot's answers with and without the instruction model, side by
side and blind, for a person to judge (see :func:`nlp_core.llm.write_side_by_side`)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.core import Message, TextReply
from bot.settings import Settings

log = logging.getLogger(__name__)


def side_by_side(settings: Settings, questions: Path, out_dir: Path, *, limit: int | None = None,
                 seed: int = 20260517, timeout_s: float = 600.0,
                 progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Answer every question of ``questions`` (``kind<TAB>text`` lines) twice: as the bot does
    by retrieval alone (a fresh chat each), and with the instruction model (grounded in the
    same search's top three threads for programming questions, in the persona for small
    talk). Writes ``blind.md``, ``key.tsv``, ``outputs.jsonl`` and ``details.jsonl`` (prompt
    sizes, threads, citations, timings) to ``out_dir``; returns a summary."""
    from bot.app import build_assistant, open_store, start_llm
    from bot.skills.nlp import search_query
    from nlp_core.llm import Question, cited, read_questions, write_side_by_side

    chosen = read_questions(questions)[:limit]
    retrieval_settings = settings.model_copy(update={"llm_answers": "off"})
    assistant = build_assistant(retrieval_settings)
    nlp = assistant.nlp
    if nlp is None:
        raise RuntimeError("the NLP models are off (AMLBOT_NLU_ENABLED=false)")
    generator, problem = start_llm(settings.model_copy(update={"llm_answers": "always"}),
                                   open_store(retrieval_settings))
    if generator is None:
        raise RuntimeError(problem or "no instruction model")
    llm = generator.llm
    llm.wait_ready()
    if llm.error:
        raise RuntimeError(f"the instruction model did not load: {llm.error}")
    details: list[dict[str, Any]] = []

    def retrieval(question: Question) -> str:
        replies = assistant.handle(Message(chat_id=f"eval-{question.line}", user_id="eval",
                                           text=question.text))
        return "\n\n".join(r.text for r in replies if isinstance(r, TextReply))

    def generated(question: Question) -> str:
        if question.kind == "smalltalk":
            prompt, shown = generator.persona_prompt(question.text, []), []
        else:
            language = nlp.understand(question.text).language
            hits = nlp.search_threads(search_query(question.text), language, k=3)
            prompt = generator.grounded_prompt(question.text, hits, language=language)
            shown = [hit for hit in hits if hit.score >= generator.min_score]
        result = llm.generate(prompt, user_id="eval", timeout_s=timeout_s, timeout=timeout_s)
        details.append({
            "line": question.line, "kind": question.kind, "finish": result.finish,
            "prompt_tokens": result.prompt_tokens, "new_tokens": result.new_tokens,
            "first_token_ms": round(result.first_token_ms or 0.0, 1),
            "total_ms": round(result.total_ms, 1),
            "threads": [[hit.title, round(hit.score, 3)] for hit in shown],
            "cited": cited(result.text, len(shown)), "raw": result.raw,
        })
        return result.text

    started = time.perf_counter()
    try:
        files = write_side_by_side(chosen, retrieval, generated, out_dir, seed=seed,
                                   progress=progress)
    finally:
        llm.close()
        assistant.close()
    with (out_dir / "details.jsonl").open("w", encoding="utf-8") as handle:
        for record in details:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    grounded = [d for d in details if d["kind"] == "programming" and d["threads"]]
    return {
        "questions": files.count, "out_dir": str(out_dir),
        "programming_with_threads": len(grounded),
        "share_citing_a_thread": (round(sum(bool(d["cited"]) for d in grounded)
                                        / len(grounded), 3) if grounded else None),
        "timed_out": sum(d["finish"] == "timeout" for d in details),
        "seconds": round(time.perf_counter() - started, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
