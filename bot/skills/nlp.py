"""Skills backed by the trained NLP models: StackOverflow answers and chit-chat."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
import weakref
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.core.messages import Reply, TextReply
from bot.skills.base import BaseSkill, Command, Request, Services, skills

if TYPE_CHECKING:
    from bot.skills.persona import Persona
    from bot.storage.models import Event
    from nlp_core.pipeline import NLP

log = logging.getLogger(__name__)

_ERROR_LINE = re.compile(r"^.*\b\w*(?:Error|Exception|Fault|Panic)\b.*$", re.MULTILINE)
_MAX_QUERY_CHARS = 300
#: Language probability from which the answer names the language without a hedge. On the tag
#: model's test titles the named language is right 92 % of the time above it, under half below.
SURE_LANGUAGE = 0.8
#: Cosine under which no thread is called a close match: the questions of the course's
#: eyeball set score 0.6-0.9 against their nearest title, off-topic ones 0.2-0.4.
CLOSE_MATCH = 0.5


def _letters(text: str) -> list[str]:
    return [c for c in text if c.isalpha()]


def mostly_non_latin(text: str) -> bool:
    """True when most letters of ``text`` are not Latin (the models read English)."""
    letters = _letters(text)
    if not letters:
        return False
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    return latin / len(letters) < 0.5


def has_no_words(text: str) -> bool:
    """True for emoji-only, punctuation-only or symbol-only text."""
    return not any(c.isalnum() for c in text)


def search_query(text: str) -> str:
    """The part of a (possibly huge) question worth searching for.

    A long stack trace is searched by its most specific error line; other long text by its start.
    """
    if len(text) <= _MAX_QUERY_CHARS:
        return text
    errors = _ERROR_LINE.findall(text)
    if errors:
        return errors[-1].strip()[:_MAX_QUERY_CHARS]
    return text[:_MAX_QUERY_CHARS]


def small_talk_turns(events: Sequence[Event]) -> list[tuple[str, str]]:
    """(message, first reply) pairs of the chit-chat in ``events``, oldest first."""
    turns = []
    for message, reply in zip(events, events[1:], strict=False):
        if (message.type == "message" and reply.type == "reply"
                and message.intent == reply.intent == "chitchat"):
            turns.append((message.text, reply.text))
    return turns


def tool_hint(name: str, summary: str = "") -> str:
    """A pointer to the course tool ``name`` for a message that sounds like a request for it."""
    what = f" ({summary.rstrip('.')})" if summary else ""
    return (f"This also sounds like the course tool {name}{what}. "
            f"/tools {name} shows how to start it.")


class _NLPSkill(BaseSkill):
    """A skill that needs the NLP models; without them it says why it cannot answer."""

    def handle(self, request: Request) -> list[Reply]:
        nlp = self.services.nlp
        if nlp is None:
            reason = self.services.nlp_problem or "AMLBOT_NLU_ENABLED is off"
            return [TextReply(
                f"My language models are not loaded ({reason}), so I can only answer "
                "commands right now. Type /help for them."
            )]
        replies = self.answer(request, nlp)
        suggested = request.understanding.suggested_tool if request.understanding else None
        if suggested:
            replies.append(TextReply(tool_hint(suggested, self._tool_summary(suggested))))
        return replies

    def _tool_summary(self, name: str) -> str:
        load = self.services.load_tools
        tools = load() if load is not None else None
        return tools.get(name).summary if tools is not None and name in tools else ""

    @abstractmethod
    def answer(self, request: Request, nlp: NLP) -> list[Reply]:
        """Answer with the models at hand."""


@skills.register("qa.stackoverflow")
class StackOverflowSkill(_NLPSkill):
    """Answers a programming question: its language and tags, entities, similar threads."""

    name = "qa.stackoverflow"
    description = "Programming questions: language, tags and similar StackOverflow threads."
    intents = ("programming",)

    def answer(self, request: Request, nlp: NLP) -> list[Reply]:
        understanding = request.understanding
        language = understanding.language if understanding else None
        tags = list(understanding.tags) if understanding else []
        query = search_query(request.text)
        hits = nlp.search_threads(query, language=language, k=3)
        lines: list[str] = []
        if mostly_non_latin(request.text):
            lines.append("(I read English best, so this answer may be rough.)")
        if language:
            extra = [t for t in tags if t != language][:4]
            tag_text = f" (tags: {', '.join(extra)})" if extra else ""
            if understanding and understanding.language_confidence >= SURE_LANGUAGE:
                lines.append(f"This looks like a {language} question{tag_text}.")
            else:
                lines.append(f"It might be a {language} question{tag_text}, but I'm not sure.")
        elif tags:
            lines.append(f"Tags I'd give it: {', '.join(tags[:5])}.")
        entities = understanding.entities if understanding else ()
        if entities:
            shown = ", ".join(f"{e.text} ({e.label.lower()})" for e in entities[:6])
            lines.append(f"I noticed: {shown}.")
        if not hits:
            lines.append("I found no similar thread in my index. Try rephrasing the title "
                         "of your question.")
        elif max(hit.score for hit in hits) >= CLOSE_MATCH:
            lines.append("The most similar StackOverflow threads:")
        else:
            lines.append(f"None of the similar StackOverflow threads I know is a close match "
                         f"(all under {CLOSE_MATCH:.0%}); the nearest ones:")
        for rank, hit in enumerate(hits, 1):
            lines.append(f"{rank}. {hit.title} — {hit.score:.0%} similar\n   {hit.url}")
        replies: list[Reply] = [TextReply("\n".join(lines))]
        generator = self.services.generator
        if generator is not None and self.services.llm_answers == "always":
            message = request.message
            replies.append(generator.answer(request.text, hits, language=language,
                                            user_id=message.user_id, chat_id=message.chat_id,
                                            channel=message.channel))
        return replies


_PERSONAS: weakref.WeakKeyDictionary[NLP, Persona | None] = weakref.WeakKeyDictionary()
_PERSONAS_LOCK = threading.Lock()


def persona_of(nlp: NLP) -> Persona | None:
    """Who the bot says it is, embedded with ``nlp``'s encoder and told from the prompts of its
    chit-chat index; learnt once per loaded NLP bundle and shared by every skill using it.
    None when the index holds no small talk to learn from."""
    from bot.skills.persona import Persona

    with _PERSONAS_LOCK:
        if nlp not in _PERSONAS:
            try:
                _PERSONAS[nlp] = Persona(nlp.encoder.encode).fit(
                    nlp.chitchat_model.prompt_vectors())
            except ValueError as error:
                log.warning("questions about the bot get small-talk replies: %s", error)
                _PERSONAS[nlp] = None
        return _PERSONAS[nlp]


@skills.register("chat.chitchat")
class ChitChatSkill(_NLPSkill):
    """Small talk, answered from real conversations without repeating itself."""

    name = "chat.chitchat"
    description = "Conversation that is not about code."
    intents = ("chitchat",)

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        if services.nlp is not None:
            # Learnt in about a second; start now, so the first "hi" does not wait for it.
            threading.Thread(target=persona_of, args=(services.nlp,), name="amlbot-persona",
                             daemon=True).start()

    def answer(self, request: Request, nlp: NLP) -> list[Reply]:
        if has_no_words(request.text):
            return [TextReply("I see only symbols or emoji there 🙂 Tell me in words what's up, "
                              "or ask me a programming question.")]
        persona = persona_of(nlp)
        about_me = persona.answer(nlp.embed(request.text)) if persona is not None else None
        if about_me is not None:
            return [TextReply(about_me)]
        events = self.services.store.history(request.message.chat_id, 60)
        recent = [e.text for e in events if e.type == "reply"]
        turns = small_talk_turns(events)
        generator = self.services.generator
        reply = None
        if generator is not None and self.services.chitchat_backend == "llm":
            reply = generator.chitchat(request.text, turns, user_id=request.message.user_id)
        if reply is None or reply in recent:
            reply = nlp.chitchat(request.text, avoid=recent, history=turns)
        if mostly_non_latin(request.text):
            reply = f"{reply}\n(I chat best in English.)"
        return [TextReply(reply)]


@skills.register("qa.explain")
class ExplainSkill(_NLPSkill):
    """``/explain [QUESTION]``: a short written answer, grounded in the threads the search
    finds, for the question given or this chat's last programming question."""

    name = "qa.explain"
    description = "A written answer, grounded in the similar threads."
    commands = (Command("explain", "Write a short answer to a programming question (the last "
                                   "one by default), citing the threads it found.",
                        usage="/explain [QUESTION]"),)

    def answer(self, request: Request, nlp: NLP) -> list[Reply]:
        generator = self.services.generator
        if generator is None:
            reason = self.services.llm_problem or "the answer model is not loaded"
            return [TextReply(f"I can't write answers here: {reason}. The similar threads are "
                              "still yours: just ask the question.")]
        question = request.args.strip() or self._last_question(request)
        if not question:
            return [TextReply("Usage: /explain QUESTION, or ask a programming question first "
                              "and then send /explain.")]
        understanding = nlp.understand(question)
        hits = nlp.search_threads(search_query(question), understanding.language, k=3)
        listed = "\n".join(f"[{rank}] {hit.title} — {hit.score:.0%} similar"
                           for rank, hit in enumerate(hits, 1))
        message = request.message
        return [TextReply(f"Threads I found for “{question[:200]}”:\n{listed}"),
                generator.answer(question, hits, language=understanding.language,
                                 user_id=message.user_id, chat_id=message.chat_id,
                                 channel=message.channel)]

    def _last_question(self, request: Request) -> str:
        for event in reversed(self.services.store.history(request.message.chat_id, 60)):
            if event.type == "message" and event.intent == "programming":
                return event.text
        return ""
