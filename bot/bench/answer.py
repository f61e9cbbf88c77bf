"""The answer-path benchmark: ``Assistant.handle`` over a mix of real messages, with the thread
index padded to a target size."""

from __future__ import annotations

import random
import re
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bot.bench.startup import percentile
from bot.core import Message
from bot.core.messages import ProgressReply, ProgressState
from bot.settings import Settings


@dataclass
class AnswerResult:
    """Latencies of every message, by route, with the index size and peak memory."""

    index_size: int
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    #: The same mix with a generated answer queued after each programming question.
    with_generation_ms: dict[str, list[float]] = field(default_factory=dict)
    rss_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        every = [x for values in self.latencies_ms.values() for x in values]
        out: dict[str, Any] = {
            "messages": len(every), "index_size": self.index_size,
            "p50_ms": round(percentile(every, 50), 2), "p90_ms": round(percentile(every, 90), 2),
            "p99_ms": round(percentile(every, 99), 2), "max_ms": round(max(every), 2),
            "rss_mb": round(self.rss_mb, 1),
        }
        for route, values in sorted(self.latencies_ms.items()):
            out[f"{route}_p50_ms"] = round(percentile(values, 50), 2)
            out[f"{route}_p99_ms"] = round(percentile(values, 99), 2)
        if self.with_generation_ms:
            on = [x for values in self.with_generation_ms.values() for x in values]
            out["generation_on_p50_ms"] = round(percentile(on, 50), 2)
            out["generation_on_p99_ms"] = round(percentile(on, 99), 2)
            for route, values in sorted(self.with_generation_ms.items()):
                out[f"generation_on_{route}_p50_ms"] = round(percentile(values, 50), 2)
                out[f"generation_on_{route}_p99_ms"] = round(percentile(values, 99), 2)
        out.update(self.extra)
        return out


def mixed_messages(settings: Settings, n: int, seed: int = 7) -> list[tuple[str, str]]:
    """(route, text) pairs: held-out SO titles, real chit-chat turns, tool requests, commands."""
    from bot.data import require
    from nlp_core.chitchat import chitchat_dataset_pairs
    from nlp_core.corpora import load_titles

    rng = random.Random(seed)
    titles = load_titles(require("so_tags/unlabeled.tsv", settings))
    chat = [p.prompt for _, p in zip(range(5000), chitchat_dataset_pairs(), strict=False)]
    # Heavy tools only: the bench users are not admins, so these are routed and refused, and
    # no job process competes with the measurement (light ones, such as value iteration or
    # EM, would start a job for anyone).
    tools = ["train a DQN on CartPole for 20k steps", "sample a posterior with MCMC",
             "tune hyperparameters with bayesian optimisation",
             "show me LDA topics of the titles", "train a variational autoencoder on mnist"]
    commands = ["/help", "/about", "/history 5", "/tools", "/nonsense"]
    messages = []
    for i in range(n):
        roll = i % 10
        if roll < 5:
            messages.append(("programming", rng.choice(titles)))
        elif roll < 8:
            messages.append(("chitchat", rng.choice(chat)))
        elif roll < 9:
            messages.append(("tool", rng.choice(tools)))
        else:
            messages.append(("command", rng.choice(commands)))
    return messages


def pad_index(nlp: Any, settings: Settings, size: int) -> int:
    """Grow the loaded thread index to ``size`` titles with AskUbuntu titles (real
    StackExchange questions), so latency is measured at that scale. Returns the new size."""
    from bot.data import require
    from indexes import ThreadMeta
    from nlp_core.corpora import read_pairs

    index = nlp.searcher.index
    missing = size - len(index)
    if missing <= 0:
        return len(index)
    titles: list[str] = []
    seen: set[str] = set()
    for pair in read_pairs(require("askubuntu_dups/train_titles.tsv", settings)):
        for title in (pair.title1, pair.title2):
            if title not in seen:
                seen.add(title)
                titles.append(title)
    titles = titles[:missing]
    vectors = nlp.encoder.encode_cached(titles, settings.data_dir / "cache" / "embeddings")
    index.add(vectors, [ThreadMeta(None, t, ("ubuntu",), "askubuntu") for t in titles])
    rng = np.random.default_rng(0)
    while len(index) < size:  # still short: real vectors again, with a little noise
        take = min(size - len(index), len(vectors))
        noisy = vectors[:take] + rng.normal(0, 0.02, (take, vectors.shape[1]))
        index.add(noisy.astype(np.float32),
                  [ThreadMeta(None, t, ("ubuntu",), "askubuntu-noisy") for t in titles[:take]])
    return len(index)


def _job_count(assistant: Any) -> int:
    from sqlalchemy import func, select

    from bot.storage.models import Job

    with assistant.store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def _run_mix(assistant: Any, messages: list[tuple[str, str]], warmup: int,
             prefix: str, pace_s: float = 0.0) -> dict[str, list[float]]:
    """Latency of each message by route; with ``pace_s``, one message starts every ``pace_s``
    seconds (as chats arrive), else each right after the last (a flood)."""
    latencies: dict[str, list[float]] = {}
    for i, (route, text) in enumerate(messages):
        message = Message(chat_id=f"{prefix}-{i % 50}", user_id=f"{prefix}-{i % 50}",
                          text=text)
        started = time.perf_counter()
        assistant.handle(message)
        elapsed = time.perf_counter() - started
        if i >= warmup:
            latencies.setdefault(route, []).append(elapsed * 1000)
        if pace_s > elapsed:
            time.sleep(pace_s - elapsed)
    return latencies


