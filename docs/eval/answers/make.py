"""Make the blind side-by-side of generated answers against today's retrieval answers.

Retrieval side: what the bot answers now (``Assistant.handle``, one fresh chat per question).
Generated side: the packaged Qwen2.5-Coder-0.5B-Instruct (int8) through ``nlp_core.llm``,
grounded in the threads the bot's own search finds (bodies where the corpus has them).

    AMLBOT_DATA_DIR=var PYTHONPATH=. python docs/eval/answers/make.py --data-dir var

Writes blind.md, key.tsv, outputs.jsonl and details.jsonl next to this file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: What the chit-chat persona says the bot can do.
CAPABILITIES = (
    "answer programming questions, pointing to similar StackOverflow threads",
    "run the Advanced ML course tools (training jobs, plots) from the chat",
    "chat a little",
)


def sample_post_bodies(data_dir: Path) -> dict[str, str]:
    """Thread URL -> HTML body, for the corpus posts that have a body."""
    bodies = {}
    path = data_dir / "datasets" / "so_posts" / "so_sample_posts.jsonl"
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                bodies[f"https://stackoverflow.com/questions/{record['id']}"] = record["body"]
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--questions", type=Path, default=HERE / "questions.tsv")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--model", type=Path, default=None,
                        help="a GGUF file or transformers dir (default: the packaged 0.5B)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only")
    parser.add_argument("--seed", type=int, default=20260517)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ["AMLBOT_DATA_DIR"] = str(args.data_dir)

    from bot.core import Assistant, Message, TextReply
    from bot.settings import Settings
    from bot.skills.nlp import CLOSE_MATCH, search_query
    from nlp_core.llm import (
        DEFAULT_WEIGHTS,
        LLMService,
        Question,
        Thread,
        answer_prompt,
        assemble_packaged_model,
        chitchat_prompt,
        cited,
        read_questions,
        write_side_by_side,
    )

    settings = Settings(data_dir=args.data_dir)
    assistant = Assistant(settings)
    nlp = assistant.nlp
    assert nlp is not None, "the NLP models did not load"
    bodies = sample_post_bodies(args.data_dir)
    model = args.model or assemble_packaged_model(
        args.data_dir / "models" / "llm" / DEFAULT_WEIGHTS.filename)
    service = LLMService(model, cache_dir=args.data_dir / "models" / "llm" / "cache",
                         timeout_s=120, max_new_tokens=200).start(wait=True)
    details: list[dict[str, object]] = []

    def retrieval(question: Question) -> str:
        replies = assistant.handle(Message(chat_id=f"eval-{question.line}", user_id="eval",
                                           text=question.text))
        return "\n\n".join(r.text for r in replies if isinstance(r, TextReply))

    def generated(question: Question) -> str:
        if question.kind == "smalltalk":
            prompt = chitchat_prompt(question.text, capabilities=CAPABILITIES, seed=0)
            threads: list[Thread] = []
        else:
            understanding = nlp.understand(question.text)
            hits = nlp.search_threads(search_query(question.text), understanding.language, k=3)
            threads = [Thread(h.title, h.url, bodies.get(h.url, ""), h.score) for h in hits]
            prompt = answer_prompt(question.text, threads, min_score=CLOSE_MATCH,
                                   language=understanding.language)
        result = service.generate(prompt, user_id="eval", timeout=600)
        shown = [t for t in threads if t.score >= CLOSE_MATCH]
        details.append({
            "line": question.line, "kind": question.kind, "finish": result.finish,
            "prompt_tokens": result.prompt_tokens, "new_tokens": result.new_tokens,
            "first_token_ms": round(result.first_token_ms or 0.0, 1),
            "total_ms": round(result.total_ms, 1),
            "threads": [[t.title, round(t.score, 3), bool(t.body)] for t in threads],
            "threads_in_prompt": len(shown), "cited": cited(result.text, len(shown)),
            "model_cited": cited(result.raw, len(shown)), "raw": result.raw,
        })
        return result.text

    questions = read_questions(args.questions)[:args.limit]
    started = time.perf_counter()
    files = write_side_by_side(questions, retrieval, generated, args.out, seed=args.seed,
                               progress=lambda f, d: logging.info("%3.0f%% %s", 100 * f, d))
    with (args.out / "details.jsonl").open("w", encoding="utf-8") as handle:
        for record in details:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    logging.info("%d questions in %.0f s; load average %s; %s", files.count,
                 time.perf_counter() - started, os.getloadavg(), service.stats())
    service.close()
    assistant.close()


if __name__ == "__main__":
    main()
