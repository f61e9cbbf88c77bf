"""Chit-chat by retrieval: find messages like the user's in real conversations, answer with
what the other person said next.

Sources: the chitchat-dataset conversations (BYU PCC lab, MIT) and chatterbot-corpus (its
``coding`` and ``tech_support`` files left out: they are not small talk).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.encoder import Encoder
from nlp_core.integrity import verify_manifest, write_manifest
from nlp_core.workspace import Workspace

VERSION = "1"
_URL = re.compile(r"https?://|www\.", re.IGNORECASE)
_EXCLUDED_CHATTERBOT = {"coding", "tech_support"}


@dataclass(frozen=True)
class DialoguePair:
    """A message and the reply that followed it in a real conversation."""

    prompt: str
    reply: str
    source: str


def _clean(text: str) -> str:
    return " ".join(text.split())


def _good_reply(text: str) -> bool:
    return 2 <= len(text) <= 200 and not _URL.search(text) and any(c.isalpha() for c in text)


def chitchat_dataset_pairs() -> Iterable[DialoguePair]:
    """(turn, next turn) pairs of chitchat-dataset; a turn is one speaker's run of messages."""
    import chitchat_dataset

    for conversation in chitchat_dataset.Dataset().values():
        turns = [_clean(" ".join(m["text"] for m in turn)) for turn in conversation["messages"]]
        for prompt, reply in zip(turns, turns[1:], strict=False):
            if 1 <= len(prompt) <= 300 and _good_reply(reply):
                yield DialoguePair(prompt, reply, "chitchat-dataset")


def chatterbot_pairs() -> Iterable[DialoguePair]:
    """Question/answer pairs from chatterbot-corpus (English), without coding/tech_support."""
    import chatterbot_corpus
    import yaml

    root = Path(chatterbot_corpus.__file__).parent / "data" / "english"
    for path in sorted(root.glob("*.yml")):
        if path.stem in _EXCLUDED_CHATTERBOT:
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in data.get("conversations", []):
            texts = [_clean(str(t)) for t in conversation if t]
            for prompt, reply in zip(texts, texts[1:], strict=False):
                if _good_reply(reply):
                    yield DialoguePair(prompt, reply, f"chatterbot:{path.stem}")


def load_pairs(max_pairs: int | None = 20_000, seed: int = 13) -> list[DialoguePair]:
    """Every chatterbot pair plus a random sample of chitchat-dataset pairs (deduplicated)."""
    curated = list(chatterbot_pairs())
    everyday = list(chitchat_dataset_pairs())
    random.Random(seed).shuffle(everyday)
    if max_pairs is not None:
        everyday = everyday[: max(0, max_pairs - len(curated))]
    seen: set[tuple[str, str]] = set()
    pairs = []
    for pair in curated + everyday:
        key = (pair.prompt.lower(), pair.reply.lower())
        if key not in seen:
            seen.add(key)
            pairs.append(pair)
    return pairs


