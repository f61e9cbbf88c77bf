"""Slots for tool commands: numbers, environments, algorithms and ``key=value`` pairs -> dict.

``extract_slots("train a DQN on CartPole for 20k steps")`` gives
``{"algorithm": "dqn", "env": "CartPole-v1", "steps": 20000, "numbers": [20000]}``.
Regular expressions over the raw text: deterministic, microseconds per command.
"""

from __future__ import annotations

import re
from typing import Any

# Canonical Gymnasium ids and the ways people write them (lower-cased, spaces/hyphens removed).
ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "CartPole-v1": ("cartpole",),
    "FrozenLake-v1": ("frozenlake",),
    "FrozenLake8x8-v1": ("frozenlake8x8",),
    "Taxi-v3": ("taxi",),
    "MountainCar-v0": ("mountaincar",),
    "MountainCarContinuous-v0": ("mountaincarcontinuous",),
    "Acrobot-v1": ("acrobot",),
    "Pendulum-v1": ("pendulum",),
    "LunarLander-v3": ("lunarlander",),
    "Blackjack-v1": ("blackjack",),
    "CliffWalking-v0": ("cliffwalking", "cliffwalk"),
}

# Canonical algorithm names and their spellings (matched as whole words, case-insensitively).
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "dqn": ("dqn", "deep q network", "deep q-network", "deep q-learning", "deep q learning"),
    "expected-sarsa": ("expected sarsa", "expected-sarsa", "ev-sarsa"),
    "q-learning": ("q-learning", "q learning", "qlearning", "tabular q"),
    "sarsa": ("sarsa",),
    "reinforce": ("reinforce", "vanilla policy gradient"),
    "a2c": ("a2c", "advantage actor-critic", "advantage actor critic", "actor-critic",
            "actor critic"),
    "ppo": ("ppo",),
    "cem": ("cem", "cross-entropy method", "cross entropy method", "crossentropy method"),
    "value-iteration": ("value iteration", "value-iteration"),
    "policy-iteration": ("policy iteration", "policy-iteration"),
    "em": ("em", "expectation maximization", "expectation-maximization"),
    "vae": ("vae", "variational autoencoder", "variational auto-encoder"),
    "gp": ("gp", "gaussian process", "gaussian processes"),
    "mcmc": ("mcmc", "markov chain monte carlo", "metropolis-hastings", "gibbs sampling"),
    "lda": ("lda", "latent dirichlet allocation"),
    "bayesian-optimization": ("bayesian optimization", "bayesian optimisation", "bayesopt"),
}

# Unit words after a number, and the slot the number fills.
UNITS: dict[str, str] = {
    "step": "steps", "steps": "steps", "timestep": "steps", "timesteps": "steps",
    "episode": "episodes", "episodes": "episodes", "epoch": "epochs", "epochs": "epochs",
    "iteration": "iterations", "iterations": "iterations", "iters": "iterations",
    "iter": "iterations", "seed": "seeds", "seeds": "seeds", "sample": "samples",
    "samples": "samples", "component": "components", "components": "components",
    "topic": "topics", "topics": "topics", "cluster": "clusters", "clusters": "clusters",
    "sessions": "sessions", "session": "sessions",
}
# Names before a number ("lr 0.01", "gamma 0.99", "seed 3").
KEYWORDS: dict[str, str] = {
    "lr": "lr", "learning rate": "lr", "gamma": "gamma", "discount": "gamma",
    "epsilon": "epsilon", "eps": "epsilon", "alpha": "alpha", "seed": "seed",
    "batch size": "batch_size", "batch": "batch_size", "temperature": "temperature",
}

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?[kKmM]?"
_KV_RE = re.compile(r"\b([A-Za-z_][\w.-]*)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s,;]+)")


def parse_number(text: str) -> int | float:
    """``"20k"`` -> 20000, ``"1e5"`` -> 100000, ``"10,000"`` -> 10000, ``"0.5"`` -> 0.5."""
    raw = text.strip().replace(",", "")
    scale = 1
    if raw[-1:] in ("k", "K"):
        scale, raw = 1_000, raw[:-1]
    elif raw[-1:] in ("m", "M"):
        scale, raw = 1_000_000, raw[:-1]
    value = float(raw) * scale
    if value.is_integer() and ("." not in raw or scale > 1 or "e" in raw.lower()):
        return int(value)
    return value


def _coerce(value: str) -> Any:
    """A ``key=value`` value as a number, bool or string."""
    value = value.strip("\"'")
    lowered = value.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if re.fullmatch(_NUMBER, value):
        return parse_number(value)
    return value


def find_environment(text: str) -> str | None:
    """The canonical Gymnasium id named in ``text`` (``cartpole``, ``Cart Pole v1`` ...)."""
    lowered = text.lower()
    best: tuple[int, str, str | None] | None = None  # (spelling length, env, version)
    for env, spellings in ENVIRONMENTS.items():
        for spelling in spellings:
            letters = r"[\s_-]?".join(re.escape(c) for c in spelling)
            m = re.search(rf"(?<![a-z0-9]){letters}(?:[\s_-]*v(\d+)\b)?(?![a-z])", lowered)
            # Prefer the longest spelling (FrozenLake8x8 over FrozenLake).
            if m and (best is None or len(spelling) > best[0]):
                best = (len(spelling), env, m.group(1))
    if best is None:
        return None
    _, env, version = best
    return f"{env.rsplit('-', 1)[0]}-v{version}" if version else env


def find_algorithm(text: str) -> str | None:
    """The canonical name of the first algorithm named in ``text``."""
    lowered = text.lower()
    best: tuple[int, int, str] | None = None  # (position, -length, name)
    for name, spellings in ALGORITHMS.items():
        for spelling in spellings:
            m = re.search(rf"(?<![\w-]){re.escape(spelling)}(?![\w-])", lowered)
            if m and (best is None or (m.start(), -len(spelling)) < best[:2]):
                best = (m.start(), -len(spelling), name)
    return best[2] if best else None


def extract_slots(text: str) -> dict[str, Any]:
    """All slots in a tool command; absent slots are left out (``numbers`` is always there)."""
    slots: dict[str, Any] = {}
    algorithm = find_algorithm(text)
    if algorithm:
        slots["algorithm"] = algorithm
    env = find_environment(text)
    if env:
        slots["env"] = env
    pairs = {m.group(1): _coerce(m.group(2)) for m in _KV_RE.finditer(text)}
    kv_spans = [m.span() for m in _KV_RE.finditer(text)]
    free = text
    for a, b in kv_spans:  # numbers inside key=value pairs are not free numbers
        free = free[:a] + " " * (b - a) + free[b:]
    numbers: list[int | float] = []
    lowered = free.lower()
    for m in re.finditer(rf"(?<![\w.]){_NUMBER}(?![\w.]*[A-Za-z_])", free):
        value = parse_number(m.group())
        numbers.append(value)
        after = re.match(r"\s*([a-z]+)", lowered[m.end():])
        before = re.search(r"([a-z]+(?: [a-z]+)?)\s*[:=]?\s*$", lowered[: m.start()])
        if after and after.group(1) in UNITS:
            slots.setdefault(UNITS[after.group(1)], value)
        elif before:
            words = before.group(1)
            last = words.split()[-1]
            key = KEYWORDS.get(words) or KEYWORDS.get(last)
            if key:
                slots.setdefault(key, value)
    slots["numbers"] = numbers
    slots.update(pairs)
    return slots
