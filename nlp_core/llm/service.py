"""One shared instruction model behind a request queue.

:class:`LLMService` loads the model once, in its own thread, and generates in worker threads
fed by a queue, never on the caller's thread. ``submit`` returns a :class:`GenerationHandle`:
iterate it for text deltas as they arrive (or pass ``on_text``), ask its ``position()`` in the
queue, ``cancel()`` it, and ``result()`` gives the final :class:`Generation`. A request that
runs past its timeout is cut off cleanly: the text so far comes back, flagged ``timeout``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from nlp_core.llm.loading import LoadedModel, load_model
from nlp_core.llm.priority import AnswersFirst
from nlp_core.llm.weights import ModelSource, resolve_model

log = logging.getLogger(__name__)
Finish = Literal["stop", "length", "timeout", "cancelled", "error"]
Progress = Callable[[float, str], None]


class QueueFull(RuntimeError):
    """The user (or everyone together) has too many requests waiting; try again later."""


class ServiceUnavailable(RuntimeError):
    """The service is closed, or its model failed to load (the message says why)."""


@dataclass(frozen=True)
class Prompt:
    """What to generate: chat messages and how.

    ``stop(raw)`` ends generation early once the raw text is complete enough; ``finish(raw)``
    turns the raw text into the final one (trimmed, checked); ``preface`` is fixed text that
    starts the answer (streamed first, not generated).
    """

    messages: tuple[Mapping[str, str], ...]
    max_new_tokens: int = 160
    temperature: float = 0.0
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    seed: int | None = None
    stop: Callable[[str], bool] | None = None
    finish: Callable[[str], str] | None = None
    preface: str = ""
    kind: str = "chat"
    #: Generate past the end-of-turn token (benchmarks only: it makes every run equally long).
    ignore_end: bool = False


@dataclass(frozen=True)
class Generation:
    """A finished request: the final ``text`` (preface + cleaned model text), the model's
    ``raw`` text, why it ended (``finish``) and its timings in milliseconds.

    ``first_token_ms`` and ``total_ms`` count from the moment a worker took the request (the
    wait in the queue is ``queued_ms``).
    """

    text: str
    raw: str
    finish: Finish
    prompt_tokens: int = 0
    new_tokens: int = 0
    queued_ms: float = 0.0
    first_token_ms: float | None = None
    total_ms: float = 0.0
    error: str | None = None
    #: CPU time of the worker thread to the first token and in all: with one torch thread,
    #: what the wall times would be on an otherwise idle core.
    first_token_cpu_ms: float | None = None
    cpu_ms: float = 0.0

    @property
    def timed_out(self) -> bool:
        """True when the timeout cut the generation off."""
        return self.finish == "timeout"

    @property
    def ms_per_token(self) -> float | None:
        """Average time of each token after the first (the decode speed)."""
        if self.first_token_ms is None or self.new_tokens < 2:
            return None
        return (self.total_ms - self.first_token_ms) / (self.new_tokens - 1)


_DONE = object()


class GenerationHandle:
    """A submitted request. Thread-safe; any number of readers may iterate it."""

    def __init__(self, service: LLMService, request_id: int, user_id: str, prompt: Prompt,
                 *, timeout_s: float, max_new_tokens: int,
                 on_text: Callable[[str], None] | None,
                 on_done: Callable[[Generation], None] | None) -> None:
        self.id = request_id
        self.user_id = user_id
        self.prompt = prompt
        self.timeout_s = timeout_s
        self.max_new_tokens = max_new_tokens
        self.submitted = time.perf_counter()
        self._service = service
        self._on_text = on_text
        self._on_done = on_done
        self._chunks: list[str] = []
        self._raw = ""
        self._result: Generation | None = None
        self._cond = threading.Condition()
        self._cancelled = threading.Event()

    # --- reading -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        return self.deltas()

    def deltas(self, timeout: float | None = None) -> Iterator[str]:
        """The text deltas as they arrive (the preface first), until the request ends.
        Raises :class:`TimeoutError` when nothing new comes for ``timeout`` seconds."""
        seen = 0

        def fresh_or_done() -> bool:
            return len(self._chunks) > seen or self._result is not None

        while True:
            with self._cond:
                if not self._cond.wait_for(fresh_or_done, timeout):
                    raise TimeoutError(f"request {self.id}: nothing new in {timeout} s")
                fresh = self._chunks[seen:]
                finished = self._result is not None and len(self._chunks) == seen + len(fresh)
            yield from fresh
            seen += len(fresh)
            if finished:
                return

    def result(self, timeout: float | None = None) -> Generation:
        """The final generation, waiting for it; :class:`TimeoutError` after ``timeout`` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._result is not None, timeout):
                raise TimeoutError(f"request {self.id} is not done after {timeout} s")
            assert self._result is not None
            return self._result

    def text(self) -> str:
        """Everything streamed so far (raw, preface included)."""
        with self._cond:
            return "".join(self._chunks)

    def preview(self) -> str:
        """The answer so far as the final text will show it (cleaned: an unfinished
        sentence is held back). For progressively edited chat messages."""
        with self._cond:
            if self._result is not None:
                return self._result.text
            raw = self._raw
        return self.prompt.preface + _finished(self.prompt, raw)

    def done(self) -> bool:
        """True once the request has ended, in any way."""
        with self._cond:
            return self._result is not None

    def position(self) -> int:
        """Place in the queue: 1 is next to start, 2 the one after; 0 once it runs or ended."""
        return self._service.position(self)

    def cancel(self) -> None:
        """Stop the request: a waiting one never starts, a running one stops at the next
        token (its text so far is kept, flagged ``cancelled``)."""
        self._cancelled.set()
        self._service._withdraw(self)

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called (or the service closed)."""
        return self._cancelled.is_set()

    # --- written by the worker ---------------------------------------------------------------
    def _emit(self, delta: str, raw: str | None = None) -> None:
        if not delta:
            return
        with self._cond:
            self._chunks.append(delta)
            if raw is not None:
                self._raw = raw
            self._cond.notify_all()
        if self._on_text is not None:
            try:
                self._on_text(delta)
            except Exception:  # noqa: BLE001 - a broken reader must not stop the generation
                log.exception("on_text callback of request %s failed", self.id)

    def _finish(self, generation: Generation) -> None:
        with self._cond:
            if self._result is not None:
                return
            self._result = generation
            self._cond.notify_all()
        if self._on_done is not None:
            try:
                self._on_done(generation)
            except Exception:  # noqa: BLE001
                log.exception("on_done callback of request %s failed", self.id)


def _finished(prompt: Prompt, raw: str) -> str:
    if prompt.finish is None:
        return raw.strip()
    try:
        return prompt.finish(raw)
    except Exception:  # noqa: BLE001 - the raw text beats no text
        log.exception("finishing a %s answer failed", prompt.kind)
        return raw.strip()


@dataclass
class _Stats:
    served: int = 0
    timed_out: int = 0
    cancelled: int = 0
    failed: int = 0
    tokens: int = 0
    load_s: float | None = None
    loaded_from_cache: bool = False


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (Linux threads have their own; threads
    it starts inherit it). Elsewhere, or when refused, nothing changes."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as error:
        log.debug("could not lower the model thread's priority: %s", error)


class LLMService:
    """The instruction model, loaded once and shared by every chat.

    ``model`` is a path (GGUF file or transformers directory), a checked
    :class:`~nlp_core.llm.weights.ModelSource`, or an already :class:`LoadedModel` (shared,
    e.g. by tests), or a function that returns the source: it runs in the loading thread (to
    join a packaged model's parts, say). ``dtype``: int8 | float32 | bfloat16. ``threads``:
    torch threads (process-wide; 1 is fastest on a busy machine). ``max_new_tokens`` caps every
    request; ``timeout_s`` is each request's default generation budget. ``max_queued_per_user``
    requests (waiting or running) per user, ``max_queue`` in all. ``workers`` generate side by
    side (each on its own thread). ``cache_dir`` keeps the converted model (see
    :func:`~nlp_core.llm.loading.load_model`). ``nice`` lowers the loading and generating
    threads' CPU priority (Linux), so on a few busy cores the retrieval answers and the rest of
    the process come first; 0 leaves it alone. ``answers_first``: a gate the caller marks its
    answers with; generation pauses between layers while one is under way (see
    :mod:`nlp_core.llm.priority`).

    Nothing loads until :meth:`start`; requests submitted before the model is ready wait.
    """

    def __init__(self, model: Path | str | ModelSource | LoadedModel | Callable[[], ModelSource],
                 *, dtype: str = "int8",
                 threads: int = 1, max_new_tokens: int = 200, timeout_s: float = 30.0,
                 max_queued_per_user: int = 2, max_queue: int = 32, workers: int = 1,
                 cache_dir: Path | None = None, max_prompt_tokens: int = 1536,
                 nice: int = 10, answers_first: AnswersFirst | None = None) -> None:
        if max_new_tokens < 1 or timeout_s <= 0 or max_queued_per_user < 1 or workers < 1:
            raise ValueError("max_new_tokens, timeout_s, max_queued_per_user and workers "
                             "must be positive")
        self.dtype = dtype
        self.threads = threads
        self.max_new_tokens = max_new_tokens
        self.timeout_s = timeout_s
        self.max_queued_per_user = max_queued_per_user
        self.max_queue = max_queue
        self.workers = workers
        self.cache_dir = cache_dir
        self.max_prompt_tokens = max_prompt_tokens
        self.nice = nice
        self.answers_first = answers_first
        self._model_arg = model
        self._loaded: LoadedModel | None = model if isinstance(model, LoadedModel) else None
        self._cond = threading.Condition()
        self._pending: deque[GenerationHandle] = deque()
        self._running: set[GenerationHandle] = set()
        self._per_user: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._loader: threading.Thread | None = None
        self._threads: list[threading.Thread] = []  # the workers
        self._ready = threading.Event()
        self._closed = False
        self._closing = threading.Event()
        self._error: str | None = None
        self._stats = _Stats()

    # --- life cycle --------------------------------------------------------------------------
    def start(self, progress: Progress | None = None, *, wait: bool = False,
              after_s: float = 0.0) -> LLMService:
        """Load the model in a background thread, then serve. ``after_s``: begin loading that
        many seconds later (requests wait meanwhile), so that a process's first replies do not
        share the interpreter with the model's imports. With ``wait``, block until the model
        is ready and raise :class:`ServiceUnavailable` if it failed to load."""
        with self._cond:
            if self._closed:
                raise ServiceUnavailable("the model service is closed")
            if self._loader is None:
                self._loader = threading.Thread(target=self._load_and_serve,
                                                args=(progress, after_s), name="llm-load",
                                                daemon=True)
                self._loader.start()
        if wait:
            self.wait_ready()
            if self._error is not None:
                raise ServiceUnavailable(self._error)
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once the model is loaded (or failed: see :attr:`error`) within ``timeout``."""
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        """True when the model is loaded and requests are being served."""
        return self._ready.is_set() and self._error is None

    @property
    def error(self) -> str | None:
        """Why the model failed to load, if it did."""
        return self._error

    @property
    def loaded(self) -> LoadedModel | None:
        """The model, once loaded."""
        return self._loaded

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop serving: waiting requests are cancelled, the running ones stop at their next
        token, and the worker threads end. Idempotent."""
        with self._cond:
            self._closed = True
            self._closing.set()
            waiting = list(self._pending)
            self._pending.clear()
            for handle in self._running:
                handle._cancelled.set()
            self._cond.notify_all()
        for handle in waiting:
            handle._cancelled.set()
            self._end(handle, Generation("", "", "cancelled", error="the service closed"),
                      running=False)
        current = threading.current_thread()
        for thread in list(self._threads):
            # The loader is not waited for (a daemon that serves nothing once it sees the
            # service closed): quitting never waits for a model to load.
            if thread is not current:
                thread.join(timeout)

    def __enter__(self) -> LLMService:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- requests ----------------------------------------------------------------------------
    def submit(self, prompt: Prompt | Sequence[Mapping[str, str]], *, user_id: str = "",
               on_text: Callable[[str], None] | None = None,
               on_done: Callable[[Generation], None] | None = None,
               timeout_s: float | None = None, max_new_tokens: int | None = None,
               seed: int | None = None) -> GenerationHandle:
        """Queue a request for ``user_id`` and return its handle at once.

        ``prompt`` is a :class:`Prompt` or plain chat messages. ``on_text(delta)`` and
        ``on_done(generation)`` run on the worker thread (keep them quick). Raises
        :class:`QueueFull` over the per-user or total limit and :class:`ServiceUnavailable`
        when the service is closed or its model failed to load.
        """
        if not isinstance(prompt, Prompt):
            prompt = Prompt(messages=tuple(dict(m) for m in prompt))
        if seed is not None:
            prompt = replace(prompt, seed=seed)
        budget = min(self.max_new_tokens, max_new_tokens or prompt.max_new_tokens)
        with self._cond:
            if self._closed:
                raise ServiceUnavailable("the model service is closed")
            if self._error is not None:
                raise ServiceUnavailable(self._error)
            if self._per_user.get(user_id, 0) >= self.max_queued_per_user:
                raise QueueFull(f"you already have {self.max_queued_per_user} question(s) "
                                "being answered; wait for them to finish")
            if len(self._pending) >= self.max_queue:
                raise QueueFull(f"{len(self._pending)} questions are waiting for the model; "
                                "try again in a minute")
            handle = GenerationHandle(self, next(self._ids), user_id, prompt,
                                      timeout_s=timeout_s or self.timeout_s,
                                      max_new_tokens=max(1, budget), on_text=on_text,
                                      on_done=on_done)
            self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
            self._pending.append(handle)
            self._cond.notify()
        return handle

    def generate(self, prompt: Prompt | Sequence[Mapping[str, str]], *, user_id: str = "",
                 timeout: float | None = None, **options: Any) -> Generation:
        """Submit and wait for the result (convenience for scripts and evaluation)."""
        return self.submit(prompt, user_id=user_id, **options).result(timeout)

    def position(self, handle: GenerationHandle) -> int:
        """``handle``'s place in the queue (1: next to start); 0 when running or ended."""
        with self._cond:
            for place, waiting in enumerate(self._pending, 1):
                if waiting is handle:
                    return place
        return 0

    def queue_length(self) -> int:
        """Requests waiting for a worker."""
        with self._cond:
            return len(self._pending)

    def stats(self) -> dict[str, Any]:
        """Counters for status pages: served, timed out, cancelled, failed, tokens, queue."""
        with self._cond:
            s = self._stats
            return {"ready": self.ready, "error": self._error, "queued": len(self._pending),
                    "running": len(self._running), "served": s.served,
                    "timed_out": s.timed_out, "cancelled": s.cancelled, "failed": s.failed,
                    "tokens": s.tokens, "load_s": s.load_s,
                    "loaded_from_cache": s.loaded_from_cache}

    def _withdraw(self, handle: GenerationHandle) -> None:
        with self._cond:
            try:
                self._pending.remove(handle)
            except ValueError:
                return  # running (it will see the flag) or ended
        self._end(handle, Generation("", "", "cancelled"), running=False)

    def _end(self, handle: GenerationHandle, generation: Generation, *, running: bool) -> None:
        with self._cond:
            if running:
                self._running.discard(handle)
            left = self._per_user.get(handle.user_id, 0) - 1
            if left > 0:
                self._per_user[handle.user_id] = left
            else:
                self._per_user.pop(handle.user_id, None)
            self._stats.served += generation.finish in ("stop", "length", "timeout")
            self._stats.timed_out += generation.finish == "timeout"
            self._stats.cancelled += generation.finish == "cancelled"
            self._stats.failed += generation.finish == "error"
            self._stats.tokens += generation.new_tokens
        handle._finish(generation)

    # --- workers -----------------------------------------------------------------------------
    def _load_and_serve(self, progress: Progress | None, after_s: float = 0.0) -> None:
        if after_s > 0 and self._closing.wait(after_s):
            return
        lower_priority(self.nice)  # the workers started below inherit it
        try:
            if self._loaded is None:
                source = self._model_arg
                if callable(source):
                    source = source()
                if not isinstance(source, ModelSource):
                    source = resolve_model(source)  # type: ignore[arg-type]
                self._loaded = load_model(source, dtype=self.dtype, cache_dir=self.cache_dir,
                                          threads=self.threads, progress=progress)
                self._stats.load_s = self._loaded.load_s
                self._stats.loaded_from_cache = self._loaded.from_cache
            else:
                import torch

                torch.set_num_threads(max(1, self.threads))
        except Exception as error:  # noqa: BLE001 - reported to every caller instead
            log.exception("the instruction model failed to load")
            self._fail_all(f"the instruction model failed to load: {error}")
            return
        self._ready.set()
        workers = [threading.Thread(target=self._serve, name=f"llm-worker-{i}", daemon=True)
                   for i in range(self.workers)]
        with self._cond:
            if self._closed:
                return
            self._threads.extend(workers)
        for worker in workers:
            worker.start()

    def _fail_all(self, message: str) -> None:
        with self._cond:
            self._error = message
            waiting = list(self._pending)
            self._pending.clear()
        self._ready.set()
        for handle in waiting:
            self._end(handle, Generation("", "", "error", error=message), running=False)

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                handle = self._pending.popleft()
                self._running.add(handle)
            try:
                generation = self._run(handle)
            except Exception as error:  # noqa: BLE001 - one bad request must not kill the worker
                log.exception("generation of request %s failed", handle.id)
                generation = Generation(handle.text(), handle._raw, "error", error=str(error))
            self._end(handle, generation, running=True)

    def _run(self, handle: GenerationHandle) -> Generation:
        import torch

        loaded = self._loaded
        assert loaded is not None
        prompt = handle.prompt
        started = time.perf_counter()
        cpu_started = time.thread_time()
        queued_ms = 1000 * (started - handle.submitted)
        deadline = started + handle.timeout_s
        ids = loaded.chat_ids([dict(m) for m in prompt.messages])
        if len(ids) > self.max_prompt_tokens:
            return Generation("", "", "error", prompt_tokens=len(ids), queued_ms=queued_ms,
                              error=f"the prompt has {len(ids)} tokens, over the limit of "
                                    f"{self.max_prompt_tokens}")
        handle._emit(prompt.preface)
        generator = torch.Generator()
        if prompt.seed is None:
            generator.seed()
        else:
            generator.manual_seed(prompt.seed)
        new: list[int] = []
        raw = ""
        finish: Finish = "length"
        first_ms: float | None = None
        first_cpu_ms: float | None = None
        with torch.inference_mode(), self._giving_way(loaded.model):
            cache = _new_cache(loaded.model)  # grows in place, step by step
            inputs = torch.tensor([ids])
            while len(new) < handle.max_new_tokens:
                if handle.cancelled:
                    finish = "cancelled"
                    break
                if time.perf_counter() > deadline:
                    finish = "timeout"
                    break
                if self.answers_first is not None:
                    self.answers_first.new_step()
                output = loaded.model(input_ids=inputs, use_cache=True, logits_to_keep=1,
                                      **{_cache_argument(loaded.model): cache})
                token = _pick(output.logits[0, -1].float(), new, prompt, generator)
                if first_ms is None:
                    first_ms = 1000 * (time.perf_counter() - started)
                    first_cpu_ms = 1000 * (time.thread_time() - cpu_started)
                if token in loaded.stop_ids and not prompt.ignore_end:
                    finish = "stop"
                    break
                new.append(token)
                text = loaded.decode(new)
                if not text.endswith("\ufffd"):  # hold back half a UTF-8 character
                    handle._emit(text[len(raw):], text)
                    raw = text
                    if prompt.stop is not None and prompt.stop(raw):
                        finish = "stop"
                        break
                inputs = torch.tensor([[token]])
        raw = loaded.decode(new)
        total_ms = 1000 * (time.perf_counter() - started)
        final = _finished(prompt, raw)
        # Nothing usable (the preface alone says nothing): callers fall back on empty text.
        return Generation(prompt.preface + final if final else "", raw, finish,
                          prompt_tokens=len(ids), new_tokens=len(new), queued_ms=queued_ms,
                          first_token_ms=first_ms, total_ms=total_ms,
                          first_token_cpu_ms=first_cpu_ms,
                          cpu_ms=1000 * (time.thread_time() - cpu_started))


    @contextlib.contextmanager
    def _giving_way(self, model: Any) -> Iterator[None]:
        """While it generates, ``model`` calls :meth:`AnswersFirst.give_way` before each of
        its layers (a forward pre-hook), so an answer waits for one layer, not one token."""
        gate = self.answers_first
        if gate is None:
            yield
            return
        hooks = [layer.register_forward_pre_hook(gate.give_way) for layer in _layers(model)]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()


def _layers(model: Any) -> list[Any]:
    """The decoder's blocks: the first list of modules in the model (``model.layers``)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 1:
            return list(module)
    return [model]


@functools.cache
def _cache_argument_of(model_class: Any) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"  # renamed in transformers 5


def _cache_argument(model: Any) -> str:
    """The name under which ``model.forward`` takes its key-value cache."""
    model_class: Any = type(model)
    return _cache_argument_of(model_class)


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:  # older transformers
        return DynamicCache()


def _pick(logits: Any, generated: list[int], prompt: Prompt, generator: Any) -> int:
    """The next token: a repetition penalty on the tokens generated so far (not the prompt's:
    copying names and citation numbers from it is wanted), then greedy or top-p sampling."""
    import torch

    if prompt.repetition_penalty != 1.0 and generated:
        seen = torch.tensor(sorted(set(generated)))
        values = logits[seen]
        logits[seen] = torch.where(values > 0, values / prompt.repetition_penalty,
                                   values * prompt.repetition_penalty)
    if prompt.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / prompt.temperature, dim=-1)
    ranked, order = probs.sort(descending=True)
    ranked[(ranked.cumsum(0) - ranked) >= prompt.top_p] = 0.0
    return int(order[torch.multinomial(ranked, 1, generator=generator)])