def _burst(assistant: Any, questions: list[str], watch_s: float = 6.0) -> dict[str, Any]:
    """``len(questions)`` chats ask at the same moment: how long each waits for its retrieval
    answer, and the places in the generation queue their messages show."""
    barrier = threading.Barrier(len(questions))
    waits: list[float] = []
    places: dict[int, set[int]] = {}
    lock = threading.Lock()

    def ask(number: int, text: str) -> None:
        barrier.wait()
        started = time.perf_counter()
        replies = assistant.handle(Message(chat_id=f"burst-{number}",
                                           user_id=f"burst-{number}", text=text))
        elapsed = (time.perf_counter() - started) * 1000

        def seen(state: ProgressState) -> None:
            found = re.search(r"number (\d+) in the queue", state.title)
            if found:
                with lock:
                    places.setdefault(number, set()).add(int(found[1]))

        for reply in replies:
            if isinstance(reply, ProgressReply):
                reply.handle.subscribe(seen)
        with lock:
            waits.append(elapsed)

    threads = [threading.Thread(target=ask, args=(n, q)) for n, q in enumerate(questions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(watch_s)  # the queue notes come once a second
    with lock:
        told = {n: sorted(p) for n, p in places.items()}
    return {"burst_chats": len(questions),
            "burst_retrieval_p50_ms": round(percentile(waits, 50), 2),
            "burst_retrieval_max_ms": round(max(waits), 2),
            "burst_chats_told_their_place": len(told),
            # the furthest place each chat was told (the queue moves while they watch)
            "burst_places_seen": sorted(p[-1] for p in told.values())}


def _encoder_floor(nlp: Any, questions: list[str], runs: int = 5) -> dict[str, float]:
    """The sentence encoder alone on a burst's questions, in one batch: the least time (wall,
    and CPU of all threads) that any way of answering them all could take."""
    walls, cpus = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        nlp.encoder.encode(questions)
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((time.process_time() - started_cpu) * 1000)
    return {"burst_encode_wall_ms": round(percentile(walls, 50), 2),
            "burst_encode_cpu_ms": round(percentile(cpus, 50), 2)}


def measure_answers(settings: Settings, n: int = 1000, index_size: int = 100_000,
                    warmup: int = 20, generate: bool = False, pace_ms: float = 0.0,
                    progress: Callable[[str], None] = lambda _line: None) -> AnswerResult:
    """Time ``Assistant.handle`` over ``n`` mixed messages (after ``warmup`` untimed ones).

    With ``generate``, the same mix runs twice: without the instruction model, then with a
    generated answer queued after every programming question, to show that the retrieval
    answers keep their speed. In between, the model's own speed (first token and a 60-token
    answer, one request at a time) and a burst of 20 chats asking at once are measured.
    ``pace_ms``: one message every that many milliseconds (0: each right after the last)."""
    from bot.app import build_assistant, open_store, start_llm

    quiet = settings.model_copy(update={"heavy_commands_open": False, "admins": [],
                                        "user_job_quota": 0, "llm_answers": "off"})
    assistant = build_assistant(quiet)
    nlp = assistant.nlp
    assert nlp is not None, "the answer benchmark needs the NLU (AMLBOT_NLU_ENABLED)"
    size = pad_index(nlp, settings, index_size)
    result = AnswerResult(index_size=size)
    messages = mixed_messages(settings, n + warmup)
    progress(f"{n} messages, generation off")
    jobs_before = _job_count(assistant)
    result.extra["pace_ms"] = pace_ms
    result.latencies_ms = _run_mix(assistant, messages, warmup, "bench", pace_ms / 1000)
    if _job_count(assistant) != jobs_before:
        raise RuntimeError("the mix started jobs: their processes would share the cores with "
                           "the answers measured")
    programming = [text for route, text in messages if route == "programming"]
    if generate:
        # The same burst without the model: what 20 answers at once cost on these cores.
        progress("20 chats ask at once, generation off")
        off = _burst(assistant, programming[:20], watch_s=0.0)
        result.extra.update({"burst_off_retrieval_p50_ms": off["burst_retrieval_p50_ms"],
                             "burst_off_retrieval_max_ms": off["burst_retrieval_max_ms"]})
        result.extra.update(_encoder_floor(nlp, programming[:20]))
    assistant.close()
    if not generate:
        result.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return result

    from nlp_core.llm import bench_service

    loud = quiet.model_copy(update={"llm_answers": "always"})
    store = open_store(loud)
    generator, problem = start_llm(loud, store)
    if generator is None:
        raise RuntimeError(f"no instruction model: {problem}")
    progress("loading the instruction model")
    generator.llm.wait_ready()
    if generator.llm.error:
        raise RuntimeError(f"the instruction model did not load: {generator.llm.error}")
    progress("the model alone: 8 answers of 60 tokens, one at a time")
    speed = bench_service(generator.llm, tokens=60, runs=8)
    result.extra.update({
        "first_token_p50_ms": speed["first_token_ms_p50"],
        "generated_answer_p50_ms": speed["completion_ms_p50"],
        "generated_tokens": 60, "llm": {k: v for k, v in speed.items()
                                        if not k.startswith(("first_token_ms", "completion"))},
    })
    assistant = build_assistant(loud, store=store, nlp=nlp, generator=generator)
    progress("20 chats ask at once")
    result.extra.update(_burst(assistant, programming[:20]))
    progress(f"{n} messages, generation on")
    # Other messages than the first pass's (same mix), so that no cache favours this one.
    fresh = mixed_messages(settings, n + warmup, seed=8)
    result.with_generation_ms = _run_mix(assistant, fresh, warmup, "bench-llm", pace_ms / 1000)
    result.extra["llm_served"] = generator.llm.stats()["served"]
    gate = generator.llm.answers_first
    if gate is not None:  # how long generation gave way to the answers, in all
        result.extra.update({"llm_paused_s": round(gate.paused_s, 2),
                             "llm_pauses": gate.pauses})
    assistant.close()
    result.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result
