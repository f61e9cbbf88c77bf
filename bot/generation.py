"""Generated answers: the instruction model writes, the chat watches the message grow.

A :class:`Generator` wraps the shared :class:`~nlp_core.llm.LLMService`. ``answer`` submits a
programming answer grounded in the threads the search found and returns at once a
:class:`~bot.core.messages.ProgressReply` over a :class:`~bot.core.messages.LiveText`: the
channel sends it (saying the chat's place in the queue while it waits) and edits it as the text
arrives. The model runs in its own worker thread, so a slow generation never delays another
chat's retrieval answer. The finished text is stored in the conversation log. ``chitchat``
waits (briefly) for a persona reply, and falls back to retrieval on any failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from bot.core.messages import LiveText, ProgressReply, Reply, TextReply
from bot.storage.models import Event
from bot.storage.store import Store

if TYPE_CHECKING:
    from indexes import Hit
    from nlp_core.llm import Generation, GenerationHandle, LLMService, Prompt

log = logging.getLogger(__name__)

#: What the chit-chat persona says the bot can do.
CAPABILITIES = (
    "answer programming questions, pointing to similar StackOverflow threads",
    "run the Advanced ML course tools (training jobs, plots, faces, captions) from the chat",
    "chat a little",
)
#: Seconds between two looks at a waiting request's place in the queue.
QUEUE_POLL = 1.0
WRITING = "✍️ Writing a short answer"


@dataclass
class Generator:
    """The instruction model as the skills use it (built by ``bot.app.start_llm``)."""

    llm: LLMService
    store: Store
    #: Post id -> question body, for the threads that have one (read on first use).
    load_bodies: Callable[[], Mapping[str, str]]
    chitchat_timeout: float = 8.0
    #: Threads less similar than this are left out of the prompt (the answer then says it
    #: speaks from general knowledge).
    min_score: float = 0.5

    @cached_property
    def bodies(self) -> Mapping[str, str]:
        try:
            return self.load_bodies()
        except Exception:  # noqa: BLE001 - answers from titles alone are still answers
            log.warning("thread bodies are unavailable; answers read titles only",
                        exc_info=True)
            return {}

    def grounded_prompt(self, question: str, hits: Sequence[Hit], *,
                        language: str | None) -> Prompt:
        """The prompt for a short answer to ``question`` that cites ``hits`` (their titles,
        and bodies where the corpus has them) when they are close enough."""
        from nlp_core.llm import Thread, answer_prompt

        threads = [Thread(hit.title, hit.url, self.bodies.get(hit.meta.post_id or "", ""),
                          hit.score) for hit in hits]
        return answer_prompt(question, threads, language=language, min_score=self.min_score,
                             max_new_tokens=self.llm.max_new_tokens)

    def persona_prompt(self, text: str, history: Sequence[tuple[str, str]]) -> Prompt:
        """The prompt for a small-talk reply as amlbot, after ``history`` (user, bot) turns."""
        from nlp_core.llm import chitchat_prompt

        return chitchat_prompt(text, history, CAPABILITIES)

    def answer(self, question: str, hits: Sequence[Hit], *, language: str | None,
               user_id: str, chat_id: str, channel: str) -> Reply:
        """A short answer to ``question``, grounded in ``hits``, written while the chat
        watches (or a line saying why there is none this time)."""
        prompt = self.grounded_prompt(question, hits, language=language)
        return self._stream(prompt, user_id=user_id, chat_id=chat_id, channel=channel)

    def chitchat(self, text: str, history: Sequence[tuple[str, str]], *,
                 user_id: str) -> str | None:
        """A reply in the bot's persona, or None (busy, slow, failed or empty): the caller
        answers by retrieval then."""
        from nlp_core.llm import QueueFull, ServiceUnavailable

        if not self.llm.ready:
            return None
        try:
            handle = self.llm.submit(self.persona_prompt(text, history),
                                     user_id=user_id, timeout_s=self.chitchat_timeout)
            gate = self.llm.answers_first
            # This answer waits for the model: it must not hold the model back meanwhile.
            with gate.aside() if gate is not None else nullcontext():
                generation = handle.result(self.chitchat_timeout + 2.0)
        except (QueueFull, ServiceUnavailable, TimeoutError) as exc:
            log.info("chit-chat falls back to retrieval: %s", exc)
            return None
        return generation.text.strip() or None

    # --- streaming ----------------------------------------------------------------------------
    def _stream(self, prompt: Prompt, *, user_id: str, chat_id: str, channel: str) -> Reply:
        from nlp_core.llm import QueueFull, ServiceUnavailable

        live = LiveText(title=f"{WRITING}…")
        handles: list[GenerationHandle] = []

        def on_text(_delta: str) -> None:
            if handles:
                live.write(handles[0].preview())

        def on_done(generation: Generation) -> None:
            text = final_text(generation)
            live.finish(text, failed=not generation.text)
            self._store(text, chat_id=chat_id, user_id=user_id, channel=channel,
                        finish=generation.finish)

        try:
            handle = self.llm.submit(prompt, user_id=user_id, on_text=on_text,
                                     on_done=on_done)
        except (QueueFull, ServiceUnavailable) as busy:
            return TextReply(f"(No written answer this time: {busy}.)")
        handles.append(handle)
        self._follow_queue(handle, live)
        return ProgressReply(live)

    def _follow_queue(self, handle: GenerationHandle, live: LiveText) -> None:
        """Tell the chat its place in the queue until its answer starts."""
        def follow() -> None:
            while not handle.done() and not live.detail:
                place = handle.position()
                if place:
                    live.note(f"{WRITING}… you are number {place} in the queue.")
                elif not self.llm.ready:
                    live.note(f"{WRITING}… (the model is still loading: a minute or two)")
                else:
                    live.note(f"{WRITING}…")
                time.sleep(QUEUE_POLL)

        threading.Thread(target=follow, name="llm-queue-note", daemon=True).start()

    def _store(self, text: str, *, chat_id: str, user_id: str, channel: str,
               finish: str) -> None:
        try:
            self.store.append_events([Event(chat_id=chat_id, user_id=user_id, channel=channel,
                                            type="reply", text=text,
                                            data={"kind": "generated", "finish": finish})])
        except Exception:  # noqa: BLE001 - the answer was shown; its record is best effort
            log.exception("could not store a generated answer for chat %s", chat_id)


def final_text(generation: Generation) -> str:
    """What the chat is left with when a generation ends."""
    text = generation.text.strip()
    if generation.finish == "timeout":
        return (f"{text}\n(cut short: it took too long)" if text
                else "(No written answer: it took too long. The threads above are my answer.)")
    if generation.finish == "error" or not text:
        return "(The model had nothing reliable to add: the threads above are my answer.)"
    return text


def llm_weights_path(data_dir: Path) -> Path:
    """Where ``amlbot llm fetch`` puts the packaged default model."""
    from nlp_core.llm import DEFAULT_WEIGHTS

    return data_dir / "models" / "llm" / DEFAULT_WEIGHTS.filename