class ChitChatResponder:
    """Retrieval chit-chat: nearest prompts by sentence embedding, their replies as answers.

    ``fit(pairs)`` embeds the prompts; ``respond(text, avoid)`` returns a reply that is not in
    ``avoid`` (the replies already given in this conversation).
    """

    def __init__(self, encoder: Encoder | None = None, candidates: int = 12) -> None:
        self.encoder = encoder
        self.candidates = candidates

    def _encoder(self) -> Encoder:
        if self.encoder is None:
            self.encoder = Encoder()
        return self.encoder

    def fit(self, pairs: Sequence[DialoguePair],
            progress: Callable[[float, str], None] | None = None) -> ChitChatResponder:
        import faiss

        if not pairs:
            raise ValueError("no dialogue pairs to learn from")
        encoder = self._encoder()
        chunks = []
        step = 2048
        for start in range(0, len(pairs), step):
            chunk = [p.prompt for p in pairs[start:start + step]]
            chunks.append(encoder.encode(chunk))
            if progress:
                progress(min(1.0, (start + step) / len(pairs)), "embedding dialogue")
        vectors = np.vstack(chunks)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        self.index_: Any = index
        self.prompts_ = [p.prompt for p in pairs]
        self.replies_ = [p.reply for p in pairs]
        return self

    def respond(self, text: str, avoid: Iterable[str] = (), seed: int | None = None,
                vector: np.ndarray | None = None) -> str:
        """A reply to ``text``, avoiding the replies in ``avoid``.

        ``vector`` is the text's embedding if the caller already has it.
        """
        query = vector if vector is not None else self._encoder().encode([text])
        k = min(self.candidates, len(self.replies_))
        scores, rows = self.index_.search(query, k)
        avoided = {a.strip().lower() for a in avoid}
        fresh = [(float(s), int(r)) for s, r in zip(scores[0], rows[0], strict=True)
                 if r >= 0 and self.replies_[r].strip().lower() not in avoided]
        if not fresh:
            return "Tell me more!" if "tell me more!" not in avoided else "I see. Go on?"
        best = fresh[0][0]
        # Near-ties are broken at random so the same question does not always get the same answer.
        close = [row for score, row in fresh if score >= best - 0.03]
        rng = random.Random(seed)
        return self.replies_[rng.choice(close)]

    def prompt_vectors(self) -> np.ndarray:
        """The embedded prompts, one unit row per dialogue pair (what people say in chats)."""
        return np.asarray(self.index_.reconstruct_n(0, self.index_.ntotal))

    def save(self, directory: Path) -> None:
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index_, str(directory / "prompts.faiss"))
        with (directory / "pairs.jsonl").open("w", encoding="utf-8") as out:
            for prompt, reply in zip(self.prompts_, self.replies_, strict=True):
                out.write(json.dumps({"prompt": prompt, "reply": reply}) + "\n")
        stamp = {"component": "chitchat", "version": VERSION, "pairs": len(self.replies_),
                 "encoder": self._encoder().name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                          time.gmtime())}
        (directory / "version.json").write_text(json.dumps(stamp, indent=2))
        write_manifest(directory)

    @classmethod
    def load(cls, directory: Path, encoder: Encoder | None = None) -> ChitChatResponder:
        import faiss

        verify_manifest(directory, "Rebuild it with `amlbot train chitchat`.")
        stamp = json.loads((directory / "version.json").read_text())
        if stamp.get("version") != VERSION:
            raise ValueError(f"chit-chat model in {directory} is version {stamp.get('version')}, "
                             f"expected {VERSION}")
        model = cls(encoder)
        model.index_ = faiss.read_index(str(directory / "prompts.faiss"))
        model.prompts_, model.replies_ = [], []
        with (directory / "pairs.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                model.prompts_.append(row["prompt"])
                model.replies_.append(row["reply"])
        return model


def model_dir(workspace: Workspace) -> Path:
    """Where the chit-chat index lives: ``<data_dir>/models/chitchat``."""
    return workspace.data_dir / "models" / "chitchat"


def train_chitchat(workspace: Workspace, encoder: Encoder | None = None,
                   progress: Callable[[float, str], None] | None = None) -> ChitChatResponder:
    """Build the chit-chat index from the dialogue corpora and save it."""
    pairs = load_pairs(workspace.chitchat_pairs)
    model = ChitChatResponder(encoder).fit(pairs, progress)
    model.save(model_dir(workspace))
    return model


def load_or_train_chitchat(workspace: Workspace, encoder: Encoder | None = None,
                           progress: Callable[[float, str], None] | None = None
                           ) -> ChitChatResponder:
    """The saved chit-chat index, built first if missing, stale or built by another encoder."""
    directory = model_dir(workspace)
    try:
        model = ChitChatResponder.load(directory, encoder)
        stamp = json.loads((directory / "version.json").read_text())
        if stamp.get("encoder") == model._encoder().name:
            return model
    except (FileNotFoundError, ValueError, KeyError):
        pass
    return train_chitchat(workspace, encoder, progress)
