"""Who amlbot is. Small talk about the bot itself ("what is your name?", "are you a bot?")
gets a true answer instead of a stranger's line from the dialogue corpora ("I'm Emily").

A logistic regression on sentence embeddings (the vector the NLU already computed) tells each
topic's example questions from real small talk; below :data:`PERSONA_MATCH` a message is
ordinary small talk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: Probability from which a message asks about the bot itself, chosen with ``amlbot eval
#: persona`` on validation paraphrases and real small talk (docs/benchmarks.md).
PERSONA_MATCH = 0.5
#: Cosine from which a small-talk prompt asks what an example asks ("what is your name?" to a
#: person): it is left out of the small talk the examples are told from.
SAME_QUESTION = 0.7


@dataclass(frozen=True)
class PersonaTopic:
    """One thing people ask the bot about itself, and the true answer."""

    name: str
    questions: tuple[str, ...]
    answer: str


TOPICS: tuple[PersonaTopic, ...] = (
    PersonaTopic("name", (
        "what is your name?", "what's your name", "who are you?", "what should I call you?",
        "do you have a name?", "tell me your name", "introduce yourself", "what are you?",
        "your name please", "who am I chatting with?", "what do I call you?",
    ), "I'm amlbot, an assistant for machine-learning practitioners. Ask me a programming "
       "question, or see /tools for the course tools I can run."),
    PersonaTopic("bot", (
        "are you a bot?", "are you human?", "are you a real person?", "are you a robot?",
        "am I talking to a machine?", "are you an AI?", "is this a bot?", "are you a computer?",
        "is there a human behind this?", "are you a chatbot?",
    ), "I'm a bot, not a person: amlbot, a program built from machine-learning models (ask me "
       "how I work)."),
    PersonaTopic("skills", (
        "what can you do?", "how can you help me?", "what are you for?", "what do you do?",
        "what are you good at?", "what are your features?", "what can I ask you?",
        "what are your skills?", "what can you help with?", "what are you capable of?",
    ), "I answer programming questions with their language, tags and the most similar "
       "StackOverflow threads (and, where the answer model is on, a short written answer); I "
       "run the Advanced Machine Learning course tools as background jobs (/tools); I caption "
       "photos and recognise faces (/caption, /faces); and I chat a little. /help lists every "
       "command."),
    PersonaTopic("origin", (
        "who made you?", "who created you?", "who built you?", "who is your creator?",
        "where do you come from?", "who is your developer?", "who coded you?",
        "who trained you?",
    ), "I grew out of the capstone project of the HSE \"Advanced Machine Learning\" "
       "specialization: its NLP course's StackOverflow assistant, with tools from all seven "
       "courses."),
    PersonaTopic("inside", (
        "how do you work?", "what model are you?", "are you ChatGPT?", "what is inside you?",
        "how do you answer questions?", "which AI model do you use?",
        "what technology are you built on?", "are you an LLM?",
    ), "An intent classifier and a tag model (TF-IDF and MiniLM features), a FAISS index of "
       "StackOverflow titles searched with MiniLM sentence embeddings, and, for written "
       "answers, a small instruction model running on this machine (Qwen2.5-Coder-0.5B-Instruct "
       "unless the host chose another)."),
)


class Persona:
    """Answers questions about the bot itself. ``fit(small_talk)`` embeds the topics' example
    questions with ``embed`` (texts -> unit rows) and learns to tell them from ``small_talk``
    (embedded prompts of real conversations); ``answer(vector)`` is the matching topic's answer,
    or None for any other message."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray],
                 topics: Sequence[PersonaTopic] = TOPICS,
                 threshold: float = PERSONA_MATCH) -> None:
        self.embed = embed
        self.topics = tuple(topics)
        self.threshold = threshold

    def fit(self, small_talk: np.ndarray) -> Persona:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        questions = [q for topic in self.topics for q in topic.questions]
        self.vectors_ = np.asarray(self.embed(questions), dtype=np.float32)
        self.topic_of_ = np.array([k for k, topic in enumerate(self.topics)
                                   for _ in topic.questions])
        others = np.asarray(small_talk, dtype=np.float32).reshape(-1, self.vectors_.shape[1])
        others = others[(others @ self.vectors_.T).max(axis=1, initial=-1.0) < SAME_QUESTION]
        if not len(others):
            raise ValueError("no small talk to tell the questions about the bot from")
        # Class 0 is small talk; the examples together weigh as much as all of it.
        weight = len(others) / len(questions)
        self.classifier_ = LogisticRegression(
            C=1.0, max_iter=3000,
            class_weight={0: 1.0, **{k + 1: weight for k in range(len(self.topics))}},
        ).fit(np.vstack([self.vectors_, others]),
              np.concatenate([self.topic_of_ + 1, np.zeros(len(others), dtype=int)]))
        self.small_talk_seen_ = len(others)
        return self

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(n, topics): how likely each of n embedded messages asks each topic."""
        import numpy as np

        rows = np.asarray(vectors, dtype=np.float32).reshape(-1, self.vectors_.shape[1])
        return np.asarray(self.classifier_.predict_proba(rows)[:, 1:])

    def match(self, vector: np.ndarray) -> tuple[PersonaTopic, float]:
        """The likeliest topic of a message's (1, dim) embedding, and its probability."""
        scores = self.probabilities(vector)[0]
        best = int(scores.argmax())
        return self.topics[best], float(scores[best])

    def answer(self, vector: np.ndarray) -> str | None:
        """The answer when the message asks about the bot itself, else None."""
        topic, score = self.match(vector)
        return topic.answer if score >= self.threshold else None


def read_questions(path: Path) -> list[tuple[str, str]]:
    """(topic, text) pairs from a ``topic<TAB>text`` file (``#`` lines are comments); the
    topics must be those of :data:`TOPICS`."""
    known = {topic.name for topic in TOPICS}
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        topic, _, text = line.partition("\t")
        if topic not in known or not text.strip():
            raise ValueError(f"{path}:{number}: expected 'topic<TAB>text' with a topic among "
                             f"{sorted(known)}")
        pairs.append((topic, text.strip()))
    return pairs


def evaluate(persona: Persona, questions: Sequence[tuple[str, str]],
             small_talk: Sequence[str],
             thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7)) -> dict[str, Any]:
    """How often questions about the bot get its answer (``questions``: (topic, text), kept
    apart from the examples), and how often ordinary small talk does, at each threshold
    (``small_talk``: messages the persona was not fitted on)."""
    import numpy as np

    asked = persona.embed([text for _, text in questions])
    matches = [persona.match(row) for row in asked]
    best_chat = persona.probabilities(persona.embed(list(small_talk))).max(axis=1)
    rows = []
    for threshold in thresholds:
        answered = [(topic, match) for (topic, _), (match, score)
                    in zip(questions, matches, strict=True) if score >= threshold]
        rows.append({"threshold": threshold,
                     "questions_answered": len(answered),
                     "answered_on_their_topic": sum(t == m.name for t, m in answered),
                     "small_talk_answered": int((best_chat >= threshold).sum())})
    order = np.argsort(-best_chat)[:10]
    return {"questions": len(questions), "small_talk": len(small_talk),
            "threshold_used": persona.threshold, "by_threshold": rows,
            "missed": [text for (_, text), (_, score) in zip(questions, matches, strict=True)
                       if score < persona.threshold],
            "closest_small_talk": [(round(float(best_chat[i]), 3), small_talk[i])
                                   for i in order]}
