"""The answer-path benchmark: ``Assistant.handle`` over a mix of real messages, with the thread
index padded to a target size."""

from __future__ import annotations

import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bot.bench.startup import percentile
from bot.settings import Settings


@dataclass
class AnswerResult:
    """Latencies of every message, by route, with the index size and peak memory."""

    index_size: int
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    rss_mb: float = 0.0

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
        return out


def mixed_messages(settings: Settings, n: int, seed: int = 7) -> list[tuple[str, str]]:
    """(route, text) pairs: held-out SO titles, real chit-chat turns, tool requests, commands."""
    from bot.data import require
    from nlp_core.chitchat import chitchat_dataset_pairs
    from nlp_core.corpora import load_titles

    rng = random.Random(seed)
    titles = load_titles(require("so_tags/unlabeled.tsv", settings))
    chat = [p.prompt for _, p in zip(range(5000), chitchat_dataset_pairs(), strict=False)]
    # Heavy tools: the bench users are not admins, so these are routed and refused, and no
    # job process competes with the measurement.
    tools = ["train a DQN on CartPole for 20k steps", "run value iteration on FrozenLake",
             "fit a gaussian mixture with EM", "show me LDA topics of the titles",
             "train a variational autoencoder on mnist"]
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


def measure_answers(settings: Settings, n: int = 1000, index_size: int = 100_000,
                    warmup: int = 20) -> AnswerResult:
    """Time ``Assistant.handle`` over ``n`` mixed messages (after ``warmup`` untimed ones)."""
    from bot.app import build_assistant
    from bot.core import Message

    assistant = build_assistant(settings.model_copy(update={"heavy_commands_open": False,
                                                      "admins": [], "user_job_quota": 0}))
    assert assistant.nlp is not None, "the answer benchmark needs the NLU (AMLBOT_NLU_ENABLED)"
    size = pad_index(assistant.nlp, settings, index_size)
    result = AnswerResult(index_size=size)
    messages = mixed_messages(settings, n + warmup)
    for i, (route, text) in enumerate(messages):
        message = Message(chat_id=f"bench-{i % 50}", user_id=f"bench-{i % 50}", text=text)
        started = time.perf_counter()
        assistant.handle(message)
        elapsed = (time.perf_counter() - started) * 1000
        if i >= warmup:
            result.latencies_ms.setdefault(route, []).append(elapsed)
    result.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assistant.close()
    return result
