"""Answers first: the instruction model gives way while a retrieval answer is being computed.

The model and the retrieval answers share the machine's cores, and, in one process, the
interpreter and the memory bandwidth: a token step streams the whole model through memory. The
bot marks each message it answers (:meth:`AnswersFirst.answering`); the model waits at its next
layer boundary (about a millisecond away on the 0.5B model) until no answer is under way. One
token step waits ``max_pause_s`` at most in all, so a flood of messages slows generation but
never stops it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class AnswersFirst:
    """A gate between the answers (many threads) and the model's steps (its workers)."""

    def __init__(self, max_pause_s: float = 0.1) -> None:
        if max_pause_s <= 0:
            raise ValueError("max_pause_s must be positive")
        self.max_pause_s = max_pause_s
        self._busy = 0
        self._cond = threading.Condition()
        self._local = threading.local()
        #: Seconds the model has waited in all, and how many times (for benchmarks).
        self.paused_s = 0.0
        self.pauses = 0

    @property
    def busy(self) -> bool:
        """True while an answer is under way."""
        return self._busy > 0

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Hold the model back while the block runs (re-entrant, any number of threads)."""
        self._enter()
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            self._leave()

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Inside :meth:`answering`, stop holding the model back while the block runs: for an
        answer that waits for the model itself (a chit-chat reply it writes)."""
        depth = getattr(self._local, "depth", 0)
        for _ in range(depth):
            self._leave()
        try:
            yield
        finally:
            for _ in range(depth):
                self._enter()

    def new_step(self) -> None:
        """The calling generator begins a token step: its pauses get ``max_pause_s`` again."""
        self._local.budget = self.max_pause_s

    def give_way(self, *_hook_args: Any) -> None:
        """Called by the model before each layer (a forward pre-hook): wait while an answer is
        under way, within what is left of this token step's ``max_pause_s``."""
        if not self._busy:  # the common case, without the lock
            return
        budget = getattr(self._local, "budget", self.max_pause_s)
        if budget <= 0:
            return
        started = time.perf_counter()
        with self._cond:
            self._cond.wait_for(lambda: not self._busy, timeout=budget)
        waited = time.perf_counter() - started
        self._local.budget = budget - waited
        with self._cond:
            self.paused_s += waited
            self.pauses += 1

    def _enter(self) -> None:
        with self._cond:
            self._busy += 1

    def _leave(self) -> None:
        with self._cond:
            self._busy -= 1
            if not self._busy:
                self._cond.notify_all()
