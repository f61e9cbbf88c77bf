"""Speed of the instruction model as a chat sees it: time to the first streamed token and to
a complete answer of a fixed number of tokens, over realistic grounded-answer prompts."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from nlp_core.llm.prompts import Thread, answer_prompt, chitchat_prompt
from nlp_core.llm.service import LLMService, Prompt

#: Questions with the kind of threads the search returns for them (titles as in the corpus).
BENCH_QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("How do I drop rows with NaN values in a pandas DataFrame?",
     ("How to drop rows of Pandas DataFrame whose value in a certain column is NaN",
      "Remove NaN values from pandas dataframe")),
    ("Why is my git push rejected with non-fast-forward?",
     ("git push rejected non-fast-forward", "Cannot push to GitHub, keeps saying need merge")),
    ("How can I read a file line by line in Java?",
     ("How to read a large text file line by line using Java?",
      "Java read file into ArrayList")),
    ("What is the difference between let and var in JavaScript?",
     ("What's the difference between using let and var?",)),
    ("How to convert a string to datetime in Python?",
     ("Converting string into datetime", "Parse date string and change format")),
    ("SQL: select the row with the max value per group",
     ("SQL select only rows with max value on a column",
      "Get records with max value for each group of grouped SQL results")),
    ("How do I center a div horizontally with CSS?",
     ("How to horizontally center an element", "Center a div in CSS")),
    ("How to sort a dictionary by value in Python?",
     ("How do I sort a dictionary by value?", "Sort a Python dictionary by value")),
)


def bench_prompts(count: int = 8) -> list[Prompt]:
    """``count`` grounded-answer prompts (cycling through :data:`BENCH_QUESTIONS`), and a
    chit-chat prompt in every fourth place, as the bot would build them."""
    prompts: list[Prompt] = []
    for index in range(count):
        if index % 4 == 3:
            prompts.append(chitchat_prompt("hey, how is your day going?",
                                           capabilities=("answer programming questions",
                                                         "run course tools"), seed=index))
            continue
        question, titles = BENCH_QUESTIONS[index % len(BENCH_QUESTIONS)]
        threads = [Thread(t, score=0.8 - 0.05 * i) for i, t in enumerate(titles)]
        prompts.append(answer_prompt(question, threads))
    return prompts


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bench_service(service: LLMService, prompts: Sequence[Prompt] | None = None, *,
                  tokens: int = 60, runs: int = 8, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``runs`` prompts one after another through ``service`` (started), each for exactly
    ``tokens`` new tokens, and report medians and 90th percentiles of ``first_token_ms``
    (prefill and the first token) and ``completion_ms`` (all ``tokens``), the decode speed
    ``ms_per_token``, prompt sizes and the load average. The ``*_cpu_ms`` figures are the
    worker thread's CPU time: with one torch thread, the wall time an idle core would give (a
    busy machine stretches the wall times, not these). ``timeout`` (s) replaces the service's
    generation timeout for these runs."""
    chosen = list(prompts) if prompts is not None else bench_prompts(runs)
    chosen = (chosen * (runs // max(len(chosen), 1) + 1))[:runs]
    load_before = os.getloadavg()
    first: list[float] = []
    complete: list[float] = []
    first_cpu: list[float] = []
    complete_cpu: list[float] = []
    per_token: list[float] = []
    prompt_tokens: list[int] = []
    for prompt in chosen:
        timed = replace(prompt, max_new_tokens=tokens, stop=None, ignore_end=True)
        generation = service.generate(timed, user_id="bench", max_new_tokens=tokens,
                                      timeout_s=timeout, timeout=timeout)
        if generation.finish == "error":
            raise RuntimeError(f"the benchmark prompt failed: {generation.error}")
        first.append(generation.first_token_ms or generation.total_ms)
        complete.append(generation.total_ms)
        first_cpu.append(generation.first_token_cpu_ms or generation.cpu_ms)
        complete_cpu.append(generation.cpu_ms)
        if generation.ms_per_token is not None:
            per_token.append(generation.ms_per_token)
        prompt_tokens.append(generation.prompt_tokens)
    loaded = service.loaded
    return {
        "model": loaded.source.label if loaded else None,
        "dtype": loaded.dtype if loaded else None, "threads": service.threads,
        "load_s": round(loaded.load_s, 1) if loaded else None,
        "loaded_from_cache": loaded.from_cache if loaded else None,
        "runs": len(chosen), "tokens": tokens,
        "prompt_tokens_mean": round(statistics.fmean(prompt_tokens), 1),
        "first_token_ms_p50": round(_percentile(first, 50), 1),
        "first_token_ms_p90": round(_percentile(first, 90), 1),
        "completion_ms_p50": round(_percentile(complete, 50), 1),
        "completion_ms_p90": round(_percentile(complete, 90), 1),
        "ms_per_token_p50": round(_percentile(per_token, 50), 1) if per_token else None,
        "first_token_cpu_ms_p50": round(_percentile(first_cpu, 50), 1),
        "completion_cpu_ms_p50": round(_percentile(complete_cpu, 50), 1),
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
